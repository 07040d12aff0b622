"""An object fetched straight from the bucket (a public bucket, a CDN, a signed URL)
says what the app's own route says: the same type, the same caching, and an attachment,
never an inline page, for every type the app would not show inline."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from flask import Flask

from flask_hashfs import FlaskHashFS, HashFS
from flask_hashfs.headers import CACHE_CONTROL
from flask_hashfs.migrate import migrate

from .s3_server import BUCKET, S3Server
from .serving_helpers import fetch, running, serving_app

EXTENSIONS = [".pdf", ".css", ".json", ".html", ".svg", ".js", ".txt", ".jpg", ".png", ""]


def bucket_headers(s3_server: S3Server, store: HashFS, relpath: str) -> dict[str, str | None]:
    prefix = store.root.removeprefix(f"s3://{BUCKET}/")
    head = s3_server.client.head_object(Bucket=BUCKET, Key=f"{prefix}/{relpath}")
    return {
        "Content-Type": head["ContentType"],
        "Content-Disposition": head.get("ContentDisposition"),
        "Cache-Control": head.get("CacheControl"),
    }


def app_headers(port: int, relpath: str) -> dict[str, str | None]:
    reply = fetch(port, "/uploads/" + relpath)
    assert reply.status == 200
    return {name: reply.headers.get(name) for name in ("Content-Type", "Content-Disposition")}


@pytest.mark.parametrize("inline", [None, ["application/pdf", "text/css", "image/png"]])
def test_bucket_objects_carry_the_headers_the_app_sends(
    s3_server: S3Server, tmp_path: Path, inline: list[str] | None
) -> None:
    """The app serves the same objects from a folder (its route), and stores them in a
    bucket through ``init_app``, which hands the store the app's inline types."""
    config = {} if inline is None else {"HASHFS_INLINE_TYPES": inline}
    served, _ = serving_app(tmp_path / "store", **config)
    bucket_app = Flask("bucket")
    bucket_app.config.update(
        HASHFS_ROOT_FOLDER=s3_server.new_url(), HASHFS_STORAGE_OPTIONS=s3_server.options
    )
    bucket_app.config.update(config)
    bucket = FlaskHashFS(bucket_app).store_for(bucket_app)
    folder = HashFS(tmp_path / "store")
    with running(served) as port:
        for i, ext in enumerate(EXTENSIONS):
            data = b"content %d" % i
            relpath = bucket.put(io.BytesIO(data), ext).relpath
            assert folder.put(io.BytesIO(data), ext).relpath == relpath
            expected = app_headers(port, relpath)
            stored = bucket_headers(s3_server, bucket, relpath)
            assert stored["Content-Type"] == expected["Content-Type"], ext
            assert stored["Content-Disposition"] == expected["Content-Disposition"], ext
            assert stored["Cache-Control"] == CACHE_CONTROL


def test_a_pdf_in_the_bucket_is_an_attachment_by_default(s3_server: S3Server) -> None:
    store = HashFS(s3_server.new_url(), storage_options=s3_server.options)
    address = store.put(io.BytesIO(b"%PDF-1.7 a document"), ".pdf")
    headers = bucket_headers(s3_server, store, address.relpath)
    assert headers["Content-Disposition"] == f'attachment; filename="{address.id}.pdf"'
    assert headers["Content-Type"] == "application/pdf"


def test_a_store_refuses_active_inline_types(s3_server: S3Server) -> None:
    with pytest.raises(ValueError, match="active content can never be served inline"):
        HashFS(s3_server.new_url(), storage_options=s3_server.options, inline_types={"text/html"})


def test_migrate_gives_copied_objects_the_apps_headers(s3_server: S3Server, tmp_path: Path) -> None:
    folder = HashFS(tmp_path / "disk")
    pdf = folder.put(io.BytesIO(b"%PDF-1.7 moved"), ".pdf")
    png = folder.put(io.BytesIO(b"\x89PNG moved"), ".png")
    bucket = HashFS(s3_server.new_url(), storage_options=s3_server.options)
    assert migrate(folder, bucket).copied
    assert bucket_headers(s3_server, bucket, pdf.relpath)["Content-Disposition"] == (
        f'attachment; filename="{pdf.id}.pdf"'
    )
    assert bucket_headers(s3_server, bucket, png.relpath)["Content-Disposition"] is None


def test_flask_migrate_uses_the_apps_inline_types(s3_server: S3Server, tmp_path: Path) -> None:
    app = Flask(__name__)
    app.config.update(
        HASHFS_ROOT_FOLDER=str(tmp_path / "disk"), HASHFS_INLINE_TYPES=["application/pdf"]
    )
    store = FlaskHashFS(app).store_for(app)
    pdf = store.put(io.BytesIO(b"%PDF-1.7 shown inline by this app"), ".pdf")
    css = store.put(io.BytesIO(b"body { color: red }"), ".css")
    target = s3_server.new_url()
    options = json.dumps(s3_server.options)
    result = app.test_cli_runner().invoke(
        args=["hashfs", "migrate", target, "--target-storage-options", options]
    )
    assert result.exit_code == 0, result.output
    bucket = HashFS(target, storage_options=s3_server.options)
    assert bucket_headers(s3_server, bucket, pdf.relpath)["Content-Disposition"] is None
    assert bucket_headers(s3_server, bucket, css.relpath)["Content-Disposition"] == (
        f'attachment; filename="{css.id}.css"'
    )
