"""Uploads: FileStorage and request.stream into put, and the put_upload refusals."""

from __future__ import annotations

import hashlib
import http.client
import io
import os
from pathlib import Path

import pytest
from flask import Flask, request
from flask.testing import FlaskClient

from flask_hashfs import FlaskHashFS, InvalidExtension
from flask_hashfs.uploads import filename_extension

from .serving_helpers import fetch, running, serving_app

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
HTML = b"<html><body><script>fetch('/account').then(r => r.text())</script></body></html>"


def make_app(root: Path, **config: object) -> tuple[Flask, FlaskHashFS]:
    app, fs = serving_app(root, **config)

    @app.post("/photos")
    def upload_photo() -> tuple[str, int]:
        address = fs.put_upload(
            request.files.get("photo"), allowed_extensions={".png", ".jpg", ".gif", ".txt", ".svg"}
        )
        return address.relpath, 201

    @app.post("/raw/<ext>")
    def upload_raw(ext: str) -> tuple[str, int]:
        limit = request.args.get("max", type=int)
        return fs.put_upload(request.stream, extension=ext, max_size=limit).relpath, 201

    @app.post("/put")
    def put_named() -> str:
        return fs.put(request.files["file"], use_filename=True).relpath

    @app.post("/put-stream")
    def put_stream() -> str:
        return fs.put(request.stream, extension=".bin").id

    return app, fs


@pytest.fixture
def app_fs(tmp_path: Path) -> tuple[Flask, FlaskHashFS]:
    return make_app(tmp_path / "store")


@pytest.fixture
def client(app_fs: tuple[Flask, FlaskHashFS]) -> FlaskClient:
    return app_fs[0].test_client()


def stored(app_fs: tuple[Flask, FlaskHashFS]) -> list[str]:
    """Every file under the root, temp files included: a refused upload leaves none."""
    root = app_fs[0].config["HASHFS_ROOT_FOLDER"]
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files]


def test_put_takes_file_storage_and_its_extension(
    client: FlaskClient, app_fs: tuple[Flask, FlaskHashFS]
) -> None:
    reply = client.post("/put", data={"file": (io.BytesIO(PNG), "Holiday.Photo.PNG")})
    assert reply.status_code == 200
    relpath = reply.get_data(as_text=True)
    assert relpath.endswith(".png")
    assert Path(stored(app_fs)[0]).read_bytes() == PNG
    with client.get(f"/uploads/{relpath}") as served:
        assert served.data == PNG
        assert served.content_type == "image/png"


def test_put_with_an_unstorable_filename_extension_is_refused(
    app_fs: tuple[Flask, FlaskHashFS],
) -> None:
    from werkzeug.datastructures import FileStorage

    app, fs = app_fs
    upload = FileStorage(io.BytesIO(b"data"), filename="evil.p*g")
    with app.app_context(), pytest.raises(InvalidExtension):
        fs.put(upload, use_filename=True)
    assert stored(app_fs) == []


def test_put_takes_raw_request_stream_over_a_real_server(
    app_fs: tuple[Flask, FlaskHashFS],
) -> None:
    data = os.urandom(3 * (1 << 20) + 5)
    with running(app_fs[0]) as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("POST", "/put-stream", body=data)
        response = connection.getresponse()
        assert response.status == 200
        assert response.read().decode() == hashlib.sha256(data).hexdigest()
        connection.close()
    assert Path(stored(app_fs)[0]).read_bytes() == data


def test_put_upload_stores_and_serves(
    client: FlaskClient, app_fs: tuple[Flask, FlaskHashFS]
) -> None:
    reply = client.post("/photos", data={"photo": (io.BytesIO(PNG), "cat.png")})
    assert reply.status_code == 201
    with client.get("/uploads/" + reply.get_data(as_text=True)) as served:
        assert served.data == PNG


def test_html_disguised_as_an_image_is_refused(
    client: FlaskClient, app_fs: tuple[Flask, FlaskHashFS]
) -> None:
    reply = client.post(
        "/photos",
        data={"photo": (io.BytesIO(HTML), "cat.png", "image/png")},
    )
    assert reply.status_code == 415
    assert b"The content does not match its type (image/png)." in reply.data
    assert stored(app_fs) == []


def test_types_that_cannot_be_verified_are_stored_and_never_rendered_as_html(
    client: FlaskClient,
) -> None:
    as_text = client.post("/photos", data={"photo": (io.BytesIO(HTML), "notes.txt")})
    svg_script = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    as_svg = client.post("/photos", data={"photo": (io.BytesIO(svg_script), "logo.svg")})
    assert as_text.status_code == as_svg.status_code == 201
    with client.get("/uploads/" + as_text.get_data(as_text=True)) as text:
        assert text.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert text.headers["X-Content-Type-Options"] == "nosniff"
    with client.get("/uploads/" + as_svg.get_data(as_text=True)) as svg:
        assert svg.headers["Content-Disposition"].startswith("attachment")
        assert svg.headers["Content-Security-Policy"] == "sandbox"


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        ({}, 400, b"No file was uploaded"),
        ({"photo": (io.BytesIO(b"MZ..."), "setup.exe")}, 415, b"type .exe are not accepted"),
        ({"photo": (io.BytesIO(b"x"), "README")}, 415, b"(no extension) are not accepted"),
        ({"photo": (io.BytesIO(b"x"), "x.tar gz")}, 400, b"cannot be stored"),
    ],
)
def test_refused_uploads_get_a_clear_4xx(
    client: FlaskClient,
    app_fs: tuple[Flask, FlaskHashFS],
    data: dict[str, object],
    status: int,
    message: bytes,
) -> None:
    reply = client.post("/photos", data=data)
    assert reply.status_code == status
    assert message in reply.data
    assert stored(app_fs) == []


def test_max_size_refuses_a_large_stream_and_keeps_nothing(
    client: FlaskClient, app_fs: tuple[Flask, FlaskHashFS]
) -> None:
    big = PNG + b"\x00" * (3 << 20)
    reply = client.post(f"/raw/png?max={1 << 20}", data=big)
    assert reply.status_code == 413
    assert stored(app_fs) == []
    assert client.post(f"/raw/png?max={len(big)}", data=big).status_code == 201


def test_max_content_length_is_respected_for_chunked_streams(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path / "store", MAX_CONTENT_LENGTH=1 << 20)
    chunks = [PNG] + [b"\x00" * 65536] * 40
    with running(app) as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("POST", "/raw/png", body=iter(chunks), encode_chunked=True)
        response = connection.getresponse()
        assert response.status == 413
        connection.close()
        small = fetch(port, "/uploads/", method="GET")
        assert small.status == 404
    assert stored((app, _)) == []


@pytest.mark.parametrize(
    ("filename", "extension"),
    [
        ("photo.JPG", ".jpg"),
        ("C:\\Users\\me\\scan.pdf", ".pdf"),
        ("../../etc/passwd", ""),
        (".bashrc", ""),
        ("archive.tar.gz", ".gz"),
        ("noext", ""),
        ("trailing.", ""),
        (None, ""),
    ],
)
def test_filename_extension(filename: str | None, extension: str) -> None:
    assert filename_extension(filename) == extension


@pytest.mark.parametrize(
    ("content", "filename", "status"),
    [
        (b"", "empty.png", 415),
        (b"GIF89a" + b"\x00" * 20, "real.gif", 201),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 20, "real.jpg", 201),
        (b"GIF89a" + b"\x00" * 20, "gif-named.png", 415),
    ],
)
def test_signature_checks(
    client: FlaskClient,
    app_fs: tuple[Flask, FlaskHashFS],
    content: bytes,
    filename: str,
    status: int,
) -> None:
    reply = client.post("/photos", data={"photo": (io.BytesIO(content), filename)})
    assert reply.status_code == status
    assert len(stored(app_fs)) == (1 if status == 201 else 0)
