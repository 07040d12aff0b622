"""Concurrency and crashes, with real processes and a real SIGKILL.

Worker processes are started with the ``spawn`` method, so each one is a fresh
interpreter that shares nothing with the test but the store's folder. The workers are
module-level functions so that ``spawn`` can import them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flask_hashfs import HashFS, ObjectNotFound, streams
from flask_hashfs.backends.local import TEMP_PREFIX, LocalBackend

MiB = 1 << 20
SPAWN = multiprocessing.get_context("spawn")
#: Generous bounds for a shared 2-core machine: only a hang ever reaches them.
PATIENCE = 120.0


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sharing_shards(count: int, prefix: str = "00") -> list[bytes]:
    """Small contents whose ids share their first shard folders, and so race on them."""
    found: dict[str, bytes] = {}
    n = 0
    while len(found) < count:
        data = b"shared shards %d" % n
        id = _sha(data)
        if id.startswith(prefix) and id[len(prefix)] not in found:
            found[id[len(prefix)]] = data
        n += 1
    return list(found.values())


#: Small contents (one chunk: hashed before writing) sharing the folders 0/0/ ...
SMALL = _sharing_shards(6)
#: ... and large ones (several chunks: written while hashed).
LARGE = [bytes([i]) * (MiB + 4099 * i) for i in (1, 2)]
CONTENTS = SMALL + LARGE


def _storm(
    root: str, seed: int, operations: int, fsync: bool, contents: list[bytes]
) -> Counter[str]:
    """Random puts, deletes and reads of shared content; any exception fails the test."""
    fs = HashFS(root, fsync=fsync)
    rng = random.Random(seed)
    done: Counter[str] = Counter()
    for _ in range(operations):
        data = rng.choice(contents)
        id = _sha(data)
        action = rng.random()
        if action < 0.45:
            address = fs.put(io.BytesIO(data), extension=".bin")
            assert address.id == id
            done["put new" if not address.is_duplicate else "put duplicate"] += 1
        elif action < 0.75:
            fs.delete(id)
            done["delete"] += 1
        else:
            try:
                with fs.open(id) as handle:
                    got = handle.read()
            except ObjectNotFound:
                done["read missing"] += 1
            else:
                assert got == data, f"torn read of {id}: {len(got)} of {len(data)} bytes"
                done["read whole"] += 1
    return done


def _assert_idle_store_is_clean(fs: HashFS, *, crashed: bool = False) -> None:
    """Only objects and shard folders; after a crash, some shard folders may be empty."""
    assert list(fs.corrupted()) == []
    assert fs.stale_temp_files() == []
    assert not any(name.startswith(TEMP_PREFIX) for name in os.listdir(fs.root))
    for path in list(fs.files()):
        fs.delete(path)
    left = [os.path.join(folder, name) for folder, _, names in os.walk(fs.root) for name in names]
    assert left == [], "an idle root holds only objects and shard folders"
    if not crashed:
        assert os.listdir(fs.root) == [], "no empty shard folders either"


def _run_storm(root: Path, operations: int, fsync: bool, contents: list[bytes]) -> Counter[str]:
    with SPAWN.Pool(4) as pool:
        work = [(str(root), seed, operations, fsync, contents) for seed in range(4)]
        return sum(pool.starmap_async(_storm, work).get(PATIENCE), Counter())


def test_put_delete_read_storm_across_processes(root: Path) -> None:
    """Different content, small and large, in shard folders that come and go."""
    fs = HashFS(root, fsync=False)
    fs.put(io.BytesIO(b"a bystander"))
    totals = _run_storm(root, 400, False, CONTENTS)
    # the storm did churn: content was deleted and stored again, and read whole
    assert totals["put new"] > len(CONTENTS)
    assert totals["delete"] > 0
    assert totals["read whole"] > 0
    assert fs.get(_sha(b"a bystander")) is not None
    _assert_idle_store_is_clean(fs)


def test_checks_run_on_a_live_store(root: Path) -> None:
    """verify, stats and listing while other processes put and delete: objects that vanish
    under a check are skipped, never reported as corrupted, never a crash."""
    fs = HashFS(root, fsync=False)
    checks = 0
    with SPAWN.Pool(2) as pool:
        work = [(str(root), seed, 1500, False, SMALL) for seed in range(2)]
        storm = pool.starmap_async(_storm, work)
        while not storm.ready() or checks < 5:
            assert list(fs.corrupted()) == []
            assert fs.size() >= 0
            assert fs.count() >= 0
            assert all(os.path.basename(path)[0] != "." for path in fs.files())
            assert fs.repair() == []
            checks += 1
        storm.get(PATIENCE)
    _assert_idle_store_is_clean(fs)


def test_durable_put_delete_storm_of_the_same_content(root: Path) -> None:
    """Two contents, put and deleted as fast as four processes can: each put races a
    delete of its own folders, before and after its link, and must still succeed."""
    fs = HashFS(root)
    totals = _run_storm(root, 600, True, SMALL[:2])
    assert totals["put new"] > 20
    assert totals["delete"] > 20
    _assert_idle_store_is_clean(fs)


def test_put_delete_storm_across_threads_with_fsync(root: Path) -> None:
    errors: list[BaseException] = []

    def run(seed: int) -> None:
        try:
            _storm(str(root), seed, 60, True, CONTENTS)
        except BaseException as exc:
            errors.append(exc)

    HashFS(root)  # fsync on: the threads below use their own stores on the same root
    threads = [threading.Thread(target=run, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PATIENCE)
    assert errors == []
    _assert_idle_store_is_clean(HashFS(root))


def _racer(root: str, barrier: Any, results: Any, rounds: int, extension: str) -> None:
    fs = HashFS(root, fsync=False)
    for round in range(rounds):
        data = _race_content(round)
        barrier.wait(PATIENCE)
        address = fs.put(io.BytesIO(data), extension=extension)
        results.put((round, address.is_duplicate, address.relpath))


def _race_content(round: int) -> bytes:
    size = 100 + round if round % 2 == 0 else 2 * MiB + round
    return hashlib.sha256(b"race %d" % round).digest() * (size // 32 + 1)


@pytest.mark.parametrize("extensions", [[".dat"] * 4, [".a", ".b", "", ".tar.gz"]])
def test_exactly_one_racer_stores_new_content(root: Path, extensions: list[str]) -> None:
    """Whatever extension each racer asks for, the content is stored once."""
    racers, rounds = len(extensions), 16
    barrier = SPAWN.Barrier(racers)
    results = SPAWN.Queue()
    processes = [
        SPAWN.Process(target=_racer, args=(str(root), barrier, results, rounds, extension))
        for extension in extensions
    ]
    for process in processes:
        process.start()
    outcomes: dict[int, list[tuple[bool, str]]] = {}
    for _ in range(racers * rounds):
        round, is_duplicate, relpath = results.get(timeout=PATIENCE)
        outcomes.setdefault(round, []).append((is_duplicate, relpath))
    for process in processes:
        process.join(PATIENCE)
        assert process.exitcode == 0
    fs = HashFS(root)
    for round, seen in outcomes.items():
        assert sorted(dup for dup, _ in seen) == [False] + [True] * (racers - 1), round
        assert len({relpath for _, relpath in seen}) == 1, "one object per content"
        with fs.open(seen[0][1]) as handle:
            assert handle.read() == _race_content(round)
    assert fs.count() == rounds
    _assert_idle_store_is_clean(fs)


def test_exactly_one_thread_stores_new_content(root: Path) -> None:
    fs = HashFS(root, fsync=False)
    barrier = threading.Barrier(6)
    seen: list[bool] = []

    def run(data: bytes, extension: str) -> None:
        barrier.wait(PATIENCE)
        seen.append(fs.put(io.BytesIO(data), extension=extension).is_duplicate)

    data = os.urandom(3 * MiB)
    threads = [threading.Thread(target=run, args=(data, f".e{n}")) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PATIENCE)
    assert sorted(seen) == [False] + [True] * 5
    assert fs.count() == 1
    fs.delete(_sha(data))
    assert not fs.exists(_sha(data)), "one delete removes the content"


# -- a writer killed mid-put ---------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    from flask_hashfs import HashFS

    fs = HashFS(sys.argv[1], fsync=sys.argv[2] == "1")
    fs.backend.anonymous = sys.argv[3] == "nameless"
    print("ready", flush=True)
    address = fs.put(sys.stdin.buffer, extension=".bin")
    print(address.id, address.is_duplicate, flush=True)
    """
)


class Writer:
    """A put in another process, reading from a pipe that the test feeds at its own pace.

    ``temp`` is the temp file it writes: a path in the root if temp files are named, else
    the writer's /proc entry for its nameless one.
    """

    def __init__(
        self, root: Path, *, start: bool = True, fsync: bool = True, named: bool = False
    ) -> None:
        self.root = root
        self.named = named
        before = self.temp_files()
        kind = "named" if named else "nameless"
        self.process = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), "1" if fsync else "0", kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline() == b"ready\n"
        self.sent = hashlib.sha256()
        self.temp = ""
        if start:
            # Two full chunks get the put past its one-chunk fast path and writing.
            self.feed(os.urandom(2 * streams.CHUNK_SIZE + 1))
            new = self.temp_files if named else self.nameless_files
            self.temp = self._wait_for(lambda: new() - before)

    def temp_files(self) -> set[str]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return set()
        return {str(self.root / name) for name in names if name.startswith(TEMP_PREFIX)}

    def nameless_files(self) -> set[str]:
        """The writer's open files that live in the root without a name."""
        fds = f"/proc/{self.process.pid}/fd"
        found = set()
        for fd in os.listdir(fds):
            with contextlib.suppress(FileNotFoundError):
                target = os.readlink(f"{fds}/{fd}")
                if re.fullmatch(re.escape(str(self.root)) + r"/#\d+ \(deleted\)", target):
                    found.add(f"{fds}/{fd}")
        return found

    def _wait_for(self, found: Callable[[], set[str]]) -> str:
        deadline = time.monotonic() + PATIENCE
        while not (new := found()):
            assert self.process.poll() is None, "the writer ended early"
            assert time.monotonic() < deadline, "the writer never started writing"
            time.sleep(0.02)
        (path,) = new
        return path

    def feed(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()
        self.sent.update(data)

    def finish(self) -> str:
        assert self.process.stdin is not None
        self.process.stdin.close()
        assert self.process.stdout is not None
        out = self.process.stdout.read().decode()
        assert self.process.wait(PATIENCE) == 0
        self.process.stdout.close()
        return out

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(PATIENCE)
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.close()
        self.process.stdout.close()


def test_writer_killed_mid_put_leaves_nothing(root: Path) -> None:
    fs = HashFS(root)
    neighbour = fs.put(io.BytesIO(b"a neighbour that must survive"))
    entries = sorted(os.listdir(root))
    victim = Writer(root)
    victim.feed(os.urandom(MiB))
    assert os.stat(victim.temp).st_size > 0, "killed in the middle of writing"
    victim.kill()

    # nothing under the address, and nothing left over: the root is as it was
    assert fs.get(victim.sent.hexdigest()) is None
    assert list(fs.files()) == [neighbour.abspath]
    assert sorted(os.listdir(root)) == entries
    assert list(fs.corrupted()) == []
    assert fs.stale_temp_files() == []
    _assert_idle_store_is_clean(fs)


def test_writer_killed_mid_put_leaves_only_a_stale_temp_file(root: Path) -> None:
    """Where temp files have names: the leftover is found, and told from a live put's."""
    fs = HashFS(root)
    neighbour = fs.put(io.BytesIO(b"a neighbour that must survive"))
    victim = Writer(root, named=True)
    victim.feed(os.urandom(MiB))
    assert os.path.getsize(victim.temp) > 0, "killed in the middle of writing"
    victim.kill()

    # nothing under the address: the store holds only what it held before
    assert fs.get(victim.sent.hexdigest()) is None
    assert list(fs.files()) == [neighbour.abspath]
    assert fs.count() == 1
    assert list(fs.corrupted()) == []
    assert fs.stale_temp_files() == [victim.temp]

    # a live writer's temp file is locked: the sweep sees it, and leaves it alone
    live = Writer(root, named=True)
    assert fs.stale_temp_files() == [victim.temp]
    assert fs.remove_stale_temp_files() == [victim.temp]
    assert not os.path.exists(victim.temp)
    assert os.path.exists(live.temp)
    assert fs.stale_temp_files() == []

    tail = os.urandom(MiB // 2)
    live.feed(tail)
    id, is_duplicate = live.finish().split()
    assert id == live.sent.hexdigest()
    assert is_duplicate == "False"
    assert not os.path.exists(live.temp)
    stored = fs.get(id)
    assert stored is not None
    assert _sha(Path(stored.abspath).read_bytes()) == id
    assert fs.count() == 2
    _assert_idle_store_is_clean(fs)


def test_cleanup_never_removes_a_live_writers_temp_file(root: Path) -> None:
    """A sweep running in a loop while a put is in progress: the put still succeeds."""
    fs = HashFS(root)
    writer = Writer(root, named=True)
    for _ in range(20):
        assert fs.remove_stale_temp_files() == []
        writer.feed(os.urandom(64 * 1024))
    id = writer.finish().split()[0]
    assert id == writer.sent.hexdigest()
    assert fs.exists(id)


def test_sweep_racing_new_writers_never_breaks_a_put(root: Path) -> None:
    """Temp files are created and then locked: a sweep in between may remove one, and the
    writer must notice and start over instead of writing into a removed file."""
    fs = HashFS(root, fsync=False)
    assert isinstance(fs.backend, LocalBackend)
    fs.backend.anonymous = False
    stop = threading.Event()

    def sweep() -> None:
        while not stop.is_set():
            fs.remove_stale_temp_files()

    sweeper = threading.Thread(target=sweep)
    sweeper.start()
    try:
        rng = random.Random(1)
        for n in range(300):
            data = b"%d" % n + bytes(rng.randrange(256) for _ in range(64))
            address = fs.put(io.BytesIO(data))
            assert Path(address.abspath).read_bytes() == data
    finally:
        stop.set()
        sweeper.join(PATIENCE)
    assert fs.count() == 300
    _assert_idle_store_is_clean(fs)


@pytest.mark.parametrize("named", [False, True], ids=["nameless", "named"])
def test_writers_killed_at_any_instant_leave_the_store_valid(root: Path, named: bool) -> None:
    """Kill whole puts at random instants (reading, hashing, writing, fsync, link, cleanup):
    every object left is whole, and the sweep leaves an idle, clean root."""
    fs = HashFS(root)
    rng = random.Random(7)
    writers = [Writer(root, start=False, fsync=n % 2 == 0, named=named) for n in range(8)]
    for writer in writers:
        writer.feed(os.urandom(rng.choice([100, MiB + 1, 3 * MiB])))
        assert writer.process.stdin is not None
        writer.process.stdin.close()
        time.sleep(rng.uniform(0, 0.02))
        writer.process.send_signal(signal.SIGKILL)
        writer.process.wait(PATIENCE)
        assert writer.process.stdout is not None
        writer.process.stdout.close()
    for path in fs.files():
        assert _sha(Path(path).read_bytes()) == fs.unshard(path), "a partial object"
    assert list(fs.corrupted()) == []
    stale = fs.stale_temp_files()
    if not named:
        assert stale == [], "a nameless temp file goes with its writer"
    assert sorted(fs.remove_stale_temp_files()) == sorted(stale)
    # a put killed between making its shard folders and linking leaves them empty
    _assert_idle_store_is_clean(fs, crashed=True)
