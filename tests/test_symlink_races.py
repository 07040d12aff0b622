"""A local user who can write in the root flips a shard folder between a real folder of
the tree and a symlink out of it, as fast as they can, while the store reads and deletes.

Checking the folders first and then using the path again loses this race a few times
in a hundred (issue 10 saw 4,778 outside reads in 168,648). Every read and delete here
must go through folders that are the tree's own at the instant of use, so no call may
ever return, serve or remove the file outside, however the race falls. Each test runs a
bounded number of calls, and stops early after a bounded time: it counts, never times.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from flask_hashfs import HashFS, ObjectNotFound
from flask_hashfs.backends import beneath

from .serving_helpers import fetch, running, serving_app

INSIDE = b"the stored object\n"
OUTSIDE = b"a file outside the root that the store must never touch\n"
ID = hashlib.sha256(INSIDE).hexdigest()
#: Enough calls for the old check-then-use code to lose dozens of times, and a time
#: limit that ends the test whatever the machine's load.
CALLS = 200_000
SECONDS = 3.0


class Swap:
    """``root/<first shard>`` flipped, by a thread, between the real shard folder and a
    symlink to a look-alike tree outside the root that holds ``OUTSIDE`` under the same
    names. Both are renamed into place, so each lookup meets one or the other (or, for
    an instant, neither)."""

    def __init__(self, tmp_path: Path, fs: HashFS) -> None:
        self.fs = fs
        self.root = Path(fs.root)
        address = fs.put(io.BytesIO(INSIDE))
        self.relpath = address.relpath
        first, second, third, fourth, name = address.relpath.split("/")
        self.shard = self.root / first
        self.outside_file = tmp_path.joinpath("outside", first, second, third, fourth, name)
        self.outside_file.parent.mkdir(parents=True)
        self.outside_file.write_bytes(OUTSIDE)
        self.parked_folder = self.root / "zz-folder"
        self.parked_link = self.root / "zz-link"
        self.parked_link.symlink_to(self.outside_file.parents[3], target_is_directory=True)
        # The real folders stay the same folders wherever they are renamed to.
        self.second = os.open(self.shard / second, os.O_RDONLY | os.O_DIRECTORY)
        self.names = (third, fourth, name)
        # A second file in the second folder: emptied folders are removed up to it only.
        Path(f"/proc/self/fd/{self.second}/keep").write_bytes(b"")
        self._stop = threading.Event()
        self.flips = 0

    def put_inside(self) -> None:
        """Store the object again, through the real folders, wherever they are now."""
        third, fourth, name = self.names
        os.makedirs(f"/proc/self/fd/{self.second}/{third}/{fourth}", exist_ok=True)
        Path(f"/proc/self/fd/{self.second}/{third}/{fourth}/{name}").write_bytes(INSIDE)

    def inside_exists(self) -> bool:
        third, fourth, name = self.names
        return os.path.exists(f"/proc/self/fd/{self.second}/{third}/{fourth}/{name}")

    def _flip(self) -> None:
        while not self._stop.is_set():
            if self.flips % 2 == 0:
                os.rename(self.shard, self.parked_folder)
                os.rename(self.parked_link, self.shard)
            else:
                os.rename(self.shard, self.parked_link)
                os.rename(self.parked_folder, self.shard)
            self.flips += 1

    @contextmanager
    def flipping(self) -> Iterator[None]:
        thread = threading.Thread(target=self._flip, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()
            os.close(self.second)


def _repeat(call: Callable[[], None]) -> int:
    deadline = time.monotonic() + SECONDS
    for done in range(CALLS):
        if time.monotonic() > deadline:
            return done
        call()
    return CALLS


@pytest.fixture(params=["openat2", "portable"])
def walk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of staying under the root: ``openat2`` where the kernel has it, and the
    per-folder check of an open folder elsewhere (macOS, older kernels, sandboxes)."""
    if request.param == "portable":
        monkeypatch.setattr(beneath, "OPENAT2", False)
    elif not beneath.OPENAT2:
        pytest.fail("this Linux kernel has no openat2: the portable walk is tested alone")
    return str(request.param)


def test_open_never_reads_outside_while_a_folder_flips(tmp_path: Path, walk: str) -> None:
    swap = Swap(tmp_path, HashFS(tmp_path / "store"))
    reads = {INSIDE: 0, OUTSIDE: 0, None: 0}

    def read() -> None:
        try:
            with swap.fs.open(ID) as stream:
                reads[stream.read()] += 1
        except ObjectNotFound:
            reads[None] += 1

    with swap.flipping():
        calls = _repeat(read)
    assert reads[OUTSIDE] == 0, f"{reads[OUTSIDE]} of {calls} reads came from outside the root"
    assert reads[INSIDE] > 0
    assert swap.flips > 0


def test_served_objects_never_come_from_outside(tmp_path: Path, walk: str) -> None:
    """What the serving route does: stat the key, then open what stat found."""
    swap = Swap(tmp_path, HashFS(tmp_path / "store"))
    bodies = {INSIDE: 0, OUTSIDE: 0, None: 0}

    def serve() -> None:
        obj = swap.fs.stat(swap.relpath)
        if obj is None:
            bodies[None] += 1
            return
        try:
            with swap.fs.open_stored(obj) as stream:
                bodies[stream.read()] += 1
        except ObjectNotFound:
            bodies[None] += 1

    with swap.flipping():
        _repeat(serve)
    assert bodies[OUTSIDE] == 0
    assert bodies[INSIDE] > 0


def test_the_serving_route_never_sends_outside_bytes(tmp_path: Path, walk: str) -> None:
    app, _ = serving_app(tmp_path / "store")
    swap = Swap(tmp_path, HashFS(tmp_path / "store"))
    statuses: dict[int, int] = {}
    outside = 0
    with running(app) as port, swap.flipping():
        deadline = time.monotonic() + SECONDS
        for _ in range(2_000):
            if time.monotonic() > deadline:
                break
            reply = fetch(port, "/uploads/" + swap.relpath)
            statuses[reply.status] = statuses.get(reply.status, 0) + 1
            outside += reply.body == OUTSIDE
    assert outside == 0
    assert statuses.get(200, 0) > 0


def test_delete_never_unlinks_outside_while_a_folder_flips(tmp_path: Path, walk: str) -> None:
    swap = Swap(tmp_path, HashFS(tmp_path / "store"))
    deleted = 0

    def delete() -> None:
        nonlocal deleted
        if not swap.inside_exists():
            swap.put_inside()
        swap.fs.delete(ID)
        deleted += not swap.inside_exists()
        assert swap.outside_file.read_bytes() == OUTSIDE

    with swap.flipping():
        _repeat(delete)
    assert swap.outside_file.read_bytes() == OUTSIDE
    assert deleted > 0


def test_the_empty_folder_cleanup_never_removes_outside_folders(tmp_path: Path, walk: str) -> None:
    """After a delete, the folders it left empty are removed, up to the root; an empty
    folder outside, reached through the flipping symlink, must stay."""
    swap = Swap(tmp_path, HashFS(tmp_path / "store"))
    swap.outside_file.unlink()  # the outside tree: empty folders only

    def delete() -> None:
        swap.put_inside()
        swap.fs.delete(ID)
        assert swap.outside_file.parent.is_dir()

    with swap.flipping():
        _repeat(delete)
    assert swap.outside_file.parent.is_dir()
