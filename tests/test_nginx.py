"""nginx in front of the app with X-Accel-Redirect: docs/production.md's config, for real.

The server block is read from the docs, so the documented config is the tested one. It
runs under Debian's nginx on a free 127.0.0.1 port with a prefix in a temp folder, and
proxies to the app on werkzeug's server.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask, request

from flask_hashfs import FlaskHashFS, HashAddress
from flask_hashfs.headers import CACHE_CONTROL

from .nginx_server import free_port, needs_nginx, running_nginx
from .serving_helpers import fetch, running

DOCS = Path(__file__).parent.parent / "docs" / "production.md"
pytestmark = needs_nginx

PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(1 << 20)
HTML = b"<!doctype html><script>alert(1)</script>"


def documented_server_block() -> str:
    """The first ```nginx block of docs/production.md."""
    match = re.search(r"```nginx\n(.*?)```", DOCS.read_text(), re.DOTALL)
    assert match is not None, "docs/production.md lost its nginx config"
    return match.group(1)


@pytest.fixture
def app_fs(tmp_path: Path) -> tuple[Flask, FlaskHashFS]:
    app = Flask(__name__)
    app.config.update(
        HASHFS_ROOT_FOLDER=str(tmp_path / "store"),
        HASHFS_PATH_PREFIX="/uploads",
        HASHFS_SERVE=True,
        HASHFS_X_ACCEL_REDIRECT="/_hashfs/",
    )
    return app, FlaskHashFS(app)


@pytest.fixture
def nginx(app_fs: tuple[Flask, FlaskHashFS], tmp_path: Path) -> Iterator[int]:
    """nginx on a free port proxying to the app, with the documented server block."""
    app, fs = app_fs
    port = free_port()
    with running(app) as app_port:
        server = (
            documented_server_block()
            .replace("listen 80;", f"listen 127.0.0.1:{port};")
            .replace("http://127.0.0.1:8000", f"http://127.0.0.1:{app_port}")
            .replace("/var/www/data/uploads/", fs.store_for(app).root + "/")
        )
        with running_nginx(tmp_path / "nginx", port, server):
            yield port


def put(app_fs: tuple[Flask, FlaskHashFS], data: bytes, extension: str) -> HashAddress:
    app, fs = app_fs
    with app.app_context():
        return fs.put(io.BytesIO(data), extension=extension)


def test_body_and_headers_come_through_nginx(nginx: int, app_fs: tuple[Flask, FlaskHashFS]) -> None:
    png = put(app_fs, PNG, ".png")
    reply = fetch(nginx, f"/uploads/{png.relpath}")
    assert reply.status == 200
    assert reply.headers["Server"].startswith("nginx")
    assert reply.body == PNG
    assert reply.headers["Content-Type"] == "image/png"
    assert reply.headers["Content-Length"] == str(len(PNG))
    assert reply.headers["ETag"] == f'"{png.id}"'
    assert reply.headers["Cache-Control"] == CACHE_CONTROL
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert "X-Accel-Redirect" not in reply.headers
    assert "Content-Disposition" not in reply.headers

    head = fetch(nginx, f"/uploads/{png.relpath}", method="HEAD")
    assert (head.status, head.body) == (200, b"")
    assert head.headers["Content-Length"] == str(len(PNG))


def test_active_content_stays_a_sandboxed_attachment(
    nginx: int, app_fs: tuple[Flask, FlaskHashFS]
) -> None:
    page = put(app_fs, HTML, ".html")
    reply = fetch(nginx, f"/uploads/{page.relpath}")
    assert reply.body == HTML
    assert reply.headers["Content-Disposition"].startswith("attachment;")
    assert reply.headers["Content-Security-Policy"] == "sandbox"
    assert reply.headers["X-Content-Type-Options"] == "nosniff"


def test_revalidation_ranges_and_if_range(nginx: int, app_fs: tuple[Flask, FlaskHashFS]) -> None:
    png = put(app_fs, PNG, ".png")
    path = f"/uploads/{png.relpath}"
    etag = f'"{png.id}"'
    assert fetch(nginx, path, headers={"If-None-Match": etag}).status == 304
    part = fetch(nginx, path, headers={"Range": "bytes=100-199", "If-Range": etag})
    assert part.status == 206
    assert part.body == PNG[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(PNG)}"
    stale = fetch(nginx, path, headers={"Range": "bytes=100-199", "If-Range": '"stale"'})
    assert (stale.status, stale.body) == (200, PNG)


def test_internal_location_and_hostile_paths_are_404(
    nginx: int, app_fs: tuple[Flask, FlaskHashFS]
) -> None:
    png = put(app_fs, PNG, ".png")
    for path in [
        f"/_hashfs/{png.relpath}",
        "/uploads/%2e%2e/_hashfs/" + png.relpath,
        f"/uploads/{png.relpath[:-4]}.jpg",
        f"/uploads/{png.id}",
    ]:
        assert fetch(nginx, path).status == 404, path
    # Above the web root nginx answers 400 itself, before the app is asked.
    assert fetch(nginx, "/uploads/%2e%2e/%2e%2e/etc/passwd").status == 400


def post(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", path, body=body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_uploads_up_to_max_content_length_pass_nginx(
    nginx: int, app_fs: tuple[Flask, FlaskHashFS]
) -> None:
    """nginx refuses a body over 1 MiB by default, with its own 413. With the documented
    client_max_body_size, what MAX_CONTENT_LENGTH allows reaches the app, and a larger
    body gets the app's own 413."""
    app, fs = app_fs
    app.config["MAX_CONTENT_LENGTH"] = 20 * 1024 * 1024

    @app.post("/upload")
    def upload() -> tuple[str, int]:
        return fs.put(request.stream).id, 201

    photo = os.urandom(5 * 1024 * 1024)
    status, body = post(nginx, "/upload", photo)
    assert (status, body) == (201, hashlib.sha256(photo).hexdigest().encode())
    status, body = post(nginx, "/upload", bytes(20 * 1024 * 1024 + 1))
    assert status == 413
    assert b"nginx" not in body  # the app's page, not nginx's
