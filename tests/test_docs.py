"""The code in the README and the docs runs as written: each snippet is read from the
page and run, with only its example folder or bucket replaced by a test one."""

from __future__ import annotations

import hashlib
import io
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask_wtf.csrf import generate_csrf

from flask_hashfs import FlaskHashFS
from flask_hashfs.tus import format_metadata

from .direct_app import BUCKET as DIRECT_BUCKET
from .direct_app import create_bucket
from .direct_helpers import send_put
from .s3_server import S3Server

ROOT = Path(__file__).parent.parent
JPEG = b"\xff\xd8\xff\xe0" + bytes(100)
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(100)


def snippet(page: str, after: str, containing: str = "") -> str:
    """The first ```python block of ``page`` after the line ``after`` that contains
    ``containing``."""
    text = (ROOT / page).read_text()
    start = text.index(after)
    for block in re.findall(r"```python\n(.*?)```", text[start:], re.DOTALL):
        if containing in block:
            return str(block)
    raise AssertionError(f"{page} has no python block with {containing!r} after {after!r}")


def run(code: str, **names: Any) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "snippet", **names}
    exec(compile(code, "snippet", "exec"), namespace)
    return namespace


@pytest.mark.parametrize(
    ("name", "data"),
    [("IMG_0001.JPEG", JPEG), ("photo.jpg", JPEG), ("photo.webp", WEBP)],
)
def test_readme_quickstart_takes_camera_and_web_images(
    tmp_path: Path, name: str, data: bytes
) -> None:
    code = snippet("README.md", "## Quickstart: Flask").replace(
        "/var/www/data/uploads", str(tmp_path / "uploads")
    )
    app: Flask = run(code)["app"]
    reply = app.test_client().post("/photos", data={"photo": (io.BytesIO(data), name)})
    assert reply.status_code == 201, reply.get_data(as_text=True)
    assert reply.get_json()["url"].startswith("http://localhost/uploads/")


def test_production_proxy_fix_keeps_urls_https(tmp_path: Path) -> None:
    app = Flask(__name__)
    app.config.update(HASHFS_ROOT_FOLDER=str(tmp_path), HASHFS_PATH_PREFIX="/uploads")
    fs = FlaskHashFS(app)

    @app.get("/link")
    def link() -> str:
        return fs.url_for("a/b/c.png")

    run(snippet("docs/production.md", "## Behind a proxy", "ProxyFix"), app=app)
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    reply = app.test_client().get("/link", headers=forwarded)
    assert reply.get_data(as_text=True) == "https://localhost/uploads/a/b/c.png"


def test_direct_uploads_example_and_cors_rule(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The docs' app takes a direct upload, with credentials and endpoint from the
    environment, and the docs' CORS rule is accepted by the bucket."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_ENDPOINT_URL": s3_server.endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    create_bucket(s3_server)
    code = snippet("docs/uploads.md", "## Direct uploads to a bucket", "DirectUploads(")
    code = code.replace("s3://my-bucket/uploads", f"s3://{DIRECT_BUCKET}/{uuid.uuid4().hex}")
    names = run(code)
    client = names["app"].test_client()
    with client.session_transaction() as session:
        session["user_id"] = 7
    data = JPEG
    intent = {"name": "a.jpg", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    authorized = client.post("/direct-uploads/authorize", json=intent).get_json()
    assert send_put(authorized["url"], data, authorized["headers"])[0] == 200
    reply = client.post("/direct-uploads/complete", json={"ticket": authorized["ticket"]})
    assert reply.status_code == 201
    assert names["rows"] == [(intent["sha256"], "a.jpg", 7)]

    cors = snippet("docs/uploads.md", "### What the bucket needs", "put_bucket_cors")
    run(cors.replace("my-bucket", DIRECT_BUCKET))
    [rule] = s3_server.client.get_bucket_cors(Bucket=DIRECT_BUCKET)["CORSRules"]
    assert rule["AllowedOrigins"] == ["https://app.example.com"]
    assert rule["AllowedMethods"] == ["PUT"]


def test_uploads_common_view_and_tus_example(tmp_path: Path) -> None:
    """The tus snippet, on the app of the common view before it, takes an upload from a
    logged-in user only and writes the row."""
    page = "docs/uploads.md"
    code = snippet(page, "## The common upload view").replace(
        "/var/www/data/uploads", str(tmp_path / "uploads")
    )
    names = run(snippet(page, "## Resumable uploads (tus)", "TusUploads("), **run(code))
    app: Flask = names["app"]
    app.secret_key = "test"
    client = app.test_client()
    reply = client.post("/photos", data={"photo": (io.BytesIO(JPEG), "a.jpg")})
    assert reply.status_code == 201, reply.get_data(as_text=True)
    tus = {"Tus-Resumable": "1.0.0"}
    create = {
        **tus,
        "Upload-Length": str(len(JPEG)),
        "Upload-Metadata": format_metadata({"filename": "b.jpg"}),
    }
    assert client.post("/files", headers=create).status_code == 403
    with client.session_transaction() as session:
        session["user_id"] = 7
    created = client.post("/files", headers=create)
    assert created.status_code == 201, created.get_data(as_text=True)
    chunk = {**tus, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
    reply = client.patch(created.headers["Location"], data=JPEG, headers=chunk)
    assert reply.status_code == 204, reply.get_data(as_text=True)
    assert names["videos"] == [(hashlib.sha256(JPEG).hexdigest(), "b.jpg")]


def test_uploads_stream_a_form_and_check_csrf_from_a_header(tmp_path: Path) -> None:
    page = "docs/uploads.md"
    heading = "## Big files from a form"
    code = snippet(page, heading, "stream_uploads").replace(
        "/var/www/data/uploads", str(tmp_path / "uploads")
    )
    names = run(code)
    app: Flask = names["app"]
    app.config["SECRET_KEY"] = "test"
    run(snippet(page, heading, "validate_csrf"), **names)

    @app.get("/token")
    def new_token() -> str:
        return str(generate_csrf())

    mp4 = bytes(4) + b"ftypisom" + bytes(100)
    client = app.test_client()
    token = client.get("/token").get_data(as_text=True)
    # /videos is not exempt: CSRFProtect reads its form first, and stream_uploads takes
    # the files werkzeug parsed.
    video = {"video": (io.BytesIO(mp4), "clip.mp4"), "title": "Sea", "csrf_token": token}
    reply = client.post("/videos", data=video)
    assert reply.status_code == 201, reply.get_data(as_text=True)
    assert reply.get_json()["url"].startswith("http://localhost/uploads/")
    assert client.post("/videos", data={"csrf_token": token}).status_code == 400
    assert client.post("/movies", data={"movie": (io.BytesIO(mp4), "a.mp4")}).status_code == 400
    movie = {"movie": (io.BytesIO(mp4 + b"2"), "film.mp4")}
    reply = client.post("/movies", data=movie, headers={"X-CSRFToken": token})
    assert reply.status_code == 201, reply.get_data(as_text=True)
    with app.app_context():
        assert names["fs"].count() == 2
