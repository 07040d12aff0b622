"""The HASHFS_SERVE route and FlaskHashFS.send, through a real server and the test client."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from flask_hashfs import FlaskHashFS, HashAddress
from flask_hashfs.serving import CACHE_CONTROL

from .serving_helpers import fetch, running

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 16
HTML = b"<!doctype html><script>alert(document.cookie)</script>"


def make_app(root: Path, **config: object) -> tuple[Flask, FlaskHashFS]:
    app = Flask(__name__)
    app.config.update(
        HASHFS_ROOT_FOLDER=str(root), HASHFS_PATH_PREFIX="/uploads", HASHFS_SERVE=True
    )
    app.config.update(config)
    return app, FlaskHashFS(app)


@pytest.fixture
def app_fs(tmp_path: Path) -> tuple[Flask, FlaskHashFS]:
    return make_app(tmp_path / "store")


@pytest.fixture
def png(app_fs: tuple[Flask, FlaskHashFS]) -> HashAddress:
    app, fs = app_fs
    with app.app_context():
        return fs.put(io.BytesIO(PNG), extension=".png")


@pytest.fixture
def port(app_fs: tuple[Flask, FlaskHashFS]) -> Iterator[int]:
    with running(app_fs[0]) as port:
        yield port


def test_get_sends_body_and_immutable_caching_headers(port: int, png: HashAddress) -> None:
    reply = fetch(port, f"/uploads/{png.relpath}")
    assert reply.status == 200
    assert reply.body == PNG
    assert reply.headers["Content-Type"] == "image/png"
    assert reply.headers["ETag"] == f'"{png.id}"'
    assert reply.headers["Cache-Control"] == CACHE_CONTROL == "public, max-age=31536000, immutable"
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert reply.headers["Content-Length"] == str(len(PNG))
    assert reply.headers["Accept-Ranges"] == "bytes"
    assert "Content-Disposition" not in reply.headers


def test_if_none_match_gives_304_without_body(port: int, png: HashAddress) -> None:
    reply = fetch(port, f"/uploads/{png.relpath}", headers={"If-None-Match": f'"{png.id}"'})
    assert reply.status == 304
    assert reply.body == b""
    assert reply.headers["ETag"] == f'"{png.id}"'
    assert reply.headers["Cache-Control"] == CACHE_CONTROL


def test_single_range_gives_206(port: int, png: HashAddress) -> None:
    reply = fetch(port, f"/uploads/{png.relpath}", headers={"Range": "bytes=8-15"})
    assert reply.status == 206
    assert reply.body == PNG[8:16]
    assert reply.headers["Content-Range"] == f"bytes 8-15/{len(PNG)}"


def test_html_is_an_attachment_in_a_sandbox(app_fs: tuple[Flask, FlaskHashFS], port: int) -> None:
    app, fs = app_fs
    with app.app_context():
        page = fs.put(io.BytesIO(HTML), extension=".html")
    reply = fetch(port, f"/uploads/{page.relpath}")
    assert reply.status == 200
    assert reply.headers["Content-Disposition"].startswith("attachment;")
    assert reply.headers["Content-Security-Policy"] == "sandbox"
    assert reply.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    ["/uploads/../../../etc/passwd", "/uploads/%2e%2e/%2e%2e/etc/passwd", "/uploads/", "/uploads"],
)
def test_not_an_object_is_404(port: int, png: HashAddress, path: str) -> None:
    assert fetch(port, path).status == 404
