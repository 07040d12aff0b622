"""What only object storage has: request counts, conditional writes, errors, configuration.

Everything runs against the SeaweedFS test server; requests are counted with botocore's
own event hooks, on the wire (one count per HTTP attempt, retries included).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from urllib3.exceptions import ProtocolError

from flask_hashfs import (
    BucketNotFound,
    ConfigurationError,
    FlaskHashFS,
    HashFS,
    StorageAccessDenied,
    StorageError,
    StorageUnavailable,
)
from flask_hashfs.backends import s3
from flask_hashfs.headers import CACHE_CONTROL

from .s3_server import BUCKET, S3Server
from .test_backend_conformance import LARGE, blob


class Requests:
    """The S3 operations a store sends, in order."""

    def __init__(self, store: HashFS) -> None:
        self.sent: list[str] = []
        backend = store.backend
        assert isinstance(backend, s3.S3Backend)
        backend.client.meta.events.register("before-send.s3", self._count)

    def _count(self, event_name: str, **kwargs: Any) -> None:
        self.sent.append(event_name.rpartition(".")[2])

    def take(self) -> list[str]:
        sent, self.sent = self.sent, []
        return sent


@pytest.fixture
def store(s3_server: S3Server) -> HashFS:
    return HashFS(s3_server.new_url(), storage_options=s3_server.options)


@pytest.fixture
def requests(store: HashFS) -> Requests:
    return Requests(store)


def test_small_put_is_a_claim_a_listing_the_id_marker_and_the_upload(
    store: HashFS, requests: Requests
) -> None:
    address = store.put(io.BytesIO(b"avatar"), ".png")
    assert requests.take() == ["PutObject", "ListObjectsV2", "PutObject", "PutObject"]
    assert store.put(io.BytesIO(b"avatar")).is_duplicate
    assert requests.take() == ["PutObject", "ListObjectsV2"]  # the claim, then the lookup
    assert store.exists(address.id)
    assert store.get(address.id) == address
    assert requests.take() == ["ListObjectsV2", "ListObjectsV2"]
    with store.open(address.id) as stream:
        assert stream.read() == b"avatar"
    assert requests.take() == ["ListObjectsV2", "GetObject"]


@pytest.fixture
def multipart_from_8_mib(monkeypatch: pytest.MonkeyPatch) -> None:
    """Multipart uploads from 8 MiB instead of 64, so that tests stay small."""
    monkeypatch.setattr(s3, "MULTIPART_THRESHOLD", s3.PART_SIZE)


def test_put_up_to_the_threshold_is_one_request_from_the_spool(
    store: HashFS, requests: Requests
) -> None:
    data = blob(LARGE)
    assert s3.PART_SIZE < len(data) <= s3.MULTIPART_THRESHOLD
    address = store.put(io.BytesIO(data))
    assert requests.take() == ["PutObject", "ListObjectsV2", "PutObject", "PutObject"]
    with store.open(address.id) as stream:
        assert stream.read() == data


@pytest.mark.usefixtures("multipart_from_8_mib")
def test_large_put_is_multipart_and_its_duplicate_uploads_nothing(
    store: HashFS, requests: Requests
) -> None:
    data = blob(LARGE)
    store.put(io.BytesIO(data))
    sent = requests.take()
    parts = -(-len(data) // s3.PART_SIZE)
    # the claim, the lookup, the id marker, then the upload
    assert sent[:4] == ["PutObject", "ListObjectsV2", "PutObject", "CreateMultipartUpload"]
    assert sent[4:] == ["UploadPart"] * parts + ["CompleteMultipartUpload"]
    assert store.put(io.BytesIO(data)).is_duplicate
    assert requests.take() == ["PutObject", "ListObjectsV2"]


@pytest.mark.usefixtures("multipart_from_8_mib")
def test_publishing_over_an_object_changes_nothing_and_leaves_no_upload(
    store: HashFS, s3_server: S3Server
) -> None:
    address = store.put(io.BytesIO(b"first"))
    backend = store.backend
    for data in (b"second", blob(LARGE)):
        with backend.writer() as writer:
            writer.write(data)
            assert writer.publish(address.relpath) is False
    with store.open(address.id) as stream:
        assert stream.read() == b"first"
    uploads = s3_server.client.list_multipart_uploads(Bucket=BUCKET)
    assert uploads.get("Uploads", []) == []


def test_objects_carry_type_and_cache_headers(store: HashFS, s3_server: S3Server) -> None:
    """(tests/test_s3_headers.py checks every header against the app's own route.)"""
    cases = (
        (b"x", ".png", "image/png", False),
        (blob(LARGE), "", "application/octet-stream", True),
        # Fetched straight from a public bucket, a user's page must not render.
        (b"<script>alert(1)</script>", ".html", "text/html; charset=utf-8", True),
        (b"<svg onload='alert(1)'/>", ".svg", "image/svg+xml; charset=utf-8", True),
    )
    _, prefix = s3.split_url(store.root)
    for data, ext, media_type, attachment in cases:
        address = store.put(io.BytesIO(data), ext)
        head = s3_server.client.head_object(Bucket=BUCKET, Key=f"{prefix}/{address.relpath}")
        assert head["ContentType"] == media_type
        name = address.id + ext
        assert head.get("ContentDisposition") == (
            f'attachment; filename="{name}"' if attachment else None
        )
        assert head["CacheControl"] == CACHE_CONTROL


def test_path_helpers_speak_urls(store: HashFS) -> None:
    address = store.put(io.BytesIO(b"doc"), ".pdf")
    assert address.abspath == f"{store.root}/{address.relpath}"
    assert store.realpath(address.id) == address.abspath
    assert store.idpath(address.id, ".pdf") == address.abspath
    assert store.haspath(address.abspath)
    assert not store.haspath(store.root + "/../elsewhere/x")
    assert not store.haspath("s3://other-bucket/" + address.relpath)
    assert store.unshard(address.abspath) == address.id
    store.makepath(store.root + "/a/b")
    store.remove_empty(store.root + "/a/b")
    assert store.exists(address.id)


def test_wrong_credentials_are_access_denied(s3_server: S3Server) -> None:
    options = dict(s3_server.options, aws_secret_access_key="not-the-secret")
    store = HashFS(s3_server.new_url(), storage_options=options)
    with pytest.raises(StorageAccessDenied, match=f"s3://{BUCKET}/"):
        store.put(io.BytesIO(b"x"))


def test_missing_bucket_is_named(s3_server: S3Server) -> None:
    store = HashFS("s3://no-such-bucket/p", storage_options=s3_server.options)
    with pytest.raises(BucketNotFound, match="s3://no-such-bucket/p/"):
        store.exists("0" * 64)
    with pytest.raises(StorageError, match="s3://no-such-bucket/p"):
        store.count()


def test_unreachable_server_is_retried_a_bounded_number_of_times(s3_server: S3Server) -> None:
    closed = s3_server.endpoint.rpartition(":")[0] + ":9"
    options = dict(s3_server.options, endpoint_url=closed, max_attempts=3)
    store = HashFS(s3_server.new_url(), storage_options=options)
    requests = Requests(store)
    with pytest.raises(StorageUnavailable, match=f"s3://{BUCKET}/"):
        store.put(io.BytesIO(b"x"))
    assert requests.take() == ["PutObject"] * 3  # the claim, the put's first request


def test_credentials_and_endpoint_from_the_environment(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    store = HashFS(s3_server.new_url())
    address = store.put(io.BytesIO(b"from env"))
    assert store.get(address.id) == address


@pytest.mark.parametrize(
    ("root", "options", "message"),
    [
        ("s3://", None, "no bucket name"),
        ("s3://bucket/a/../b", None, "'..'"),
        ("s3://bucket", {"endpoint": "x"}, "unknown storage option"),
        ("gs://bucket", None, "unsupported storage"),
        ("folder", {"endpoint_url": "http://127.0.0.1:1"}, "not to the folder"),
    ],
)
def test_bad_configuration(root: str, options: dict[str, Any] | None, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        HashFS(root, storage_options=options)


@pytest.fixture
def app(s3_server: S3Server) -> Iterator[Flask]:
    app = Flask(__name__)
    app.config.update(
        HASHFS_ROOT_FOLDER=s3_server.new_url(),
        HASHFS_STORAGE_OPTIONS=s3_server.options,
        HASHFS_HOST="https://cdn.example.com",
    )
    with app.app_context():
        yield app


def test_extension_on_a_bucket(app: Flask) -> None:
    hashfs = FlaskHashFS(app)
    address = hashfs.put(io.BytesIO(b"uploaded"), ".txt")
    assert hashfs.client.root == app.config["HASHFS_ROOT_FOLDER"]
    assert hashfs.url_for(address.relpath) == "https://cdn.example.com/" + address.relpath
    assert hashfs.get(address.id) == address


def test_extension_names_bad_storage_options(s3_server: S3Server) -> None:
    app = Flask(__name__)
    app.config.update(
        HASHFS_ROOT_FOLDER=s3_server.new_url(), HASHFS_STORAGE_OPTIONS={"secret": "x"}
    )
    with pytest.raises(ValueError, match="HASHFS_STORAGE_OPTIONS"):
        FlaskHashFS(app)


class DroppedConnection:
    """A response body whose connection drops on the next read: a fault that cannot be
    caused on demand against a live server, so it is injected."""

    def __init__(self, body: Any) -> None:
        self.body = body

    def read(self, size: int) -> bytes:
        raise ProtocolError("Connection broken: IncompleteRead")

    def close(self) -> None:
        self.body.close()


def test_a_broken_download_resumes_with_a_ranged_get(store: HashFS, requests: Requests) -> None:
    data = blob(LARGE, seed=5)
    address = store.put(io.BytesIO(data))
    requests.take()
    with store.open(address.id) as stream:
        head = stream.read(1000)
        reader = stream.raw  # type: ignore[attr-defined]
        reader._body = DroppedConnection(reader._body)
        rest = stream.read()
    assert head + rest == data
    assert requests.take() == ["ListObjectsV2", "GetObject", "GetObject"]
