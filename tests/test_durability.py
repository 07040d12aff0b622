"""One pass, durable, and clean on failure: measured by counting work, never by timing.

The backend's ``os`` is replaced by a thin proxy that counts (and, for fault injection,
fails) chosen calls and hands every other call to the real ``os``. Faults are the only
mocks: a full disk or a failing fsync cannot be produced for real in a test.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import io
import mmap
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flask_hashfs import HashFS, StorageError, streams
from flask_hashfs.backends import local
from flask_hashfs.backends.local import TEMP_PREFIX

MiB = 1 << 20


class OsProxy:
    """The real ``os`` module, with some functions swapped for the duration of a test."""

    def __init__(self, **overrides: Callable[..., Any]) -> None:
        self._overrides = overrides

    def __getattr__(self, name: str) -> Any:
        return self._overrides.get(name) or getattr(os, name)


class Calls:
    """Counts calls of the wrapped real functions, with the file path of each fd."""

    def __init__(self) -> None:
        self.fsync: list[str] = []
        self.writes = 0
        self.created: list[str] = []

    def real_fsync(self, fd: int) -> None:
        self.fsync.append(os.readlink(f"/proc/self/fd/{fd}"))
        os.fsync(fd)

    def real_write(self, fd: int, data: Any) -> int:
        self.writes += 1
        return os.write(fd, data)

    def real_writev(self, fd: int, buffers: Any) -> int:
        self.writes += 1
        return os.writev(fd, buffers)

    def real_open(self, path: str, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_CREAT or flags & os.O_TMPFILE == os.O_TMPFILE:
            self.created.append(path)
        return os.open(path, flags, *args, **kwargs)


@pytest.fixture(params=["nameless", "named"])
def temp_kind(request: pytest.FixtureRequest, fs: HashFS) -> str:
    """Both kinds of temp file: nameless (O_TMPFILE), and named where a file system cannot
    make nameless files."""
    kind = str(request.param)
    assert isinstance(fs.backend, local.LocalBackend)
    fs.backend.anonymous = kind == "nameless"
    return kind


def is_temp_file(fs: HashFS, path: str, kind: str) -> bool:
    """Whether ``path`` (as /proc/self/fd shows an open file) is a temp file in the root."""
    if kind == "named":
        return path.startswith(os.path.join(fs.root, TEMP_PREFIX))
    return re.fullmatch(re.escape(fs.root) + r"/#\d+ \(deleted\)", path) is not None


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    counted = Calls()
    proxy = OsProxy(
        fsync=counted.real_fsync,
        write=counted.real_write,
        writev=counted.real_writev,
        open=counted.real_open,
    )
    monkeypatch.setattr(local, "os", proxy)
    return counted


# -- one pass ----------------------------------------------------------------------------


class CountingStream(io.RawIOBase):
    """A non-seekable stream (like a pipe or ``request.stream``) that counts what it gives."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self.given = 0
        self.largest_request = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self.largest_request = max(self.largest_request, len(buffer))
        chunk = self._data[self.given : self.given + len(buffer)]
        buffer[: len(chunk)] = chunk
        self.given += len(chunk)
        return len(chunk)


class CountingBytesIO(io.BytesIO):
    """A seekable stream: put rewinds it, so any second read would show in the count."""

    given = 0

    def read(self, size: int | None = -1) -> bytes:
        assert size is not None
        assert size > 0, "an unbounded read would hold the whole input in memory"
        data = super().read(size)
        self.given += len(data)
        return data


@pytest.mark.parametrize("size", [0, 1, 4096, MiB, 2 * MiB, 2 * MiB + 1, 5 * MiB + 17])
def test_each_byte_of_a_stream_is_read_once(fs: HashFS, size: int) -> None:
    data = os.urandom(size)
    pipe = CountingStream(data)
    address = fs.put(pipe)
    assert pipe.given == size
    assert pipe.largest_request <= streams.CHUNK_SIZE
    seekable = CountingBytesIO(data)
    assert fs.put(seekable).is_duplicate
    assert seekable.given == size
    # the hash is over exactly the bytes stored
    stored = Path(address.abspath).read_bytes()
    assert stored == data
    assert address.id == hashlib.sha256(stored).hexdigest()


@pytest.mark.parametrize("size", [0, 100, MiB, 2 * MiB + 5])
def test_each_byte_of_a_path_is_read_once(
    fs: HashFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    source = tmp_path / "input.bin"
    data = os.urandom(size)
    source.write_bytes(data)
    opened: list[CountingFile] = []

    class CountingFile:
        def __init__(self, path: str, mode: str, buffering: int) -> None:
            assert mode == "rb"
            self._file = open(path, mode, buffering=buffering)  # noqa: SIM115
            self.given = 0
            opened.append(self)

        def read(self, size: int) -> bytes:
            assert 0 < size <= streams.CHUNK_SIZE
            data: bytes = self._file.read(size)
            self.given += len(data)
            return data

        def close(self) -> None:
            self._file.close()

    monkeypatch.setattr(streams, "open", CountingFile, raising=False)
    address = fs.put(str(source), extension=".bin")
    assert [f.given for f in opened] == [size]
    assert Path(address.abspath).read_bytes() == data
    assert address.id == hashlib.sha256(data).hexdigest()


def test_text_stream_is_read_once_and_stored_as_utf8(fs: HashFS) -> None:
    text = "r\u00e9sum\u00e9\r\nline\n" * 100_000  # several chunks once encoded

    class CountingText(io.StringIO):
        given = 0

        def read(self, size: int | None = -1) -> str:
            assert size is not None
            assert size > 0
            data = super().read(size)
            self.given += len(data)
            return data

    stream = CountingText(text, newline="")
    address = fs.put(stream)
    assert stream.given == len(text)
    assert Path(address.abspath).read_bytes() == text.encode("utf-8")


# -- fsync per put -----------------------------------------------------------------------


def _sharing_prefix(id: str, shared: int) -> bytes:
    """Content whose id shares exactly ``shared`` leading characters with ``id``."""
    for n in range(1_000_000):
        data = b"neighbour %d" % n
        other = hashlib.sha256(data).hexdigest()
        if other[:shared] == id[:shared] and other[shared] != id[shared]:
            return data
    raise AssertionError("unreachable for a short prefix")


def test_durable_put_fsyncs_file_folder_and_new_parents(
    fs: HashFS, calls: Calls, temp_kind: str
) -> None:
    first = fs.put(io.BytesIO(b"first object"))
    folder = os.path.dirname(first.abspath)
    shards = [fs.root, *(os.path.join(fs.root, *first.id[:n]) for n in range(1, 4))]
    # the root's parent (this put made the root), the file (still a temp file),
    # its folder, and the parent of each new shard folder
    assert calls.fsync[0] == os.path.dirname(fs.root)
    assert is_temp_file(fs, calls.fsync[1], temp_kind)
    assert calls.fsync[2:] == [folder, *reversed(shards)]

    calls.fsync.clear()
    second = fs.put(io.BytesIO(_sharing_prefix(first.id, 4)))
    assert len(calls.fsync) == 2  # all its folders existed: file + folder
    assert calls.fsync[1] == os.path.dirname(second.abspath)

    calls.fsync.clear()
    third = fs.put(io.BytesIO(_sharing_prefix(first.id, 2)))
    assert os.path.dirname(third.abspath) != folder
    assert len(calls.fsync) == 4  # file + folder + the parents of its 2 new folders


@pytest.mark.parametrize("size", [10, 3 * MiB])
def test_durable_put_fsyncs_once_per_file_whatever_its_size(
    fs: HashFS, calls: Calls, temp_kind: str, size: int
) -> None:
    fs.put(io.BytesIO(b"x"))  # the shard folders of what follows may exist or not
    calls.fsync.clear()
    fs.put(io.BytesIO(os.urandom(size)))
    assert sum(is_temp_file(fs, path, temp_kind) for path in calls.fsync) == 1


def resident_bytes(path: str) -> int:
    """How much of the file is in the page cache (mincore), without reading any of it."""
    size = os.path.getsize(path)
    page = mmap.PAGESIZE
    libc = ctypes.CDLL(None, use_errno=True)
    with open(path, "rb") as file, mmap.mmap(file.fileno(), size, access=mmap.ACCESS_COPY) as m:
        pages = (ctypes.c_ubyte * ((size + page - 1) // page))()
        address = ctypes.addressof(ctypes.c_char.from_buffer(m))
        if libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(size), pages) != 0:
            raise OSError(ctypes.get_errno(), "mincore failed")
        resident = sum(flag & 1 for flag in pages) * page
    return min(resident, size)


@pytest.fixture
def disk_root() -> Iterator[Path]:
    """A root on the repository's disk: /tmp may be tmpfs, whose pages are the storage
    itself and never leave the page cache."""
    base = Path(__file__).resolve().parent.parent / ".test-data"
    base.mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=base))
    yield folder / "store"
    shutil.rmtree(folder)


def disk_store(root: Path, nameless: bool) -> HashFS:
    fs = HashFS(root)
    assert isinstance(fs.backend, local.LocalBackend)
    fs.backend.anonymous = nameless
    return fs


@pytest.mark.parametrize("nameless", [True, False])
@pytest.mark.parametrize("size", [9 * MiB, 40 * MiB + 3])
def test_a_large_durable_put_leaves_none_of_it_in_the_page_cache(
    disk_root: Path, nameless: bool, size: int
) -> None:
    """Large uploads do not evict what the page cache holds for everything else."""
    data = os.urandom(size)
    address = disk_store(disk_root, nameless).put(io.BytesIO(data))
    assert resident_bytes(address.abspath) == 0
    with open(address.abspath, "rb") as stored:
        assert stored.read() == data


@pytest.mark.parametrize("nameless", [True, False])
def test_a_put_below_the_writeback_step_stays_in_the_page_cache(
    disk_root: Path, nameless: bool
) -> None:
    """A small object is likely read back soon (a thumbnail, an avatar): it stays cached."""
    address = disk_store(disk_root, nameless).put(io.BytesIO(os.urandom(4 * MiB)))
    assert resident_bytes(address.abspath) == 4 * MiB


def test_no_fsync_when_turned_off(root: Path, calls: Calls) -> None:
    fs = HashFS(root, fsync=False)
    fs.put(io.BytesIO(b"small"))
    fs.put(io.BytesIO(os.urandom(3 * MiB)))
    assert calls.fsync == []


def test_dedupe_put_of_a_small_object_writes_nothing(fs: HashFS, calls: Calls) -> None:
    address = fs.put(io.BytesIO(b"already here"), extension=".txt")
    calls.fsync.clear()
    calls.created.clear()
    calls.writes = 0
    again = fs.put(io.BytesIO(b"already here"), extension=".txt")
    assert again == address._replace(is_duplicate=True)
    assert calls.created == []  # no temp file
    assert calls.writes == 0
    assert calls.fsync == []


def test_dedupe_put_of_a_large_object_syncs_nothing(fs: HashFS, calls: Calls) -> None:
    data = os.urandom(2 * MiB + 1)
    fs.put(io.BytesIO(data))
    calls.fsync.clear()
    assert fs.put(io.BytesIO(data)).is_duplicate
    assert calls.fsync == []
    assert [n for n in os.listdir(fs.root) if n.startswith(TEMP_PREFIX)] == []


# -- fault injection ---------------------------------------------------------------------


def _failing(
    error: int, after: int, real: Callable[..., Any], seen: list[int] | None = None
) -> Callable[..., Any]:
    """``real`` for the first ``after`` calls, then OSError(error) on each call; calls
    are counted in ``seen``, which several functions may share."""
    seen = [0] if seen is None else seen

    def call(*args: Any) -> Any:
        seen[0] += 1
        if seen[0] > after:
            raise OSError(error, os.strerror(error))
        return real(*args)

    return call


def _root_entries(fs: HashFS) -> list[str]:
    return sorted(os.listdir(fs.root))


NEIGHBOURS = [b"neighbour one", b"neighbour two " * 1000]


def _with_neighbours(fs: HashFS) -> list[tuple[str, bytes]]:
    return [(fs.put(io.BytesIO(data)).id, data) for data in NEIGHBOURS]


def _assert_clean_after_failure(
    fs: HashFS, data: bytes, neighbours: list[tuple[str, bytes]], entries: list[str]
) -> None:
    id = hashlib.sha256(data).hexdigest()
    assert fs.get(id) is None, "no object, partial or whole, under the address"
    assert not any(name.startswith(TEMP_PREFIX) for name in os.listdir(fs.root))
    assert _root_entries(fs) == entries
    assert fs.count() == len(neighbours)
    assert list(fs.corrupted()) == []
    for neighbour_id, neighbour_data in neighbours:
        with fs.open(neighbour_id) as handle:
            assert handle.read() == neighbour_data


@pytest.mark.parametrize(
    ("error", "after", "size", "reason"),
    [
        (errno.ENOSPC, 0, 1000, "No space left on device"),
        (errno.ENOSPC, 0, 8 * MiB, "No space left on device"),
        (errno.ENOSPC, 2, 8 * MiB, "No space left on device"),
        (errno.EIO, 0, 1000, "Input/output error"),
        (errno.EIO, 1, 8 * MiB, "Input/output error"),
    ],
)
def test_write_error_fails_the_put_and_leaves_nothing(
    fs: HashFS,
    monkeypatch: pytest.MonkeyPatch,
    temp_kind: str,
    error: int,
    after: int,
    size: int,
    reason: str,
) -> None:
    neighbours = _with_neighbours(fs)
    entries = _root_entries(fs)
    data = os.urandom(size)
    seen = [0]  # writes and writevs alike
    failing = OsProxy(
        write=_failing(error, after, os.write, seen), writev=_failing(error, after, os.writev, seen)
    )
    monkeypatch.setattr(local, "os", failing)
    with pytest.raises(StorageError) as caught:
        fs.put(io.BytesIO(data), extension=".bin")
    assert isinstance(caught.value, OSError)
    assert caught.value.errno == error
    message = str(caught.value)
    assert "could not write" in message
    assert reason in message
    assert fs.root in message
    _assert_clean_after_failure(fs, data, neighbours, entries)
    monkeypatch.undo()
    address = fs.put(io.BytesIO(data), extension=".bin")
    assert not address.is_duplicate
    assert Path(address.abspath).read_bytes() == data


@pytest.mark.parametrize("size", [1000, 4 * MiB])
def test_fsync_error_fails_the_put_and_leaves_nothing(
    fs: HashFS, monkeypatch: pytest.MonkeyPatch, temp_kind: str, size: int
) -> None:
    neighbours = _with_neighbours(fs)
    entries = _root_entries(fs)
    data = os.urandom(size)
    monkeypatch.setattr(local, "os", OsProxy(fsync=_failing(errno.EIO, 0, os.fsync)))
    with pytest.raises(StorageError) as caught:
        fs.put(io.BytesIO(data))
    assert isinstance(caught.value, OSError)
    assert caught.value.errno == errno.EIO
    message = str(caught.value)
    assert "could not fsync" in message
    assert "Input/output error" in message
    assert fs.root in message
    _assert_clean_after_failure(fs, data, neighbours, entries)
    monkeypatch.undo()
    assert not fs.put(io.BytesIO(data)).is_duplicate


def test_folder_fsync_error_fails_the_put_naming_the_object(
    fs: HashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is synced but its folder entry is not: the put fails, and what may be left
    under the address is the whole object, never a part of it."""
    fs.put(io.BytesIO(b"the root exists"))
    data = os.urandom(5000)
    monkeypatch.setattr(local, "os", OsProxy(fsync=_failing(errno.EIO, 1, os.fsync)))
    with pytest.raises(StorageError, match="could not fsync the folder of") as caught:
        fs.put(io.BytesIO(data), extension=".bin")
    assert caught.value.errno == errno.EIO
    monkeypatch.undo()
    id = hashlib.sha256(data).hexdigest()
    assert fs.idpath(id, ".bin") in str(caught.value)
    assert not any(name.startswith(TEMP_PREFIX) for name in os.listdir(fs.root))
    address = fs.get(id)
    if address is not None:
        assert Path(address.abspath).read_bytes() == data
    assert list(fs.corrupted()) == []
    assert fs.put(io.BytesIO(data)).id == id
