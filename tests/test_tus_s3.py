"""The tus blueprint on a bucket root (the real SeaweedFS the suite starts): chunks go
to the bucket as parts of a multipart upload as they arrive, small chunks gather in a
tail object until they make a part, and a finished upload is copied into place in the
bucket, leaving no multipart upload, part or tail behind."""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
from flask import Flask
from tusclient.client import TusClient
from tusclient.uploader.uploader import Uploader

from flask_hashfs import HashAddress, HashFS
from flask_hashfs.backends.s3 import PART_SIZE
from flask_hashfs.backends.s3_partial import S3PartialUploads
from flask_hashfs.resumable import Upload

from .s3_server import BUCKET, S3Server
from .serving_helpers import running
from .test_tus import Sha256Uploader, create, data, patch, send
from .tus_app import tus_app


class Bucket(NamedTuple):
    port: int
    app: Flask
    url: str
    finished: list[tuple[Upload, HashAddress]]
    s3: S3Server

    @property
    def prefix(self) -> str:
        return self.url.removeprefix(f"s3://{BUCKET}/") + "/"

    def store(self) -> HashFS:
        return HashFS(self.url, storage_options=self.s3.options)

    def keys(self, under: str = "") -> list[str]:
        pages = self.s3.client.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix=self.prefix + under
        )
        cut = len(self.prefix)
        return sorted(item["Key"][cut:] for page in pages for item in page.get("Contents", []))

    def multipart_uploads(self) -> list[dict[str, str]]:
        reply = self.s3.client.list_multipart_uploads(Bucket=BUCKET, Prefix=self.prefix)
        return [{"Key": u["Key"], "UploadId": u["UploadId"]} for u in reply.get("Uploads", [])]


def serve(s3_server: S3Server, url: str, finished: list[tuple[Upload, HashAddress]]) -> Flask:
    config = {"HASHFS_ROOT_FOLDER": url, "HASHFS_STORAGE_OPTIONS": s3_server.options}
    app, _ = tus_app(url, lambda upload, address: finished.append((upload, address)), config=config)
    return app


@pytest.fixture
def bucket(s3_server: S3Server) -> Iterator[Bucket]:
    url = s3_server.new_url()
    finished: list[tuple[Upload, HashAddress]] = []
    app = serve(s3_server, url, finished)
    with running(app) as port:
        yield Bucket(port, app, url, finished, s3_server)


def test_small_chunks_gather_into_parts_sent_as_they_arrive(bucket: Bucket) -> None:
    body = data(2 * PART_SIZE + 5, seed=3)
    chunk = 3 << 20  # under S3's 5 MiB minimum part
    uploader = Sha256Uploader(
        file_stream=io.BytesIO(body),
        client=TusClient(f"http://127.0.0.1:{bucket.port}/files"),
        chunk_size=chunk,
        metadata={"filename": "movie.bin"},
        upload_checksum=True,
    )
    uploader.upload(stop_at=3 * chunk)
    assert uploader.url is not None
    token = uploader.url.rpartition("/")[2]
    [multipart] = bucket.multipart_uploads()
    assert multipart["Key"] == f"{bucket.prefix}.hashfs/uploads/{token}/data"
    parts = bucket.s3.client.list_parts(
        Bucket=BUCKET, Key=multipart["Key"], UploadId=multipart["UploadId"]
    )["Parts"]
    assert [part["Size"] for part in parts] == [PART_SIZE]
    tail = 3 * chunk - PART_SIZE
    assert bucket.keys(".hashfs/uploads/") == [
        f".hashfs/uploads/{token}/state",
        f".hashfs/uploads/{token}/tail-1-{3 * chunk}",
    ]
    assert (
        bucket.s3.client.head_object(
            Bucket=BUCKET, Key=f"{bucket.prefix}.hashfs/uploads/{token}/tail-1-{3 * chunk}"
        )["ContentLength"]
        == tail
    )
    assert bucket.store().count() == 0
    uploader.upload()
    [(upload, address)] = bucket.finished
    assert upload.token == token
    assert address.id == hashlib.sha256(body).hexdigest()
    assert address.relpath.endswith(".bin")
    store = bucket.store()
    with store.open(address.id) as stored:
        assert stored.read() == body
    assert store.count() == 1
    assert bucket.multipart_uploads() == []
    assert bucket.keys(".hashfs/uploads/") == [f".hashfs/uploads/{token}/state"]
    assert list(store.backend.temp_files()) == []
    assert send(bucket.port, "HEAD", "/files/" + token).headers["Upload-Offset"] == str(len(body))


def test_a_refused_checksum_leaves_the_acknowledged_bytes(bucket: Bucket) -> None:
    body = data(PART_SIZE + 100, seed=4)
    path = create(bucket.port, len(body))
    first = PART_SIZE - 100

    def checksum(chunk: bytes) -> str:
        return "sha256 " + base64.b64encode(hashlib.sha256(chunk).digest()).decode()

    assert patch(bucket.port, path, 0, body[:first]).status == 204
    wrong = patch(bucket.port, path, first, body[first:], **{"Upload-Checksum": checksum(b"x")})
    assert wrong.status == 460
    assert send(bucket.port, "HEAD", path).headers["Upload-Offset"] == str(first)
    right = patch(
        bucket.port, path, first, body[first:], **{"Upload-Checksum": checksum(body[first:])}
    )
    assert right.status == 204
    assert bucket.finished[0][1].id == hashlib.sha256(body).hexdigest()
    with bucket.store().open(bucket.finished[0][1].id) as stored:
        assert stored.read() == body


def test_an_upload_resumes_on_another_app_and_duplicates_are_stored_once(
    bucket: Bucket,
) -> None:
    body = data(PART_SIZE + (1 << 20), seed=5)
    uploader = Uploader(
        file_stream=io.BytesIO(body),
        client=TusClient(f"http://127.0.0.1:{bucket.port}/files"),
        chunk_size=4 << 20,
    )
    uploader.upload(stop_at=4 << 20)
    url = uploader.url
    assert url is not None
    # A second process of the app: everything it knows is in the bucket.
    finished: list[tuple[Upload, HashAddress]] = []
    with running(serve(bucket.s3, bucket.url, finished)) as port:
        moved = url.replace(f":{bucket.port}/", f":{port}/")
        resumed = Uploader(file_stream=io.BytesIO(body), url=moved, chunk_size=4 << 20)
        assert resumed.offset == 4 << 20
        resumed.upload()
        again = Uploader(
            file_stream=io.BytesIO(body),
            client=TusClient(f"http://127.0.0.1:{port}/files"),
            chunk_size=len(body),
        )
        again.upload()
    assert [(a.id, a.is_duplicate) for _, a in finished] == [
        (hashlib.sha256(body).hexdigest(), False),
        (hashlib.sha256(body).hexdigest(), True),
    ]
    assert bucket.store().count() == 1
    assert bucket.multipart_uploads() == []


def test_termination_and_an_empty_upload(bucket: Bucket) -> None:
    path = create(bucket.port, PART_SIZE + 10)
    assert patch(bucket.port, path, 0, data(PART_SIZE + 5)).status == 204
    assert send(bucket.port, "DELETE", path).status == 204
    assert send(bucket.port, "HEAD", path).status == 404
    assert bucket.multipart_uploads() == []
    assert bucket.keys(".hashfs/uploads/") == []
    empty = create(bucket.port, 0, "empty.txt")
    assert bucket.finished[0][1].id == hashlib.sha256(b"").hexdigest()
    assert send(bucket.port, "HEAD", empty).headers["Upload-Offset"] == "0"
    assert bucket.multipart_uploads() == []


def test_a_request_that_died_after_completing_the_parts_is_finished_by_the_retry(
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The multipart upload was completed, then the request died before it wrote so in
    the upload's state: the retry must see the completed object, not complete again."""
    body = data(PART_SIZE + 5, seed=9)
    path = create(bucket.port, len(body))
    write_state = S3PartialUploads._write_state
    died: list[bool] = []

    def die_once_completed(self: S3PartialUploads, token: str, state: dict[str, Any]) -> None:
        if state.get("complete") and not died:
            died.append(True)
            raise OSError("the worker died here")
        write_state(self, token, state)

    monkeypatch.setattr(S3PartialUploads, "_write_state", die_once_completed)
    assert patch(bucket.port, path, 0, body).status == 500
    assert died == [True]
    assert bucket.finished == []
    reply = send(bucket.port, "HEAD", path)
    assert reply.status == 200
    assert reply.headers["Upload-Offset"] == str(len(body))
    assert [address.id for _, address in bucket.finished] == [hashlib.sha256(body).hexdigest()]
    with bucket.store().open(bucket.finished[0][1].id) as stream:
        assert stream.read() == body
    assert bucket.multipart_uploads() == []
