"""URLs of objects in a bucket: signed URLs that caches can keep, and the redirect mode.

The app runs on a real werkzeug server on 127.0.0.1; signed URLs are fetched from the
SeaweedFS test server with a plain HTTP client, as a browser or CDN would.
"""

from __future__ import annotations

import io
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import Flask

from flask_hashfs import FlaskHashFS, HashAddress

from .s3_server import S3Server
from .serving_helpers import fetch, running

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
HTML = b"<!doctype html><script>alert(document.cookie)</script>"


def make_app(server: S3Server, **config: object) -> tuple[Flask, FlaskHashFS]:
    app = Flask(__name__)
    app.config.update(
        HASHFS_ROOT_FOLDER=server.new_url(),
        HASHFS_STORAGE_OPTIONS=server.options,
        HASHFS_PATH_PREFIX="/uploads",
        HASHFS_SERVE=True,
    )
    app.config.update(config)
    return app, FlaskHashFS(app)


def put(app: Flask, fs: FlaskHashFS, data: bytes, extension: str) -> HashAddress:
    with app.app_context():
        return fs.put(io.BytesIO(data), extension)


def download(url: str) -> tuple[int, dict[str, str], bytes]:
    assert urlsplit(url).hostname == "127.0.0.1"
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_signed_urls_are_stable_within_a_window_and_fetch_the_object(s3_server: S3Server) -> None:
    app, fs = make_app(s3_server, HASHFS_SIGNED_URL_WINDOW=3600)
    png = put(app, fs, PNG, ".png")
    with app.app_context():
        first = fs.url_for(png.relpath)
        assert fs.url_for(png.relpath) == first
        assert fs.url_for(png.relpath, external=False) == first
    status, headers, body = download(first)
    assert (status, body) == (200, PNG)
    assert headers["Content-Type"] == "image/png"
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert "Content-Disposition" not in headers
    assert "X-Amz-Expires=7200&" in first
    status, _, _ = download(first.replace("X-Amz-Expires=7200&", "X-Amz-Expires=7201&"))
    assert status == 403


def test_a_new_window_gives_a_new_url(s3_server: S3Server) -> None:
    app, fs = make_app(s3_server, HASHFS_SIGNED_URL_WINDOW=1)
    png = put(app, fs, PNG, ".png")
    with app.app_context():
        first = fs.url_for(png.relpath)
        time.sleep(1.05)
        second = fs.url_for(png.relpath)
    assert first != second
    assert download(second)[2] == PNG


def test_active_content_from_a_signed_url_is_an_attachment(s3_server: S3Server) -> None:
    app, fs = make_app(s3_server, HASHFS_SIGNED_URL_WINDOW=600)
    html = put(app, fs, HTML, ".html")
    with app.app_context():
        status, headers, body = download(fs.url_for(html.relpath))
    assert (status, body) == (200, HTML)
    assert headers["Content-Disposition"] == f'attachment; filename="{html.id}.html"'


def test_redirect_mode_sends_the_signed_url(s3_server: S3Server) -> None:
    app, fs = make_app(s3_server, HASHFS_SIGNED_URL_WINDOW=600, HASHFS_SERVE_MODE="redirect")
    png = put(app, fs, PNG, ".png")
    with running(app) as port:
        reply = fetch(port, "/uploads/" + png.relpath)
        missing = fetch(port, "/uploads/" + png.relpath.replace(".png", ".jpg"))
    assert reply.status == 302
    with app.app_context():
        assert reply.headers["Location"] == fs.url_for(png.relpath)
    max_age = int(reply.headers["Cache-Control"].rpartition("=")[2])
    assert 0 < max_age <= 600
    assert download(reply.headers["Location"])[2] == PNG
    assert missing.status == 404


def test_redirect_mode_to_a_public_host(s3_server: S3Server) -> None:
    app, fs = make_app(
        s3_server, HASHFS_HOST="https://cdn.example.com", HASHFS_SERVE_MODE="redirect"
    )
    png = put(app, fs, PNG, ".png")
    with running(app) as port:
        reply = fetch(port, "/uploads/" + png.relpath)
    assert reply.status == 302
    assert reply.headers["Location"] == "https://cdn.example.com/uploads/" + png.relpath
    with app.test_request_context():
        assert fs.url_for(png.relpath) == reply.headers["Location"]


def test_stream_mode_is_the_default(s3_server: S3Server) -> None:
    app, fs = make_app(s3_server, HASHFS_SIGNED_URL_WINDOW=600)
    png = put(app, fs, PNG, ".png")
    with running(app) as port:
        reply = fetch(port, "/uploads/" + png.relpath, headers={"Range": "bytes=8-15"})
    assert reply.status == 206
    assert reply.body == PNG[8:16]
    assert reply.headers["ETag"] == f'"{png.id}"'
    assert reply.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"HASHFS_SERVE_MODE": "redirect"}, "HASHFS_SIGNED_URL_WINDOW.*HASHFS_HOST"),
        ({"HASHFS_SERVE_MODE": "proxy"}, "HASHFS_SERVE_MODE"),
        ({"HASHFS_SIGNED_URL_WINDOW": 0}, "HASHFS_SIGNED_URL_WINDOW"),
        ({"HASHFS_SIGNED_URL_WINDOW": "1h"}, "HASHFS_SIGNED_URL_WINDOW"),
        ({"HASHFS_X_ACCEL_REDIRECT": "/_hashfs/"}, "HASHFS_X_ACCEL_REDIRECT.* needs a folder root"),
        ({"HASHFS_X_SENDFILE": True}, "HASHFS_X_SENDFILE.* needs a folder root"),
    ],
)
def test_bad_url_config(s3_server: S3Server, config: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_app(s3_server, **config)


def test_signed_urls_need_a_bucket(tmp_path: Path) -> None:
    app = Flask(__name__)
    app.config.update(HASHFS_ROOT_FOLDER=str(tmp_path), HASHFS_SIGNED_URL_WINDOW=600)
    with pytest.raises(ValueError, match="needs object storage"):
        FlaskHashFS(app)
