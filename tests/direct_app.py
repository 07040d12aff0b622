"""An app that takes direct uploads into a bucket of the test server, for the HTTP and
browser tests: a session login that its ``authorize`` hook checks, a row per upload
(the recorded list), a page that loads hash-wasm and ``direct-upload.js``, and the
bucket's CORS rule for the app's origin."""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path
from typing import NamedTuple

from flask import Flask, abort, send_from_directory, session
from flask.typing import ResponseReturnValue

from flask_hashfs import FlaskHashFS, HashAddress
from flask_hashfs.direct_uploads import Action, DirectUploads, UploadIntent

from .s3_server import S3Server

#: A bucket of its own, so that its CORS rule concerns these tests only.
BUCKET = "hashfs-direct"
NODE_MODULES = Path(__file__).resolve().parents[1] / "node_modules"
ALLOWED = frozenset({".png", ".txt", ".bin"})

PAGE = """<!doctype html>
<meta charset="utf-8">
<input id="file" type="file">
<script src="/vendor/hash-wasm/dist/sha256.umd.min.js"></script>
<script type="module">
  import { directUpload, UploadError } from "/direct/static/direct-upload.js";
  window.directUpload = directUpload;
  window.UploadError = UploadError;
  document.body.dataset.ready = "yes";
</script>
"""


class Row(NamedTuple):
    address: HashAddress
    intent: UploadIntent
    user: str


class DirectApp(NamedTuple):
    app: Flask
    fs: FlaskHashFS
    rows: list[Row]


def create_bucket(server: S3Server) -> None:
    existing = {bucket["Name"] for bucket in server.client.list_buckets()["Buckets"]}
    if BUCKET not in existing:
        server.client.create_bucket(Bucket=BUCKET)


def allow_origin(server: S3Server, origin: str) -> None:
    """The bucket's CORS rule a deployment needs (docs/uploads.md), for ``origin``."""
    server.client.put_bucket_cors(
        Bucket=BUCKET,
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedOrigins": [origin],
                    "AllowedMethods": ["PUT"],
                    "AllowedHeaders": ["content-type", "x-amz-checksum-sha256"],
                    "MaxAgeSeconds": 3600,
                }
            ]
        },
    )


def direct_app(server: S3Server, max_size: int | None = None) -> DirectApp:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secrets.token_hex(),
        HASHFS_ROOT_FOLDER=f"s3://{BUCKET}/{uuid.uuid4().hex}",
        HASHFS_STORAGE_OPTIONS=server.options,
        HASHFS_PATH_PREFIX="/uploads",
        HASHFS_SERVE=True,
    )
    fs = FlaskHashFS(app)
    rows: list[Row] = []

    direct = DirectUploads(fs, allowed_extensions=ALLOWED, max_size=max_size)

    @direct.authorizer
    def may_upload(action: Action, intent: UploadIntent) -> bool:
        return "user" in session

    @direct.identifier
    def who() -> str | None:
        return session.get("user")

    @direct.on_upload
    def record(intent: UploadIntent, address: HashAddress) -> ResponseReturnValue:
        rows.append(Row(address, intent, session["user"]))
        return {"id": address.id, "url": fs.url_for(address.relpath)}, 201

    app.register_blueprint(direct.blueprint, url_prefix="/direct")

    @app.get("/")
    def page() -> str:
        return PAGE

    @app.get("/login/<user>")
    def login(user: str) -> str:
        session["user"] = user
        return PAGE

    @app.get("/vendor/hash-wasm/dist/<name>")
    def vendor(name: str) -> ResponseReturnValue:
        if name != "sha256.umd.min.js":
            abort(404)
        return send_from_directory(NODE_MODULES / "hash-wasm" / "dist", name)

    return DirectApp(app, fs, rows)
