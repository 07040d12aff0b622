"""The tus blueprint on a real server on 127.0.0.1: the protocol by hand (http.client),
and whole uploads by tuspy, a third-party client, cut, resumed, and across a server
killed with SIGKILL."""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, NamedTuple

import pytest
from flask import Flask
from tusclient.client import TusClient
from tusclient.uploader.uploader import Uploader

from flask_hashfs import HashAddress, HashFS
from flask_hashfs.backends.local_partial import LocalPartialUploads, _HeldFile
from flask_hashfs.resumable import Upload, remove_expired
from flask_hashfs.tus import TusUploads, upload_finished

from .serving_helpers import running
from .tus_app import MAX_CONTENT_LENGTH, tus_app

V = {"Tus-Resumable": "1.0.0"}
PNG_HEAD = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parent.parent


class Reply(NamedTuple):
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def send(
    port: int,
    method: str,
    path: str,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
) -> Reply:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers={**V, **(headers or {})})
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def create(port: int, length: int, name: str = "data.bin", **headers: str) -> str:
    reply = send(
        port,
        "POST",
        "/files",
        {"Upload-Length": str(length), "Upload-Metadata": metadata(filename=name), **headers},
    )
    assert reply.status == 201, reply.body
    location = reply.headers["Location"]
    assert location.startswith("/files/")
    return location


def create_with_upload(port: int, body: bytes, **headers: str) -> Reply:
    """A creation of an 11-byte hello.txt that carries its first bytes."""
    return send(
        port,
        "POST",
        "/files",
        {
            "Upload-Length": "11",
            "Upload-Metadata": metadata(filename="hello.txt"),
            "Content-Type": "application/offset+octet-stream",
            **headers,
        },
        body,
    )


def patch(port: int, path: str, offset: int, body: bytes, **headers: str) -> Reply:
    return send(
        port,
        "PATCH",
        path,
        {
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
            **headers,
        },
        body,
    )


class Sha256Uploader(Uploader):
    """tuspy's uploader with sha256 checksums instead of its default sha1."""

    CHECKSUM_ALGORITHM_PAIR = ("sha256", hashlib.sha256)


class Server(NamedTuple):
    port: int
    app: Flask
    tus: TusUploads
    finished: list[tuple[Upload, HashAddress]]
    root: Path


@pytest.fixture
def server(root: Path) -> Iterator[Server]:
    finished: list[tuple[Upload, HashAddress]] = []
    app, tus = tus_app(
        root, lambda upload, address: finished.append((upload, address)), **_options()
    )
    with running(app) as port:
        yield Server(port, app, tus, finished, root)


def _options() -> dict[str, Any]:
    return {"allowed_extensions": {".bin", ".png", ".txt"}}


def data(size: int, seed: int = 1) -> bytes:
    return hashlib.shake_256(seed.to_bytes(4, "big")).digest(size)


def uploads_folder(root: Path) -> Path:
    return root / ".hashfs" / "uploads"


# -- the protocol, header by header -------------------------------------------------------


def test_options_advertise_version_extensions_limit_and_checksums(server: Server) -> None:
    reply = send(server.port, "OPTIONS", "/files", {})
    assert reply.status == 204
    assert reply.headers["Tus-Version"] == "1.0.0"
    assert reply.headers["Tus-Resumable"] == "1.0.0"
    extensions = reply.headers["Tus-Extension"].split(",")
    assert set(extensions) == {
        "creation",
        "creation-with-upload",
        "termination",
        "expiration",
        "checksum",
    }
    assert reply.headers["Tus-Max-Size"] == str(64 << 20)
    assert {"sha1", "sha256"} <= set(reply.headers["Tus-Checksum-Algorithm"].split(","))


def test_an_unsupported_version_is_refused_with_412(server: Server) -> None:
    reply = send(server.port, "POST", "/files", {"Tus-Resumable": "0.2.2", "Upload-Length": "3"})
    assert reply.status == 412
    assert reply.headers["Tus-Version"] == "1.0.0"
    assert not uploads_folder(server.root).exists() or not list(
        uploads_folder(server.root).iterdir()
    )


def test_head_patch_in_chunks_and_finish(server: Server) -> None:
    body = data(3 * MAX_CONTENT_LENGTH + 5)
    path = create(server.port, len(body))
    token = path.rpartition("/")[2]
    assert len(token) == 43
    head = send(server.port, "HEAD", path)
    assert head.status == 200
    assert head.headers["Upload-Offset"] == "0"
    assert head.headers["Upload-Length"] == str(len(body))
    assert head.headers["Cache-Control"] == "no-store"
    assert head.headers["Upload-Metadata"] == metadata(filename="data.bin")
    assert head.headers["Upload-Expires"].endswith(" GMT")
    # One chunk larger than MAX_CONTENT_LENGTH, then the rest.
    first = 2 * MAX_CONTENT_LENGTH
    reply = patch(server.port, path, 0, body[:first])
    assert reply.status == 204
    assert reply.headers["Upload-Offset"] == str(first)
    assert reply.headers["Upload-Expires"].endswith(" GMT")
    assert server.finished == []
    reply = patch(server.port, path, first, body[first:])
    assert reply.status == 204
    assert reply.headers["Upload-Offset"] == str(len(body))
    [(upload, address)] = server.finished
    assert address.id == hashlib.sha256(body).hexdigest()
    assert address.relpath.endswith(".bin")
    assert upload.metadata == {"filename": "data.bin"}
    fs = HashFS(server.root)
    assert fs.get(address.id) is not None
    with fs.open(address.id) as stored:
        assert stored.read() == body
    assert fs.count() == 1
    # The finished upload still answers HEAD with its whole length; its bytes are gone.
    head = send(server.port, "HEAD", path)
    assert head.headers["Upload-Offset"] == str(len(body))
    assert [p.name for p in uploads_folder(server.root).iterdir()] == [token + ".json"]


def test_offset_conflict_wrong_type_and_overlong_chunks_change_nothing(server: Server) -> None:
    path = create(server.port, 10)
    assert patch(server.port, path, 0, b"01234").status == 204
    conflict = patch(server.port, path, 3, b"34567")
    assert conflict.status == 409
    assert conflict.headers["Upload-Offset"] == "5"
    wrong_type = send(
        server.port,
        "PATCH",
        path,
        {"Upload-Offset": "5", "Content-Type": "application/octet-stream"},
        b"56789",
    )
    assert wrong_type.status == 415
    assert patch(server.port, path, 5, b"567890").status == 413
    assert send(server.port, "HEAD", path).headers["Upload-Offset"] == "5"
    assert patch(server.port, path, 5, b"56789").status == 204
    assert server.finished[0][1].id == hashlib.sha256(b"0123456789").hexdigest()


def test_checksums_accept_a_match_and_drop_a_mismatch_with_460(server: Server) -> None:
    path = create(server.port, 8)

    def checksum(algorithm: str, chunk: bytes) -> str:
        return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, chunk).digest()).decode()}"

    good = patch(server.port, path, 0, b"abcd", **{"Upload-Checksum": checksum("sha256", b"abcd")})
    assert good.status == 204
    bad = patch(server.port, path, 4, b"efgh", **{"Upload-Checksum": checksum("sha1", b"EFGH")})
    assert bad.status == 460
    assert send(server.port, "HEAD", path).headers["Upload-Offset"] == "4"
    unknown = patch(server.port, path, 4, b"efgh", **{"Upload-Checksum": "crc32 AAAAAA=="})
    assert unknown.status == 400
    assert send(server.port, "HEAD", path).headers["Upload-Offset"] == "4"
    done = patch(server.port, path, 4, b"efgh", **{"Upload-Checksum": checksum("sha1", b"efgh")})
    assert done.status == 204
    assert server.finished[0][1].id == hashlib.sha256(b"abcdefgh").hexdigest()


def test_creation_with_upload(server: Server) -> None:
    reply = create_with_upload(server.port, b"hello")
    assert reply.status == 201
    assert reply.headers["Upload-Offset"] == "5"
    assert reply.headers["Upload-Expires"].endswith(" GMT")
    assert patch(server.port, reply.headers["Location"], 5, b" world").status == 204
    assert server.finished[0][1].id == hashlib.sha256(b"hello world").hexdigest()


def test_a_creation_body_of_another_type_is_refused_before_creating(server: Server) -> None:
    reply = send(
        server.port,
        "POST",
        "/files",
        {"Upload-Length": "5", "Content-Type": "text/plain"},
        b"hello",
    )
    assert reply.status == 415
    assert not uploads_folder(server.root).exists() or not list(
        uploads_folder(server.root).iterdir()
    )


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Upload-Checksum": "sha256 " + base64.b64encode(b"x" * 32).decode()}, b"hello", 460),
        ({"Upload-Checksum": "crc32 AAAAAA=="}, b"hello", 400),
        ({}, b"hello world!", 413),
    ],
)
def test_a_refused_creation_body_leaves_no_upload(
    server: Server, headers: dict[str, str], body: bytes, status: int
) -> None:
    """The client never learns the new upload's URL, so nothing may be left of it."""
    reply = create_with_upload(server.port, body, **headers)
    assert reply.status == status
    assert "Location" not in reply.headers
    assert list(uploads_folder(server.root).iterdir()) == []


@pytest.mark.parametrize("name", ["Upload-Length", "Upload-Offset"])
def test_numbers_too_long_for_int_are_400_not_500(server: Server, name: str) -> None:
    path = create(server.port, 10)
    huge = "9" * 5000  # past Python's 4300 digits for int()
    if name == "Upload-Length":
        reply = send(server.port, "POST", "/files", {name: huge})
    else:
        reply = patch(server.port, path, 0, b"01234", **{name: huge})
    assert reply.status == 400
    assert send(server.port, "HEAD", path).headers["Upload-Offset"] == "0"


def test_an_empty_upload_is_finished_at_creation(server: Server) -> None:
    path = create(server.port, 0, "empty.txt")
    assert server.finished[0][1].id == hashlib.sha256(b"").hexdigest()
    assert send(server.port, "HEAD", path).headers["Upload-Offset"] == "0"


def test_partial_uploads_are_no_objects_for_verify_stats_or_gc(server: Server) -> None:
    path = create(server.port, 10)
    assert patch(server.port, path, 0, b"01234").status == 204
    runner = server.app.test_cli_runner()
    verify = runner.invoke(args=["hashfs", "verify", "--json"])
    assert verify.exit_code == 0, verify.output
    assert json.loads(verify.output)["checked"] == 0
    stats = runner.invoke(args=["hashfs", "stats", "--json"])
    assert json.loads(stats.output)["objects"] == 0
    fs = HashFS(server.root)
    assert fs.sweep([], grace=0).removed == 0
    assert list(fs.backend.temp_files()) == []
    assert patch(server.port, path, 5, b"56789").status == 204
    assert fs.count() == 1


def test_termination_then_404(server: Server) -> None:
    path = create(server.port, 10)
    assert patch(server.port, path, 0, b"01234").status == 204
    assert send(server.port, "DELETE", path).status == 204
    assert send(server.port, "HEAD", path).status == 404
    assert patch(server.port, path, 5, b"56789").status == 404
    assert list(uploads_folder(server.root).iterdir()) == []


def test_method_override(server: Server) -> None:
    path = create(server.port, 3)
    reply = send(
        server.port,
        "POST",
        path,
        {
            "X-HTTP-Method-Override": "PATCH",
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
        b"abc",
    )
    assert reply.status == 204
    assert server.finished[0][1].id == hashlib.sha256(b"abc").hexdigest()


@pytest.mark.parametrize(
    "path", ["/files/nope", "/files/" + "A" * 43, "/files/..%2f..%2fetc", "/files/" + "a" * 44]
)
def test_unknown_and_hostile_tokens_are_404(server: Server, path: str) -> None:
    assert send(server.port, "HEAD", path).status == 404
    assert patch(server.port, path, 0, b"x").status == 404
    assert send(server.port, "DELETE", path).status == 404


def test_expired_uploads_are_410_and_removed_by_the_command(server: Server) -> None:
    path = create(server.port, 10)
    assert patch(server.port, path, 0, b"01234").status == 204
    finished = create(server.port, 1)
    assert patch(server.port, finished, 0, b"x").status == 204
    live = create(server.port, 10)
    for record in uploads_folder(server.root).glob("*.json"):
        if not live.endswith(record.stem):
            doc = json.loads(record.read_text())
            doc["expires"] = time.time() - 1
            record.write_text(json.dumps(doc))
            # What a crash while the record was being replaced leaves next to it.
            record.with_name(record.name + ".new-0badf00d").write_text("{")
    assert send(server.port, "HEAD", path).status == 410
    assert patch(server.port, path, 5, b"56789").status == 410
    result = server.app.test_cli_runner().invoke(args=["hashfs", "expire-uploads"])
    assert result.exit_code == 0, result.output
    assert result.output == "removed 2 expired uploads\n"
    assert send(server.port, "HEAD", path).status == 404
    assert send(server.port, "HEAD", live).status == 200
    assert sorted(p.name for p in uploads_folder(server.root).iterdir()) == sorted(
        [live.rpartition("/")[2] + ".json", live.rpartition("/")[2] + ".part"]
    )
    assert HashFS(server.root).count() == 1  # the finished upload's object stays


def test_a_head_after_a_failed_publication_finishes_the_upload_first(root: Path) -> None:
    """The last chunk is acknowledged, then publication fails (here the app's hook). A
    client that lost the reply asks with HEAD, and takes offset == length for done: the
    HEAD must not say so before the object is stored and the hook has run."""
    finished: list[str] = []
    failures = [RuntimeError("the database is down")]

    def record(upload: Upload, address: HashAddress) -> None:
        if failures:
            raise failures.pop()
        finished.append(address.id)

    app, _ = tus_app(root, record, **_options())
    with running(app) as port:
        path = create(port, 10)
        assert patch(port, path, 0, b"0123456789").status == 500
        assert finished == []
        reply = send(port, "HEAD", path)
        assert reply.status == 200
        assert reply.headers["Upload-Offset"] == "10"
        assert finished == [hashlib.sha256(b"0123456789").hexdigest()]
        assert HashFS(root).exists(finished[0])
        assert send(port, "HEAD", path).status == 200
        assert len(finished) == 1  # finished once


def test_a_damaged_record_does_not_keep_the_others_from_expiring(server: Server) -> None:
    """A cron job that stopped at the first unreadable record would never expire anything
    again: the others go, and the run fails naming the damaged one."""
    damaged = create(server.port, 10).rpartition("/")[2]
    expired = create(server.port, 10).rpartition("/")[2]
    folder = uploads_folder(server.root)
    for token in (damaged, expired):
        record = folder / f"{token}.json"
        doc = json.loads(record.read_text())
        doc["expires"] = time.time() - 1
        record.write_text(json.dumps(doc))
    (folder / f"{damaged}.json").write_text('{"expires": ')
    result = server.app.test_cli_runner().invoke(args=["hashfs", "expire-uploads"])
    assert result.exit_code == 1
    assert "removed 1 expired uploads; 1 could not be handled" in result.output
    assert f"{damaged}.json" in result.output
    assert sorted(p.name for p in folder.iterdir()) == [f"{damaged}.json", f"{damaged}.part"]


def test_expiry_keeps_an_upload_that_a_chunk_renewed_after_expiry_read_its_record(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race of a chunk with ``expire-uploads``: the run reads an upload's record, the
    chunk is acknowledged (and renews the upload), and only then does the run remove it.
    The interleaving is forced by sending the chunk from inside the run's read."""
    path = create(server.port, 10)
    token = path.rpartition("/")[2]
    expires = json.loads((uploads_folder(server.root) / f"{token}.json").read_text())["expires"]
    load = LocalPartialUploads.load
    renewed: list[int] = []
    run = threading.get_ident()

    def load_then_chunk(self: LocalPartialUploads, name: str) -> dict[str, Any] | None:
        record = load(self, name)
        if name == token and not renewed and threading.get_ident() == run:
            renewed.append(patch(server.port, path, 0, b"01234").status)
        return record

    monkeypatch.setattr(LocalPartialUploads, "load", load_then_chunk)
    assert remove_expired(HashFS(server.root), now=expires) == 0
    assert renewed == [204]
    reply = send(server.port, "HEAD", path)
    assert reply.status == 200
    assert reply.headers["Upload-Offset"] == "5"
    assert patch(server.port, path, 5, b"56789").status == 204
    assert server.finished[0][1].id == hashlib.sha256(b"0123456789").hexdigest()


def test_limits_and_extensions_are_checked_at_creation(server: Server) -> None:
    too_big = send(server.port, "POST", "/files", {"Upload-Length": str((64 << 20) + 1)})
    assert too_big.status == 413
    refused = send(
        server.port,
        "POST",
        "/files",
        {"Upload-Length": "10", "Upload-Metadata": metadata(filename="run.exe")},
    )
    assert refused.status == 415
    deferred = send(server.port, "POST", "/files", {"Upload-Defer-Length": "1"})
    assert deferred.status == 400
    bad_metadata = send(
        server.port, "POST", "/files", {"Upload-Length": "1", "Upload-Metadata": "filename ***"}
    )
    assert bad_metadata.status == 400
    assert not uploads_folder(server.root).exists() or not list(
        uploads_folder(server.root).iterdir()
    )


def test_content_that_is_not_its_type_is_refused_at_the_first_chunk(server: Server) -> None:
    path = create(server.port, 100_000, "photo.png")
    reply = patch(server.port, path, 0, b"<html><script>alert(1)</script>" + bytes(1000))
    assert reply.status == 415
    assert send(server.port, "HEAD", path).status == 404
    assert list(uploads_folder(server.root).iterdir()) == []
    assert HashFS(server.root).count() == 0


def test_content_checked_at_the_end_when_the_head_came_in_pieces(server: Server) -> None:
    path = create(server.port, 40, "photo.png")
    assert patch(server.port, path, 0, b"GIF8").status == 204
    assert patch(server.port, path, 4, b"9a" + bytes(34)).status == 415
    assert send(server.port, "HEAD", path).status == 404
    assert HashFS(server.root).count() == 0
    good = PNG_HEAD + bytes(32)
    path = create(server.port, len(good), "photo.png")
    assert patch(server.port, path, 0, good[:4]).status == 204
    assert patch(server.port, path, 4, good[4:]).status == 204
    assert server.finished[0][1].relpath.endswith(".png")


def test_authorize_runs_on_every_request_and_identify_binds_the_owner(root: Path) -> None:
    seen: list[tuple[str, str | None]] = []
    user = {"name": "alice"}

    def authorize(action: str, upload: Upload | None) -> bool:
        seen.append((action, upload.owner if upload else None))
        return user["name"] != "mallory"

    app, _ = tus_app(root, authorize=authorize, identify=lambda: user["name"])
    with running(app) as port:
        path = create(port, 4)
        assert send(port, "OPTIONS", path).status == 204
        assert send(port, "HEAD", path).status == 200
        user["name"] = "bob"
        assert send(port, "HEAD", path).status == 404  # bob cannot tell it exists
        assert patch(port, path, 0, b"abcd").status == 404
        user["name"] = "mallory"
        assert send(port, "POST", "/files", {"Upload-Length": "1"}).status == 403
        user["name"] = "alice"
        assert patch(port, path, 0, b"abcd").status == 204
    assert seen == [
        ("create", None),
        ("options", None),
        ("head", "alice"),
        ("create", None),
        ("patch", "alice"),
    ]


def test_the_signal_carries_the_address(server: Server) -> None:
    received: list[HashAddress] = []

    def listener(app: Flask, upload: Upload, address: HashAddress) -> None:
        received.append(address)

    with upload_finished.connected_to(listener, server.app):
        path = create(server.port, 3)
        assert patch(server.port, path, 0, b"xyz").status == 204
    assert [a.id for a in received] == [hashlib.sha256(b"xyz").hexdigest()]


def test_a_second_upload_of_the_same_bytes_is_a_duplicate_stored_once(server: Server) -> None:
    for _ in range(2):
        path = create(server.port, 6)
        assert patch(server.port, path, 0, b"same!!").status == 204
    assert [address.is_duplicate for _, address in server.finished] == [False, True]
    assert HashFS(server.root).count() == 1
    assert list(uploads_folder(server.root).glob("*.part")) == []


# -- tuspy ---------------------------------------------------------------------------------


def test_tuspy_uploads_in_chunks_with_sha256_checksums(server: Server) -> None:
    body = PNG_HEAD + data(5 * MAX_CONTENT_LENGTH + 123)
    client = TusClient(f"http://127.0.0.1:{server.port}/files")
    uploader = Sha256Uploader(
        file_stream=io.BytesIO(body),
        client=client,
        chunk_size=MAX_CONTENT_LENGTH * 2,
        metadata={"filename": "picture.png"},
        upload_checksum=True,
    )
    uploader.upload()
    [(upload, address)] = server.finished
    assert address.id == hashlib.sha256(body).hexdigest()
    assert address.relpath.endswith(".png")
    assert upload.length == len(body)


def test_an_upload_cut_halfway_resumes_with_tuspy(server: Server) -> None:
    body = data(4 << 20)
    path = create(server.port, len(body))
    half = len(body) // 2
    # A PATCH that announces every byte and sends half, then the connection drops.
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            (
                f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
                f"Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body[:half]
        )
    offset = _settled_offset(server.root, server.port, path, half)
    assert offset == half  # what came is kept
    uploader = Uploader(
        file_stream=io.BytesIO(body),
        url=f"http://127.0.0.1:{server.port}{path}",
        chunk_size=1 << 20,
    )
    assert uploader.offset == half
    uploader.upload()
    assert server.finished[0][1].id == hashlib.sha256(body).hexdigest()


def test_a_cut_chunk_with_a_checksum_is_dropped_whole(server: Server) -> None:
    body = data(2 << 20)
    path = create(server.port, len(body))
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            (
                f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
                f"Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                f"Upload-Checksum: sha256 {digest}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body[: len(body) // 2]
        )
    assert _settled_offset(server.root, server.port, path, len(body) // 2) == 0


def _settled_offset(root: Path, port: int, path: str, received: int) -> int:
    """The offset once the server has received ``received`` bytes of the cut request and
    let go of it (423 until then)."""
    part = uploads_folder(root) / (path.rpartition("/")[2] + ".part")
    for _ in range(200):
        if part.stat().st_size >= received:
            break
        time.sleep(0.05)
    for _ in range(200):
        reply = patch(port, path, 0, b"")
        if reply.status != 423:
            return int(send(port, "HEAD", path).headers["Upload-Offset"])
        time.sleep(0.05)
    raise AssertionError("the server never let go of the cut request")


# -- a server killed mid-upload ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(root: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.tus_app", str(root), str(port)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    for _ in range(200):
        try:
            if send(port, "OPTIONS", "/files").status == 204:
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("the tus server did not start")


def test_a_server_killed_mid_patch_restarts_and_tuspy_resumes(root: Path) -> None:
    port = _free_port()
    body = data(12 << 20, seed=7)
    server = _start(root, port)
    try:
        client = TusClient(f"http://127.0.0.1:{port}/files")
        uploader = Uploader(
            file_stream=io.BytesIO(body),
            client=client,
            chunk_size=2 << 20,
            metadata={"filename": "video.bin"},
        )
        uploader.upload(stop_at=4 << 20)
        url = uploader.url
        assert url is not None
        path = url.removeprefix(f"http://127.0.0.1:{port}")
        part = uploads_folder(root) / (path.rpartition("/")[2] + ".part")
        # A PATCH of everything left, killed with SIGKILL while its bytes arrive.
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(
                (
                    f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
                    f"Upload-Offset: {4 << 20}\r\n"
                    "Content-Type: application/offset+octet-stream\r\n"
                    f"Content-Length: {len(body) - (4 << 20)}\r\n\r\n"
                ).encode()
                + body[4 << 20 : 7 << 20]
            )
            for _ in range(400):
                if part.stat().st_size >= 6 << 20:
                    break
                time.sleep(0.01)
            assert part.stat().st_size >= 6 << 20
            server.send_signal(signal.SIGKILL)
            server.wait()
        server = _start(root, port)
        # Nothing of the killed chunk was acknowledged: tuspy resumes where it stood.
        resumed = Uploader(file_stream=io.BytesIO(body), url=url, chunk_size=2 << 20)
        assert resumed.offset == 4 << 20
        resumed.upload()
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
    lines = Path(str(root) + ".finished").read_text().splitlines()
    assert lines == [f"{hashlib.sha256(body).hexdigest()} False video.bin"]
    fs = HashFS(root)
    address_id = lines[0].split()[0]
    with fs.open(address_id) as stored:
        assert hashlib.sha256(stored.read()).hexdigest() == address_id
    assert list(uploads_folder(root).glob("*.part")) == []


def test_chunks_hashed_as_they_came_are_not_read_back(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In one process the last chunk publishes at once; a process that did not see the
    earlier chunks (a restart, another worker) reads the upload back once."""
    read: list[int] = []
    reader = _HeldFile.reader

    def counting(self: _HeldFile) -> IO[bytes]:
        stream = reader(self)
        original = stream.read

        def read_counted(size: int = -1) -> bytes:
            data = original(size)
            read.append(len(data))
            return data

        monkeypatch.setattr(stream, "read", read_counted)
        return stream

    monkeypatch.setattr(_HeldFile, "reader", counting)
    body = data(3 << 20)
    app, _ = tus_app(root)
    with running(app) as port:
        path = create(port, len(body))
        assert patch(port, path, 0, body[: 1 << 20]).status == 204
        assert patch(port, path, 1 << 20, body[1 << 20 :]).status == 204
        assert sum(read) == 32  # the type check's head, nothing more
        read.clear()
        path = create(port, len(body), "other.bin")
        assert patch(port, path, 0, body[: 1 << 20]).status == 204
    restarted, _ = tus_app(root)
    with running(restarted) as port:
        assert patch(port, path, 1 << 20, body[1 << 20 :]).status == 204
    assert sum(read) == 32 + len(body)


def test_a_chunk_costs_two_fsyncs_and_the_finish_makes_its_record_durable_first(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    fsync = os.fsync

    def counted(fd: int) -> None:
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", counted)
    path = create(server.port, 8)
    token = path.rpartition("/")[2]
    synced.clear()
    assert patch(server.port, path, 0, b"abcd").status == 204
    assert [name.partition(".new-")[0] for name in synced] == [token + ".part", token + ".json"]
    synced.clear()
    assert patch(server.port, path, 4, b"efgh").status == 204
    # The bytes, the record, then the uploads folder before the bytes become an object's.
    assert [name.partition(".new-")[0] for name in synced[:3]] == [
        token + ".part",
        token + ".json",
        "uploads",
    ]
