"""Direct uploads at the store's level: presign, the bucket takes the bytes, publish.

Against the real SeaweedFS test server; the client's PUT is a plain HTTP request, as a
browser sends it. Requests are counted on the wire, so that a test can show that the
bytes never pass through this process.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from flask_hashfs import (
    ConfigurationError,
    DirectUpload,
    HashFS,
    InvalidExtension,
    InvalidId,
    InvalidUpload,
    UploadNotReceived,
)
from flask_hashfs.backends import s3
from flask_hashfs.store import HEAD_SIZE

from .direct_helpers import send_put, sha256_b64
from .s3_server import BUCKET, S3Server
from .test_backend_conformance import LARGE, blob
from .test_s3_backend import Requests

PNG = b"\x89PNG\r\n\x1a\n" + blob(5000)


@pytest.fixture
def store(s3_server: S3Server) -> HashFS:
    return HashFS(s3_server.new_url(), storage_options=s3_server.options)


def everything(store: HashFS, s3_server: S3Server) -> list[str]:
    """Every key under the store's prefix, the store's own included."""
    prefix = s3.split_url(store.root)[1] + "/"
    pages = s3_server.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"][len(prefix) :] for page in pages for item in page.get("Contents", []))


def upload(store: HashFS, data: bytes, extension: str = "") -> DirectUpload:
    """Authorize ``data`` and send it as a client would; the upload's terms."""
    terms, put = store.presign_upload(hashlib.sha256(data).hexdigest(), len(data), extension)
    status, body = send_put(put.url, data, put.headers)
    assert status == 200, body
    return terms


def test_an_upload_is_published_without_its_bytes_passing_through(
    store: HashFS, s3_server: S3Server
) -> None:
    terms, put = store.presign_upload(hashlib.sha256(PNG).hexdigest(), len(PNG), "png")
    assert terms.extension == ".png"
    assert terms.key.startswith(".hashfs/incoming/")
    assert put.headers == {
        "Content-Length": str(len(PNG)),
        "x-amz-checksum-sha256": sha256_b64(PNG),
    }
    assert "X-Amz-Credential" in put.url
    assert everything(store, s3_server) == [], "presigning sends nothing"
    assert send_put(put.url, PNG, put.headers)[0] == 200

    requests = Requests(store)
    heads: list[bytes] = []
    address = store.publish_upload(terms, heads.append)
    assert heads == [PNG[:HEAD_SIZE]]
    # The check, the head, the claim, the lookup, the id marker, a copy inside the bucket,
    # and the incoming copy removed: no request carries the bytes to or from this process.
    assert requests.take() == [
        "HeadObject",
        "GetObject",
        "PutObject",
        "ListObjectsV2",
        "PutObject",
        "CreateMultipartUpload",
        "UploadPartCopy",
        "CompleteMultipartUpload",
        "DeleteObject",
    ]
    assert not address.is_duplicate
    assert address.relpath == store.put(io.BytesIO(PNG), ".png").relpath
    with store.open(address.id) as stream:
        assert stream.read() == PNG
    info = s3_server.client.head_object(
        Bucket=BUCKET, Key=f"{s3.split_url(store.root)[1]}/{address.relpath}"
    )
    assert info["ContentType"] == "image/png"
    assert info["CacheControl"] == "public, max-age=31536000, immutable"
    assert [key for key in everything(store, s3_server) if "incoming" in key] == []
    assert store.count() == 1


def test_content_already_stored_is_claimed_and_reported_as_a_duplicate(
    store: HashFS, s3_server: S3Server
) -> None:
    first = store.put(io.BytesIO(PNG), ".bin")
    terms = upload(store, PNG, ".png")
    address = store.publish_upload(terms)
    # The one object of the id keeps the key it was first stored under.
    assert address == first._replace(is_duplicate=True)
    assert store.count() == 1
    keys = everything(store, s3_server)
    assert f".hashfs/claims/{first.id}" in keys
    assert [key for key in keys if "incoming" in key] == []


def test_an_upload_goes_where_the_id_marker_says(store: HashFS, s3_server: S3Server) -> None:
    """One object per id: a marker left by an object removed by hand names the key."""
    first = store.put(io.BytesIO(PNG), ".bin")
    prefix = s3.split_url(store.root)[1]
    s3_server.client.delete_object(Bucket=BUCKET, Key=f"{prefix}/{first.relpath}")
    address = store.publish_upload(upload(store, PNG, ".png"))
    assert address == first
    assert store.count() == 1


def test_tampered_bytes_never_land(store: HashFS, s3_server: S3Server) -> None:
    terms, put = store.presign_upload(hashlib.sha256(PNG).hexdigest(), len(PNG), ".png")
    tampered = PNG[:-1] + b"!"
    status, body = send_put(put.url, tampered, put.headers)
    assert (status, b"<Code>BadDigest</Code>" in body) == (400, True)
    # Without the checksum header, or with another length, the signature fails.
    no_checksum = {"Content-Length": put.headers["Content-Length"]}
    assert send_put(put.url, tampered, no_checksum)[0] == 403
    assert send_put(put.url, PNG + b"!", put.headers)[0] == 403
    other = {**put.headers, "x-amz-checksum-sha256": sha256_b64(tampered)}
    assert send_put(put.url, tampered, other)[0] == 403
    with pytest.raises(UploadNotReceived, match="no bytes arrived"):
        store.publish_upload(terms)
    assert everything(store, s3_server) == []


def test_a_refused_check_publishes_nothing_and_removes_the_upload(
    store: HashFS, s3_server: S3Server
) -> None:
    terms = upload(store, b"<html><script>alert(1)</script>", ".png")

    def refuse(head: bytes) -> None:
        raise ValueError(f"not a PNG: {head[:6]!r}")

    with pytest.raises(ValueError, match="not a PNG: b'<html>'"):
        store.publish_upload(terms, refuse)
    assert everything(store, s3_server) == []


def test_without_a_verified_digest_the_bytes_are_hashed(store: HashFS, s3_server: S3Server) -> None:
    """A bucket that reports no checksum (or ignores the header) is not trusted: the
    store reads the bytes back, and other bytes under the authorized id never publish."""
    prefix = s3.split_url(store.root)[1]
    for data, sent in ((PNG, PNG), (PNG, PNG[:-1] + b"!")):
        terms, _ = store.presign_upload(hashlib.sha256(data).hexdigest(), len(data), ".png")
        s3_server.client.put_object(Bucket=BUCKET, Key=f"{prefix}/{terms.key}", Body=sent)
        incoming = store.backend.incoming(terms.key)
        assert incoming is not None
        assert incoming.sha256 is None
        if sent == data:
            assert store.publish_upload(terms).relpath.endswith(".png")
        else:
            with pytest.raises(UploadNotReceived, match="the bytes that arrived are"):
                store.publish_upload(terms)
    assert store.count() == 1
    assert [key for key in everything(store, s3_server) if "incoming" in key] == []


def test_terms_that_do_not_match_what_arrived_are_refused(
    store: HashFS, s3_server: S3Server
) -> None:
    terms = upload(store, PNG, ".png")
    with pytest.raises(UploadNotReceived, match=f"{len(PNG)} bytes arrived, not the 5"):
        store.publish_upload(terms._replace(size=5))
    terms = upload(store, PNG, ".png")
    other = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(UploadNotReceived, match="the bytes that arrived are"):
        store.publish_upload(terms._replace(id=other))
    for key in ("a/b", ".hashfs/claims/" + other, "../" + terms.key, terms.key + "/x"):
        with pytest.raises(InvalidUpload, match="not an incoming key"):
            store.publish_upload(terms._replace(key=key))
    assert store.count() == 0


def test_a_large_upload_is_copied_in_parts_at_once(store: HashFS) -> None:
    data = blob(LARGE)
    terms = upload(store, data, ".bin")
    requests = Requests(store)
    address = store.publish_upload(terms)
    copies = [name for name in requests.take() if name == "UploadPartCopy"]
    assert len(copies) == -(-LARGE // s3.PART_SIZE)
    with store.open(address.id) as stream:
        assert stream.read() == data


def test_empty_content(store: HashFS) -> None:
    address = store.publish_upload(upload(store, b"", ".txt"))
    with store.open(address.id) as stream:
        assert stream.read() == b""


def test_what_cannot_be_authorized(store: HashFS, tmp_path: Path, s3_server: S3Server) -> None:
    id = hashlib.sha256(b"x").hexdigest()
    with pytest.raises(InvalidId):
        store.presign_upload(id.upper(), 1)
    with pytest.raises(InvalidExtension):
        store.presign_upload(id, 1, ".tar gz")
    for size in (-1, s3.MAX_PUT_SIZE + 1, 1.5, True):
        with pytest.raises(InvalidUpload):
            store.presign_upload(id, size)  # type: ignore[arg-type]
    assert store.presign_upload(id, s3.MAX_PUT_SIZE)[0].size == s3.MAX_PUT_SIZE
    with pytest.raises(ConfigurationError, match="must be object storage"):
        HashFS(tmp_path).presign_upload(id, 1)
    blake3 = HashFS(s3_server.new_url(), algorithm="blake3", storage_options=s3_server.options)
    with pytest.raises(ConfigurationError, match="must be 'sha256'"):
        blake3.presign_upload(id, 1)


def test_incoming_uploads_are_no_objects_and_expire(
    store: HashFS, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    terms = upload(store, PNG, ".png")
    assert store.count() == 0
    assert list(store.ids()) == []
    assert store.stale_temp_files() == []
    assert store.sweep([], grace=0).removed == 0
    monkeypatch.setattr(s3, "INCOMING_MAX_AGE", -60)
    assert store.stale_temp_files() == [store.backend.abspath(terms.key)]
    assert store.remove_stale_temp_files() == [store.backend.abspath(terms.key)]
    assert everything(store, s3_server) == []
    with pytest.raises(UploadNotReceived):
        store.publish_upload(terms)
