"""What clients are told when the storage fails, over real HTTP on 127.0.0.1.

A full disk is a real one: a tmpfs of 8 MiB mounted for the test (the tests run as root,
as CI does). A failing fsync cannot be produced for real, so it is the one mocked fault.
An unreachable bucket is an endpoint on a local port nobody listens on.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import io
import logging
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request
from werkzeug.exceptions import InternalServerError, ServiceUnavailable

from flask_hashfs import (
    FlaskHashFS,
    HashFS,
    InsufficientStorage,
    StorageError,
    StorageFull,
    StorageUnavailable,
    http_error,
)
from flask_hashfs.backends import local
from flask_hashfs.errors import storage_error
from flask_hashfs.http_errors import RETRY_AFTER

from .s3_server import _free_port
from .serving_helpers import fetch, running

MiB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MiB file system (tmpfs), unmounted at the end whatever happens."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` up to ``leave`` free bytes with a file outside the store's root."""
    filler = disk / "filler"
    stats = os.statvfs(disk)
    with open(filler, "wb") as handle:
        handle.write(b"\0" * (stats.f_bavail * stats.f_frsize - leave))
    return filler


def used_blocks(disk: Path) -> int:
    stats = os.statvfs(disk)
    return stats.f_blocks - stats.f_bfree


def upload_app(root: str, **config: object) -> tuple[Flask, FlaskHashFS]:
    """An app serving its store under /uploads, with a view that takes raw bodies through
    ``put_upload`` and one that calls ``put`` itself."""
    app = Flask(__name__)
    app.config.update(HASHFS_ROOT_FOLDER=root, HASHFS_PATH_PREFIX="/uploads", HASHFS_SERVE=True)
    app.config.update(config)
    fs = FlaskHashFS(app)

    @app.post("/upload")
    def upload() -> tuple[str, int]:
        address = fs.put_upload(request.stream, extension=".bin")
        return address.relpath, 201

    @app.post("/put")
    def put() -> tuple[str, int]:
        return fs.put(request.stream, ".bin").relpath, 201

    return app, fs


def post(port: int, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", path, body=body)
        response = connection.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        connection.close()


# -- the mapping -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "kind", "status"),
    [
        (StorageFull(errno.ENOSPC, "full", "/r"), InsufficientStorage, 507),
        (StorageUnavailable(errno.EAGAIN, "away", "s3://b/k"), ServiceUnavailable, 503),
        (StorageError(errno.EIO, "broken", "/r/k"), InternalServerError, 500),
    ],
)
def test_each_storage_error_has_one_status(
    error: StorageError, kind: type[Exception], status: int
) -> None:
    answer = http_error(error)
    assert isinstance(answer, kind)
    assert answer.code == status
    assert str(error.filename) not in answer.get_response().get_data(as_text=True)


def test_full_disk_errnos_are_storage_full() -> None:
    assert isinstance(storage_error(errno.ENOSPC, "m", "/p"), StorageFull)
    assert isinstance(storage_error(errno.EDQUOT, "m", "/p"), StorageFull)
    other = storage_error(errno.EIO, "m", "/p")
    assert type(other) is StorageError
    assert other.filename == "/p"


# -- a full disk, for real ---------------------------------------------------------------


def test_full_disk_put_raises_storage_full_and_leaves_nothing(small_disk: Path) -> None:
    fs = HashFS(small_disk / "store")
    kept = fs.put(io.BytesIO(b"already stored"))
    filler = fill(small_disk, leave=1 * MiB)
    before = used_blocks(small_disk)
    with pytest.raises(StorageFull) as caught:
        fs.put(io.BytesIO(os.urandom(3 * MiB)))
    assert caught.value.errno == errno.ENOSPC
    assert "No space left on device" in str(caught.value)
    assert used_blocks(small_disk) == before, "no block of the failed put is still held"
    assert list(fs.files()) == [kept.abspath]
    assert list(fs.stale_temp_files()) == []
    filler.unlink()
    data = os.urandom(3 * MiB)
    assert fs.put(io.BytesIO(data)).id == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("view", ["/upload", "/put"])
def test_full_disk_upload_is_507_and_works_again_once_space_is_freed(
    small_disk: Path, view: str, caplog: pytest.LogCaptureFixture
) -> None:
    app, fs = upload_app(str(small_disk / "store"))
    with app.app_context():
        fs.put(io.BytesIO(b"the root exists"))
    filler = fill(small_disk, leave=512 * 1024)
    data = os.urandom(2 * MiB)
    with running(app) as port, caplog.at_level(logging.ERROR, "flask_hashfs"):
        status, _, body = post(port, view, data)
        assert status == 507
        assert b"no space left to store this upload" in body
        assert str(small_disk).encode() not in body, "a client is never told a path"
        assert "storage full" in caplog.text
        assert str(small_disk / "store") in caplog.text
        with app.app_context():
            assert fs.count() == 1
        filler.unlink()
        status, _, body = post(port, view, data)
        assert status == 201
        assert fetch(port, "/uploads/" + body.decode()).body == data


# -- a failing fsync (mocked: it cannot be produced for real) ----------------------------


def _fsync_failing_once() -> Callable[[int], None]:
    failed: list[int] = []

    def fsync(fd: int) -> None:
        if not failed:
            failed.append(fd)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        os.fsync(fd)

    return fsync


class _OsWith:
    def __init__(self, **overrides: Any) -> None:
        self._overrides = overrides

    def __getattr__(self, name: str) -> Any:
        return self._overrides.get(name) or getattr(os, name)


def test_fsync_eio_is_500_naming_the_key_and_publishes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app, fs = upload_app(str(tmp_path / "store"))
    (tmp_path / "store").mkdir()
    data = os.urandom(100_000)
    id = hashlib.sha256(data).hexdigest()
    with running(app) as port:
        monkeypatch.setattr(local, "os", _OsWith(fsync=_fsync_failing_once()))
        with caplog.at_level(logging.ERROR, "flask_hashfs"):
            status, _, body = post(port, "/upload", data)
        assert status == 500
        assert b"Input/output error" not in body
        with app.app_context():
            key = fs.idpath(id, ".bin")
            assert fs.get(id) is None
            assert list(fs.client.stale_temp_files()) == []
        assert f"could not fsync {key!r}: Input/output error" in caplog.text
        status, _, body = post(port, "/upload", data)
        assert status == 201


# -- a bucket nobody answers for ---------------------------------------------------------


@pytest.fixture
def unreachable_app() -> Flask:
    options = {
        "endpoint_url": f"http://127.0.0.1:{_free_port()}",
        "aws_access_key_id": "k",
        "aws_secret_access_key": "s",
        "region_name": "us-east-1",
        "max_attempts": 1,
    }
    app, _ = upload_app("s3://away/prefix", HASHFS_STORAGE_OPTIONS=options)
    return app


@pytest.mark.parametrize("view", ["/upload", "/put"])
def test_unreachable_bucket_upload_is_503_with_retry_after(
    unreachable_app: Flask, view: str, caplog: pytest.LogCaptureFixture
) -> None:
    with running(unreachable_app) as port, caplog.at_level(logging.WARNING, "flask_hashfs"):
        status, headers, body = post(port, view, b"some bytes")
    assert status == 503
    assert headers["Retry-After"] == str(RETRY_AFTER)
    assert b"127.0.0.1" not in body
    assert "s3://away/prefix" in caplog.text


def test_unreachable_bucket_read_is_503_naming_the_key(
    unreachable_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    id = "abcd" + "0" * 60
    key = "/".join(id[:4]) + "/" + id[4:] + ".png"
    with running(unreachable_app) as port, caplog.at_level(logging.WARNING, "flask_hashfs"):
        for method in ("GET", "HEAD"):
            reply = fetch(port, "/uploads/" + key, method)
            assert reply.status == 503
            assert reply.headers["Retry-After"] == str(RETRY_AFTER)
    assert key in caplog.text


# -- any other storage error -------------------------------------------------------------


def test_other_storage_error_is_500_whose_log_names_the_place(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "not-a-folder"
    root.write_bytes(b"a file where the root should be")
    app, _ = upload_app(str(root))
    with running(app) as port, caplog.at_level(logging.ERROR, "flask_hashfs"):
        status, _, body = post(port, "/put", b"data")
    assert status == 500
    assert str(root).encode() not in body
    assert f"storage error on {root}" in caplog.text


def test_an_app_handler_registered_after_init_app_replaces_the_mapping(tmp_path: Path) -> None:
    root = tmp_path / "not-a-folder"
    root.write_bytes(b"")
    app, _ = upload_app(str(root))

    @app.errorhandler(StorageError)
    def mine(exc: StorageError) -> tuple[str, int]:
        return "ours", 502

    with running(app) as port:
        assert post(port, "/put", b"data")[:1] == (502,)


# -- a client that goes away -------------------------------------------------------------


@pytest.mark.parametrize("view", ["/upload", "/put"])
def test_a_body_shorter_than_its_content_length_is_400_and_stores_nothing(
    tmp_path: Path, view: str
) -> None:
    """gunicorn sets ``wsgi.input_terminated`` and ends the body stream where the client
    stopped sending; werkzeug then does not check the length, so the app must."""
    app, fs = upload_app(str(tmp_path / "store"))
    sent = os.urandom(200_000)
    with app.test_client() as client:
        reply = client.post(
            view,
            input_stream=io.BytesIO(sent[:50_000]),
            environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": str(len(sent))},
        )
    assert reply.status_code == 400
    assert b"ended after 50000 of its 200000 bytes" in reply.data
    with app.app_context():
        assert fs.count() == 0
