"""fs.stream_uploads(): a multipart form taken off the socket, over real HTTP on 127.0.0.1.

Single pass is proved by counting work: the bytes the app read from ``wsgi.input``, and
the request thread's own file I/O (``/proc/thread-self/io``: what went through read and
write system calls, which a socket's recv is not), against the bytes stored.
Refusals and cut-off bodies are checked against a root that must hold nothing, with the
store's temp files nameless (O_TMPFILE) and named alike.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import socket
import threading
import tracemalloc
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask, g, request
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from flask_hashfs import FlaskHashFS, HashFS

from .s3_server import S3Server
from .serving_helpers import running, serving_app
from .test_storage_errors import fill, small_disk, used_blocks  # noqa: F401 (a fixture)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
HTML = b"<html><body><script>alert(1)</script></body></html>"
MiB = 1 << 20
BOUNDARY = "test-boundary-5c0ffee"
FORM = f"multipart/form-data; boundary={BOUNDARY}"


def thread_io() -> dict[str, int]:
    """This thread's I/O counters: bytes passed through read and write system calls."""
    lines = Path("/proc/thread-self/io").read_text().splitlines()
    return {name: int(value) for name, _, value in (line.partition(": ") for line in lines)}


class CountingInput:
    """``wsgi.input``, counting the bytes the app reads from it."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._stream.read(size)
        self.count += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data: bytes = self._stream.readline(size)
        self.count += len(data)
        return data


def make_app(root: Path, **config: object) -> tuple[Flask, FlaskHashFS]:
    app, fs = serving_app(root, **config)
    wsgi_app = app.wsgi_app

    def counting(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ["wsgi.input"] = CountingInput(environ["wsgi.input"])
        return wsgi_app(environ, start_response)

    app.wsgi_app = counting  # type: ignore[method-assign]
    app.config["TEARDOWNS"] = threading.Semaphore(0)

    @app.before_request
    def count_from_here() -> None:
        g.io_start = thread_io()

    @app.post("/stream")
    def stream() -> dict[str, object]:
        uploads = fs.stream_uploads(
            allowed_extensions=request.args.getlist("allow") or None,
            max_size=request.args.get("max", type=int),
        )
        end = thread_io()
        return {
            "files": [
                [
                    name,
                    up.address.id,
                    up.address.relpath,
                    up.address.is_duplicate,
                    up.filename,
                    up.content_type,
                    up.size,
                ]
                for name, up in uploads.files.items(multi=True)
            ],
            "form": list(uploads.form.items(multi=True)),
            "request_form": list(request.form.items(multi=True)),
            "request_files": len(request.files),
            "received": request.environ["wsgi.input"].count,
            "read": end["rchar"] - g.io_start["rchar"],
            "written": end["wchar"] - g.io_start["wchar"],
        }

    @app.post("/spooled")
    def spooled() -> dict[str, object]:
        address = fs.put_upload(request.files["f"])
        end = thread_io()
        return {
            "id": address.id,
            "read": end["rchar"] - g.io_start["rchar"],
            "written": end["wchar"] - g.io_start["wchar"],
        }

    @app.teardown_request
    def done(exc: BaseException | None) -> None:
        app.config["TEARDOWNS"].release()

    return app, fs


@pytest.fixture(params=["nameless", "named"])
def app_fs(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Flask, FlaskHashFS]:
    app, fs = make_app(tmp_path / "store")
    with app.app_context():
        fs.client.backend.anonymous = request.param == "nameless"  # type: ignore[attr-defined]
    return app, fs


@pytest.fixture
def port(app_fs: tuple[Flask, FlaskHashFS]) -> Iterator[int]:
    with running(app_fs[0]) as port:
        yield port


def left_in_root(app_fs: tuple[Flask, FlaskHashFS]) -> list[str]:
    """Every file under the root, temp files included."""
    root = app_fs[0].config["HASHFS_ROOT_FOLDER"]
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)


def form_body(*parts: tuple[str, str | None, bytes]) -> bytes:
    """A multipart body: ``(name, filename or None for a text field, content)`` each."""
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            body += b"Content-Type: application/octet-stream\r\n"
        body += b"\r\n" + content + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


def post(
    port: int,
    path: str,
    body: bytes,
    content_type: str = f"multipart/form-data; boundary={BOUNDARY}",
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_files_and_fields_are_stored_in_one_pass(
    app_fs: tuple[Flask, FlaskHashFS], port: int
) -> None:
    big = os.urandom(5 * MiB + 7)
    small = os.urandom(3000)
    other = os.urandom(40_000)
    body = form_body(
        ("title", None, "Holiday ☀".encode()),
        ("photo", "Big.BIN", big),
        ("photo", "small.bin", small),
        ("empty", "", b""),
        ("doc", "notes.txt", other),
        ("tag", None, b"sea"),
    )
    status, reply = post(port, "/stream", body)
    assert status == 200, reply
    answer = json.loads(reply)
    assert [(name, id, size) for name, id, *_, size in answer["files"]] == [
        ("photo", sha256(big), len(big)),
        ("photo", sha256(small), len(small)),
        ("doc", sha256(other), len(other)),
    ]
    assert [file[2].rpartition(".")[2] for file in answer["files"]] == ["bin", "bin", "txt"]
    assert [file[3:6] for file in answer["files"]] == [
        [False, "Big.BIN", "application/octet-stream"],
        [False, "small.bin", "application/octet-stream"],
        [False, "notes.txt", "application/octet-stream"],
    ]
    assert answer["form"] == answer["request_form"] == [["title", "Holiday ☀"], ["tag", "sea"]]
    assert answer["request_files"] == 0
    root = Path(app_fs[0].config["HASHFS_ROOT_FOLDER"])
    for _, id, relpath, *_ in answer["files"]:
        assert sha256((root / relpath).read_bytes()) == id
    assert len(left_in_root(app_fs)) == 3
    # Single pass: the app read the body once, and each byte stored was written once; no
    # temp copy was written and read back.
    assert answer["received"] == len(body)
    assert answer["written"] == len(big) + len(small) + len(other)
    assert answer["read"] < 4096


def test_werkzeugs_own_parsing_writes_and_reads_each_byte_again(
    app_fs: tuple[Flask, FlaskHashFS], port: int
) -> None:
    """The counts above can tell: request.files spools the file and put reads it back."""
    big = os.urandom(5 * MiB)
    status, reply = post(port, "/spooled", form_body(("f", "big.bin", big)))
    assert status == 200, reply
    answer = json.loads(reply)
    assert answer["id"] == sha256(big)
    assert answer["written"] >= 2 * len(big)
    assert answer["read"] >= len(big)


def test_a_form_of_many_small_files_is_not_held_in_memory(
    app_fs: tuple[Flask, FlaskHashFS], port: int
) -> None:
    """Files are published once all of them passed; until then each one waits in its
    temp file, not in memory (werkzeug itself keeps up to 500 KB of each in memory)."""
    files = [os.urandom(MiB) for _ in range(40)]
    body = form_body(*((f"f{n}", f"{n}.bin", data) for n, data in enumerate(files)))
    tracemalloc.start()
    try:
        status, reply = post(port, "/stream", body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == 200, reply
    assert [file[1] for file in json.loads(reply)["files"]] == [sha256(data) for data in files]
    assert peak < 12 * MiB  # the 40 MiB form, one chunk and the parser's buffers


def test_a_second_upload_of_the_same_bytes_is_a_duplicate(
    app_fs: tuple[Flask, FlaskHashFS], port: int
) -> None:
    data = os.urandom(3 * MiB)
    first = json.loads(post(port, "/stream", form_body(("f", "a.bin", data)))[1])
    second = json.loads(post(port, "/stream", form_body(("f", "b.dat", data)))[1])
    assert first["files"][0][1:4] == [sha256(data), first["files"][0][2], False]
    assert second["files"][0][1:4] == [sha256(data), first["files"][0][2], True]
    assert len(left_in_root(app_fs)) == 1


@pytest.mark.parametrize(
    ("query", "parts", "status", "message"),
    [
        ("?allow=.png", [("f", "setup.exe", b"MZ" * 100)], 415, b"type .exe are not accepted"),
        ("?allow=.png", [("f", "README", b"x")], 415, b"(no extension) are not accepted"),
        ("", [("f", "x.tar gz", b"x")], 400, b"cannot be stored"),
        ("", [("f", "cat.png", HTML)], 415, b"does not match its type (image/png)"),
        ("", [("f", "cat.png", HTML * 20_000)], 415, b"does not match its type (image/png)"),
        ("", [("f", "empty.png", b"")], 415, b"does not match its type (image/png)"),
        ("?max=1000", [("f", "big.bin", b"x" * 1001)], 413, b"larger than 1000 bytes"),
        ("?max=3000000", [("f", "big.bin", os.urandom(5 * MiB))], 413, b"larger than"),
        # The first file passes, the second is refused: neither is stored.
        (
            "?allow=.png",
            [("f", "ok.png", PNG + os.urandom(3 * MiB)), ("f", "no.gif", b"GIF89a")],
            415,
            b"type .gif are not accepted",
        ),
        ("", [("f", "ok.png", PNG * 20_000), ("f", "bad.png", HTML)], 415, b"does not match"),
    ],
)
def test_refused_uploads_leave_nothing(
    app_fs: tuple[Flask, FlaskHashFS],
    port: int,
    query: str,
    parts: list[tuple[str, str, bytes]],
    status: int,
    message: bytes,
) -> None:
    reply = post(port, "/stream" + query, form_body(*parts))
    assert reply[0] == status
    assert message in reply[1]
    assert left_in_root(app_fs) == []


@pytest.mark.parametrize(
    "body",
    [
        b"no multipart here",
        form_body(("f", "a.bin", os.urandom(3 * MiB)))[:-8],  # no closing boundary
    ],
)
def test_a_malformed_form_is_400_and_leaves_nothing(
    app_fs: tuple[Flask, FlaskHashFS], port: int, body: bytes
) -> None:
    status, reply = post(port, "/stream", body)
    assert status == 400
    assert b"The form could not be read" in reply
    assert left_in_root(app_fs) == []


def test_a_form_over_max_content_length_is_413(tmp_path: Path) -> None:
    app, fs = make_app(tmp_path / "store", MAX_CONTENT_LENGTH=MiB)
    with running(app) as port:
        status, _ = post(port, "/stream", form_body(("f", "a.bin", os.urandom(MiB))))
    assert status == 413
    assert left_in_root((app, fs)) == []


@pytest.mark.parametrize("cut", [100, 3 * MiB])
def test_a_client_that_goes_away_mid_body_leaves_nothing(
    app_fs: tuple[Flask, FlaskHashFS], port: int, cut: int
) -> None:
    body = form_body(("f", "a.bin", os.urandom(6 * MiB)))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        client.sendall(
            b"POST /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n".encode()
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:cut]
        )
    assert app_fs[0].config["TEARDOWNS"].acquire(timeout=30)
    assert left_in_root(app_fs) == []


def test_a_body_that_ends_early_under_gunicorn_is_400(tmp_path: Path) -> None:
    """gunicorn ends ``wsgi.input`` where the client stopped sending (and says so with
    ``wsgi.input_terminated``), so that werkzeug checks no length: the form must."""
    app, fs = make_app(tmp_path / "store")
    body = form_body(("f", "a.bin", os.urandom(3 * MiB)))
    reply = app.test_client().post(
        "/stream",
        input_stream=io.BytesIO(body[: 2 * MiB]),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": str(len(body))},
    )
    assert reply.status_code == 400
    assert b"ended after 2097152 of its" in reply.data
    assert left_in_root((app, fs)) == []


def test_a_form_parsed_before_the_view_is_stored_with_the_same_checks(tmp_path: Path) -> None:
    """A CSRF check reading request.form first: werkzeug spooled the files already."""
    app, fs = make_app(tmp_path / "store")

    @app.before_request
    def read_the_form_first() -> None:
        request.form.get("csrf_token")

    data = os.urandom(2 * MiB + 1)
    with running(app) as port:
        status, reply = post(port, "/stream", form_body(("t", None, b"x"), ("f", "a.bin", data)))
        refused = post(port, "/stream?allow=.png", form_body(("f", "a.bin", data)))
    assert status == 200, reply
    answer = json.loads(reply)
    assert [file[1] for file in answer["files"]] == [sha256(data)]
    assert answer["form"] == [["t", "x"]]
    assert refused[0] == 415
    assert len(left_in_root((app, fs))) == 1


def test_a_urlencoded_form_has_fields_and_no_files(
    app_fs: tuple[Flask, FlaskHashFS], port: int
) -> None:
    status, reply = post(port, "/stream", b"a=1&b=2", "application/x-www-form-urlencoded")
    assert status == 200
    answer = json.loads(reply)
    assert (answer["files"], answer["form"]) == ([], [["a", "1"], ["b", "2"]])


def test_werkzeugs_encoder_and_ours_agree(app_fs: tuple[Flask, FlaskHashFS], port: int) -> None:
    """A body from werkzeug's own encoder (another boundary, other headers) parses too."""
    boundary, body = encode_multipart(
        {"f": FileStorage(io.BytesIO(PNG), "cat.png", content_type="image/png"), "n": "1"}
    )
    status, reply = post(port, "/stream", body, f"multipart/form-data; boundary={boundary}")
    assert status == 200, reply
    assert json.loads(reply)["files"][0][1] == sha256(PNG)


# -- the store's writer ------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 10, 2 * MiB, 2 * MiB + 1, 7 * MiB + 3])
@pytest.mark.parametrize("piece", [1000, 65536, 3 * MiB])
def test_a_writer_stores_what_put_stores(fs: HashFS, size: int, piece: int) -> None:
    data = os.urandom(size)
    with fs.writer() as writer:
        for start in range(0, size, piece):
            writer.write(data[start : start + piece])
        assert writer.size == size
        address = writer.publish(".bin")
    assert address.id == sha256(data)
    assert not address.is_duplicate
    with fs.open(address.id) as stored:
        assert stored.read() == data
    assert fs.put(io.BytesIO(data), ".bin") == address._replace(is_duplicate=True)


@pytest.mark.parametrize("size", [10, 5 * MiB])
def test_a_writer_left_unpublished_keeps_nothing(fs: HashFS, root: Path, size: int) -> None:
    fs.backend.anonymous = False  # type: ignore[attr-defined]
    with fs.writer() as writer:
        writer.write(os.urandom(size))
        assert writer.hexdigest()
        with pytest.raises(ValueError, match="already hashed"):
            writer.write(b"more")
    assert not root.exists() or list(root.iterdir()) == []


def test_a_full_disk_is_507_and_leaves_nothing(small_disk: Path) -> None:  # noqa: F811
    app, fs = make_app(small_disk / "store")
    filler = fill(small_disk, leave=2 * MiB)
    before = used_blocks(small_disk)
    body = form_body(("f", "a.bin", os.urandom(MiB)), ("g", "b.bin", os.urandom(3 * MiB)))
    with running(app) as port:
        status, reply = post(port, "/stream", body)
        assert status == 507, reply
        assert str(small_disk).encode() not in reply
        assert used_blocks(small_disk) == before, "no block of either file is still held"
        assert left_in_root((app, fs)) == []
        filler.unlink()
        assert post(port, "/stream", body)[0] == 200
    assert len(left_in_root((app, fs))) == 2


# -- on a bucket -------------------------------------------------------------------------


def test_a_streamed_form_on_a_bucket_stores_its_files_or_nothing(s3_server: S3Server) -> None:
    app, fs = make_app(
        Path("unused"),
        HASHFS_ROOT_FOLDER=s3_server.new_url(),
        HASHFS_STORAGE_OPTIONS=s3_server.options,
    )
    big, small = os.urandom(3 * MiB), os.urandom(5000)
    with running(app) as port:
        refused = post(port, "/stream", form_body(("f", "a.bin", big), ("g", "b.png", HTML)))
        status, reply = post(port, "/stream", form_body(("f", "a.bin", big), ("g", "b.txt", small)))
    assert refused[0] == 415
    assert status == 200, reply
    ids = [file[1] for file in json.loads(reply)["files"]]
    assert ids == [sha256(big), sha256(small)]
    with app.app_context():
        assert sorted(fs.ids()) == sorted(ids)
        with fs.open(ids[0]) as stored:
            assert stored.read() == big
