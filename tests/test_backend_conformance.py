"""One behavioural suite, run unchanged against every backend (as fsspec's tests/abstract).

Each test gets a fresh, empty store from the ``store`` fixture (a folder, or a prefix of
a bucket on the SeaweedFS test server) and a ``raw`` view that writes and lists behind
the store's back: what a bit flip, a hand-copied file or a crashed writer leaves.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path
from typing import Protocol

import pytest

from flask_hashfs import HashFS, ObjectNotFound
from flask_hashfs.backends import local, s3

from .s3_server import BUCKET, S3Server

#: Larger than a multipart part and than the memory spool: the large-object path.
LARGE = 2 * s3.PART_SIZE + 12345


def blob(size: int, seed: int = 0) -> bytes:
    """Incompressible, reproducible bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha512(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Raw(Protocol):
    """Direct access to where a store keeps its bytes, bypassing the store."""

    def write(self, key: str, data: bytes) -> None: ...

    def leftovers(self) -> list[str]:
        """Whatever an unfinished put left: temp files, unfinished multipart uploads."""

    def make_leftover(self) -> None:
        """What a writer killed mid-put leaves."""


class LocalRaw:
    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def leftovers(self) -> list[str]:
        if not self.root.exists():
            return []
        return [p.name for p in self.root.iterdir() if p.name.startswith(local.TEMP_PREFIX)]

    def make_leftover(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / (local.TEMP_PREFIX + "crashed")).write_bytes(b"half a put")


class S3Raw:
    def __init__(self, server: S3Server, prefix: str) -> None:
        self.server = server
        self.prefix = prefix

    def write(self, key: str, data: bytes) -> None:
        self.server.client.put_object(Bucket=BUCKET, Key=f"{self.prefix}/{key}", Body=data)

    def leftovers(self) -> list[str]:
        reply = self.server.client.list_multipart_uploads(Bucket=BUCKET, Prefix=self.prefix + "/")
        return [upload["Key"] for upload in reply.get("Uploads", [])]

    def make_leftover(self) -> None:
        key = f"{self.prefix}/0/0/0/0/{'0' * 60}"
        upload = self.server.client.create_multipart_upload(Bucket=BUCKET, Key=key)
        self.server.client.upload_part(
            Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"half"
        )


@pytest.fixture(params=["local", "s3"])
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_and_raw(
    backend_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> tuple[HashFS, Raw]:
    if backend_name == "local":
        root = tmp_path / "store"
        return HashFS(root), LocalRaw(root)
    server: S3Server = request.getfixturevalue("s3_server")
    url = server.new_url()
    # A writer that died leaves an upload that only ages; in a test, age is no factor.
    request.getfixturevalue("monkeypatch").setattr(s3, "STALE_UPLOAD_AGE", -60.0)
    return HashFS(url, storage_options=server.options), S3Raw(server, s3.split_url(url)[1])


@pytest.fixture
def store(store_and_raw: tuple[HashFS, Raw]) -> HashFS:
    return store_and_raw[0]


@pytest.fixture
def raw(store_and_raw: tuple[HashFS, Raw]) -> Raw:
    return store_and_raw[1]


def test_put_then_get_exists_open(store: HashFS) -> None:
    data = b"a photo, more or less"
    address = store.put(io.BytesIO(data), extension="jpg")
    id = sha256(data)
    assert address.id == id
    assert address.relpath == f"{id[0]}/{id[1]}/{id[2]}/{id[3]}/{id[4:]}.jpg"
    assert address.abspath == store.root + "/" + address.relpath
    assert not address.is_duplicate
    for name in (id, address.relpath, address.abspath):
        assert store.exists(name)
        assert name in store
        assert store.get(name) == address
    with store.open(id) as stream:
        assert stream.read() == data
    with store.open(address.relpath, "r") as text:
        assert text.read() == data.decode()
    info = store.info(id)
    assert info is not None
    assert (info.key, info.size) == (address.relpath, len(data))


def test_missing_objects(store: HashFS) -> None:
    id = sha256(b"never stored")
    assert not store.exists(id)
    assert store.get(id) is None
    assert store.info(id) is None
    assert store.realpath(id) is None
    with pytest.raises(ObjectNotFound):
        store.open(id)
    store.delete(id)


def test_empty_and_large_objects_round_trip(store: HashFS) -> None:
    for data in (b"", blob(LARGE)):
        address = store.put(io.BytesIO(data))
        assert address.id == sha256(data)
        with store.open(address.id) as stream:
            assert stream.read() == data


def test_put_by_path_keeps_the_extension_given(store: HashFS, tmp_path: Path) -> None:
    source = tmp_path / "upload.bin"
    source.write_bytes(blob(1000))
    address = store.put(str(source), ".pdf")
    assert address.relpath.endswith(".pdf")
    assert store.computehash(str(source)) == address.id


def test_ranged_reads_by_seeking(store: HashFS) -> None:
    data = blob(LARGE, seed=1)
    address = store.put(io.BytesIO(data))
    with store.open(address.id) as stream:
        assert stream.seekable()
        middle = len(data) // 2
        assert stream.seek(middle) == middle
        assert stream.read(1000) == data[middle : middle + 1000]
        assert stream.tell() == middle + 1000
        stream.seek(-10, os.SEEK_END)
        assert stream.read() == data[-10:]
        stream.seek(5)
        assert stream.read(5) == data[5:10]
        stream.seek(len(data) + 10)
        assert stream.read() == b""


def test_duplicate_put_reports_the_stored_address(store: HashFS) -> None:
    for data in (b"small", blob(LARGE, seed=2)):
        first = store.put(io.BytesIO(data), ".txt")
        second = store.put(io.BytesIO(data), ".csv")
        assert second.is_duplicate
        assert (second.id, second.relpath) == (first.id, first.relpath)
    assert store.count() == 2


def test_delete(store: HashFS) -> None:
    kept = store.put(io.BytesIO(b"kept"))
    gone = store.put(io.BytesIO(b"gone"), ".txt")
    store.delete(gone.abspath)
    assert not store.exists(gone.id)
    assert store.exists(kept.id)
    assert store.count() == 1
    store.delete(gone.id)


def test_iteration_count_and_size(store: HashFS) -> None:
    contents = [b"one", b"two two", blob(3000)]
    addresses = [store.put(io.BytesIO(data), ".dat") for data in contents]
    assert store.count() == len(store) == 3
    assert store.size() == sum(map(len, contents))
    assert set(store) == {address.abspath for address in addresses}
    assert len(list(store.folders())) == 3


def test_corrupted_and_repair(store: HashFS, raw: Raw) -> None:
    good = store.put(io.BytesIO(b"good"), ".txt")
    moved = b"bytes under another object's name"
    wrong_key = good.relpath.replace(good.id[4:], "f" * len(good.id[4:]))
    raw.write(wrong_key, moved)
    copy_key = good.relpath.replace(good.id[4:], "e" * len(good.id[4:]))
    raw.write(copy_key, b"good")

    found = dict(store.corrupted())
    assert set(found) == {store.root + "/" + wrong_key, store.root + "/" + copy_key}
    assert found[store.root + "/" + wrong_key].id == sha256(moved)

    store.repair()
    assert list(store.corrupted()) == []
    assert store.count() == 2
    with store.open(sha256(moved)) as stream:
        assert stream.read() == moved
    assert store.get(good.id) == good


@pytest.mark.parametrize("size", [100, LARGE])
def test_concurrent_duplicate_puts_store_one_object(store: HashFS, raw: Raw, size: int) -> None:
    data = blob(size, seed=3)
    results = []
    barrier = threading.Barrier(4)

    def put() -> None:
        barrier.wait()
        results.append(store.put(io.BytesIO(data), ".bin"))

    threads = [threading.Thread(target=put) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    assert sum(not address.is_duplicate for address in results) == 1
    assert {address.relpath for address in results} == {results[0].relpath}
    assert store.count() == 1
    with store.open(results[0].id) as stream:
        assert stream.read() == data
    assert raw.leftovers() == []


class Broken(io.RawIOBase):
    """A client that disconnects after ``size`` bytes of an upload."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.left <= 0:
            raise ConnectionResetError("client went away")
        n = min(len(buffer), self.left)
        buffer[:n] = b"x" * n
        self.left -= n
        return n


@pytest.mark.parametrize("size", [100, LARGE])
def test_failed_put_leaves_nothing(store: HashFS, raw: Raw, size: int) -> None:
    with pytest.raises(ConnectionResetError):
        store.put(io.BufferedReader(Broken(size)))
    assert store.count() == 0
    assert raw.leftovers() == []
    assert store.stale_temp_files() == []


def test_leftover_of_a_dead_writer_is_found_and_removed(store: HashFS, raw: Raw) -> None:
    raw.make_leftover()
    assert len(store.stale_temp_files()) == 1
    assert store.count() == 0
    assert len(store.remove_stale_temp_files()) == 1
    assert raw.leftovers() == []
    assert store.stale_temp_files() == []


def test_keys_written_behind_the_store_are_found(store: HashFS, raw: Raw) -> None:
    """A store copied key for key (disk to bucket or back) keeps every address."""
    data = b"copied by hand"
    id = sha256(data)
    raw.write(f"{id[0]}/{id[1]}/{id[2]}/{id[3]}/{id[4:]}.png", data)
    address = store.get(id)
    assert address is not None
    assert address.relpath.endswith(".png")
    assert store.put(io.BytesIO(data)).is_duplicate


def test_the_reserved_namespace_is_never_listed_counted_or_sized(store: HashFS, raw: Raw) -> None:
    """``.hashfs/`` holds the store's own bookkeeping (quarantine, claims): never objects."""
    stored = store.put(io.BytesIO(b"an object"))
    raw.write(".hashfs/quarantine/README", b"dropped in by hand, moved aside by repair")
    raw.write(".hashfs-anything", b"reserved too")
    assert list(store.files()) == [stored.abspath]
    assert store.count() == 1
    assert store.size() == len(b"an object")
