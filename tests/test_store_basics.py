"""The hashfs 0.7.2 API, call by call, with the results it gave."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from flask_hashfs import HashAddress, HashFS, ObjectNotFound, UnreadableInput

DATA = b"hello, content-addressed world\n"
ID = hashlib.sha256(DATA).hexdigest()


def test_put_stream_returns_sharded_address(fs: HashFS) -> None:
    address = fs.put(io.BytesIO(DATA), extension="txt")
    rel = "/".join([ID[0], ID[1], ID[2], ID[3], ID[4:]]) + ".txt"
    assert address == HashAddress(ID, rel, os.path.join(fs.root, rel), False)
    assert Path(address.abspath).read_bytes() == DATA


def test_second_put_is_duplicate_and_keeps_first_extension(fs: HashFS) -> None:
    first = fs.put(io.BytesIO(DATA), extension=".txt")
    second = fs.put(io.BytesIO(DATA), extension=".csv")
    assert second.is_duplicate
    assert second.relpath == first.relpath
    assert fs.count() == 1


def test_get_by_id_relpath_and_abspath(fs: HashFS) -> None:
    address = fs.put(io.BytesIO(DATA), extension=".txt")
    assert fs.get(address.id) == address
    assert fs.get(address.relpath) == address
    assert fs.get(address.abspath) == address
    assert fs.get("invalid") is None


def test_open_read_and_delete(fs: HashFS) -> None:
    address = fs.put(io.BytesIO(DATA))
    with fs.open(address.id) as f:
        assert f.read() == DATA
    fs.delete(address.id)
    assert not fs.exists(address.id)
    assert address.id not in fs
    with pytest.raises(ObjectNotFound):
        fs.open(address.id)
    with pytest.raises(IOError, match="no stored object"):  # what hashfs code catches
        fs.open(address.id)
    assert os.listdir(fs.root) == []


def test_put_path_and_missing_path(fs: HashFS, tmp_path: Path) -> None:
    source = tmp_path / "in.bin"
    source.write_bytes(DATA)
    assert fs.put(str(source)).id == ID
    assert fs.put(source).is_duplicate
    with pytest.raises(ValueError, match="not an existing file"):
        fs.put(str(tmp_path / "missing"))
    with pytest.raises(UnreadableInput):
        fs.put(tmp_path / "missing")


def test_seekable_stream_is_read_from_start_and_restored(fs: HashFS) -> None:
    stream = io.BytesIO(DATA)
    stream.seek(5)
    assert fs.put(stream).id == ID
    assert stream.tell() == 5


def test_text_stream_stored_as_utf8_keeping_line_endings(fs: HashFS, tmp_path: Path) -> None:
    text = "caf\u00e9\r\nline two\n"
    assert fs.put(io.StringIO(text, newline="")).id == hashlib.sha256(text.encode()).hexdigest()
    latin = tmp_path / "latin.txt"
    latin.write_bytes(text.encode("latin-1"))
    with open(latin, encoding="latin-1") as handle:
        address = fs.put(handle)
    assert Path(address.abspath).read_bytes() == text.encode("utf-8")


def test_large_put_is_one_object(fs: HashFS) -> None:
    data = os.urandom(5 * (1 << 20) + 123)
    address = fs.put(io.BytesIO(data), extension=".bin")
    assert address.id == hashlib.sha256(data).hexdigest()
    assert Path(address.abspath).read_bytes() == data
    assert fs.put(io.BytesIO(data)).is_duplicate
    assert fs.count() == 1
    assert fs.size() == len(data)


def test_listing_helpers(fs: HashFS) -> None:
    addresses = [fs.put(io.BytesIO(bytes([i]) * 10)) for i in range(5)]
    assert sorted(fs.files()) == sorted(a.abspath for a in addresses)
    assert sorted(fs) == sorted(a.abspath for a in addresses)
    assert len(fs) == fs.count() == 5
    assert set(fs.folders()) == {os.path.dirname(a.abspath) for a in addresses}


def test_corrupted_and_repair(fs: HashFS) -> None:
    address = fs.put(io.BytesIO(DATA), extension=".txt")
    stray = os.path.join(fs.root, "dropped.txt")
    other = b"other content"
    Path(stray).write_bytes(other)
    Path(address.abspath).write_bytes(b"rot")
    found = dict(fs.corrupted())
    assert set(found) == {stray, address.abspath}
    repaired = fs.repair()
    # The rotted object moves to the address of what it now holds; a file that is no
    # object (hashfs moved it into the store too) waits in the quarantine instead.
    assert [(path, a.id) for path, a in repaired] == [
        (address.abspath, hashlib.sha256(b"rot").hexdigest())
    ]
    assert list(fs.corrupted()) == []
    assert fs.exists(hashlib.sha256(b"rot").hexdigest())
    assert not fs.exists(hashlib.sha256(other).hexdigest())
    assert Path(fs.root, ".hashfs/quarantine/dropped.txt").read_bytes() == other


def test_path_helpers(fs: HashFS) -> None:
    assert fs.shard(ID) == [ID[0], ID[1], ID[2], ID[3], ID[4:]]
    path = fs.idpath(ID, "jpg")
    assert path == os.path.join(fs.root, *fs.shard(ID)) + ".jpg"
    assert fs.unshard(path) == ID
    assert fs.relpath(path) == os.path.relpath(path, fs.root)
    assert fs.haspath(path)
    assert not fs.haspath("/etc/passwd")
    assert fs.realpath(ID) is None
    fs.makepath(os.path.join(fs.root, "a", "b"))
    fs.remove_empty(os.path.join(fs.root, "a", "b"))
    assert not os.path.exists(os.path.join(fs.root, "a"))
    assert fs.computehash(io.BytesIO(DATA)) == ID
