"""The race between a sweep and a dedupe put, and sweeps killed half-way.

The rule under test: an object that a put returned survives every sweep that starts
within the grace period of that put. Each interleaving that matters is first forced
step by step, then left to a storm of threads; a sweep is killed with SIGKILL at the
worst instants, and the next sweep must leave a valid store that lost nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import multiprocessing
import os
import random
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

from flask_hashfs import HashFS, SweepReport
from flask_hashfs.backends import local, s3

from .lifecycle_helpers import HOUR, age, aside, make_store
from .s3_server import S3Server

PATIENCE = 120.0
SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> HashFS:
    return make_store(request, tmp_path)


# -- each interleaving, forced --------------------------------------------------------


def test_a_claim_before_the_sweep_sets_the_object_aside_keeps_it(
    store: HashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = store.put(io.BytesIO(b"shared"))
    grace = age(store)
    backend: Any = store.backend
    name = "_remove_unclaimed" if isinstance(backend, s3.S3Backend) else None
    claimed: list[bool] = []

    def claim_first(step: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            claimed.append(store.put(io.BytesIO(b"shared")).is_duplicate)
            return step(*args)

        return run

    if name is None:
        original = local._Sweep.remove_unclaimed
        monkeypatch.setattr(local._Sweep, "remove_unclaimed", claim_first(original))
    else:
        monkeypatch.setattr(backend, "_remove_unclaimed", claim_first(backend._remove_unclaimed))
    report = store.sweep([], grace=grace)
    assert claimed == [True]
    assert (report.removed, report.kept_recent) == (0, 1)
    with store.open(address.id) as stream:
        assert stream.read() == b"shared"
    assert aside(store) == []


def test_a_claim_after_the_object_was_set_aside_stores_it_again(
    store: HashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = store.put(io.BytesIO(b"shared"))
    grace = age(store)
    backend: Any = store.backend
    again: list[bool] = []
    if isinstance(backend, s3.S3Backend):
        delete = backend._delete_key

        def then_put(key: str) -> None:
            delete(key)
            if not again:
                again.append(store.put(io.BytesIO(b"shared")).is_duplicate)

        monkeypatch.setattr(backend, "_delete_key", then_put)
    else:
        real_rename = os.rename

        def rename(*args: Any, **kwargs: Any) -> None:
            real_rename(*args, **kwargs)
            if not again:
                again.append(store.put(io.BytesIO(b"shared")).is_duplicate)

        monkeypatch.setattr(os, "rename", rename)
    store.sweep([], grace=grace)
    monkeypatch.undo()
    assert again == [False]  # the put found the object gone and stored it anew
    with store.open(address.id) as stream:
        assert stream.read() == b"shared"
    assert list(store.ids()) == [address.id]  # still one object for the id
    assert aside(store) == []


def test_a_delete_during_a_sweep_stays_deleted(
    store: HashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app deletes the content while a sweep holds it aside: the sweep must not
    bring back what the app deleted (a deletion for privacy would silently undo itself)."""
    address = store.put(io.BytesIO(b"private"))
    grace = age(store)
    backend: Any = store.backend
    deleted: list[str] = []
    if isinstance(backend, s3.S3Backend):
        copy = backend.client.copy_object

        def then_delete(**kwargs: Any) -> Any:
            reply = copy(**kwargs)
            if not deleted:
                store.delete(address.id)
                deleted.append(address.id)
            return reply

        monkeypatch.setattr(backend.client, "copy_object", then_delete)
    else:
        real_rename = os.rename

        def rename(*args: Any, **kwargs: Any) -> None:
            if not deleted:
                store.delete(address.id)
                deleted.append(address.id)
            real_rename(*args, **kwargs)

        monkeypatch.setattr(os, "rename", rename)
    store.sweep([], grace=grace)
    monkeypatch.undo()
    assert deleted == [address.id]
    assert not store.exists(address.id)
    assert list(store.ids()) == []
    assert aside(store) == []


def test_a_put_whose_lookup_a_sweep_overtakes_stores_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On disk: found, then a whole sweep removes it, then the claim's utime fails."""
    store = HashFS(tmp_path / "store", fsync=False)
    address = store.put(io.BytesIO(b"shared"))
    grace = age(store)
    reports: list[SweepReport] = []
    real_utime = os.utime

    def swept_first(*args: Any, **kwargs: Any) -> None:
        if not reports:
            reports.append(store.sweep([], grace=grace))
        real_utime(*args, **kwargs)

    monkeypatch.setattr(os, "utime", swept_first)
    again = store.put(io.BytesIO(b"shared"))
    monkeypatch.undo()
    assert reports[0].removed == 1
    assert not again.is_duplicate
    assert store.exists(address.id)


# -- a storm of puts, commits, releases and sweeps ------------------------------------


class Storm:
    """Workers put duplicates of old content and commit a row for each at once, or drop
    rows; a sweeper sweeps all along with the committed ids as ``live``. Time passes for
    an object (on disk: os.utime) only while no row references it and no put of it is in
    flight, as the rule allows."""

    def __init__(self, store: HashFS, contents: list[bytes], grace: float) -> None:
        self.store = store
        self.contents = contents
        self.ids = [store.computehash(io.BytesIO(data)) for data in contents]
        self.grace = grace
        self.on_disk = isinstance(store.backend, local.LocalBackend)
        self.in_flight = [threading.Lock() for _ in contents]
        self.rows: Counter[str] = Counter()
        self.rows_lock = threading.Lock()
        self.stop = threading.Event()
        self.failures: list[BaseException] = []
        self.sweeps: list[SweepReport] = []

    def run(self, workers: int, sweeps: int) -> None:
        threads = [threading.Thread(target=self.worker, args=(n,)) for n in range(workers)]
        threads.append(threading.Thread(target=self.sweeper, args=(sweeps,)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(PATIENCE)

    def worker(self, seed: int) -> None:
        rng = random.Random(seed)
        mine: list[int] = []
        try:
            while not self.stop.is_set():
                n = rng.randrange(len(self.contents))
                with self.in_flight[n]:
                    address = self.store.put(io.BytesIO(self.contents[n]))
                    with self.rows_lock:
                        self.rows[address.id] += 1
                mine.append(n)
                if len(mine) > 2:
                    self.release(mine.pop(rng.randrange(len(mine))))
        except BaseException as exc:
            self.failures.append(exc)
            self.stop.set()

    def release(self, n: int) -> None:
        with self.in_flight[n]:
            with self.rows_lock:
                self.rows[self.ids[n]] -= 1
                unreferenced = self.rows[self.ids[n]] == 0
            if unreferenced and self.on_disk:
                path = self.store.idpath(self.ids[n])
                # Missing only for the instant a sweep puts a claimed object back.
                with contextlib.suppress(FileNotFoundError):
                    os.utime(path, (time.time() - 2 * HOUR,) * 2)

    def sweeper(self, count: int) -> None:
        try:
            for _ in range(count):
                with self.rows_lock:
                    live = [id for id, rows in self.rows.items() if rows > 0]
                self.sweeps.append(self.store.sweep(live, grace=self.grace))
        except BaseException as exc:
            self.failures.append(exc)
        finally:
            self.stop.set()


def test_sweeps_racing_dedupe_puts_lose_nothing(store: HashFS) -> None:
    contents = [b"content %d" % n for n in range(24)]
    for data in contents:
        store.put(io.BytesIO(data))
    storm = Storm(store, contents, age(store))
    storm.run(workers=3, sweeps=25 if storm.on_disk else 6)
    assert not storm.failures, storm.failures
    assert sum(report.removed for report in storm.sweeps) > 0  # the sweeps did collect
    for data, id in zip(contents, storm.ids, strict=True):
        if storm.rows[id] > 0:
            with store.open(id) as stream:
                assert stream.read() == data
    assert aside(store) == []
    assert list(store.corrupted()) == []


def _rows_file(folder: str, worker: int) -> str:
    return os.path.join(folder, f"rows-{worker}.json")


def _commit(folder: str, worker: int, rows: Counter[str]) -> None:
    """The worker's rows table, replaced atomically: what the sweeper reads is a commit."""
    path = _rows_file(folder, worker)
    with open(path + ".tmp", "w") as out:
        json.dump([id for id, count in rows.items() if count > 0], out)
    os.replace(path + ".tmp", path)


def _process_worker(root: str, folder: str, worker: int, workers: int, rounds: int) -> None:
    """Puts and releases the contents it owns (n % workers == worker), so that it alone
    knows when one is unreferenced and may age it."""
    store = HashFS(root, fsync=False)
    rng = random.Random(worker)
    mine = [n for n in range(len(_CONTENTS)) if n % workers == worker]
    rows: Counter[str] = Counter()
    held: list[int] = []
    for _ in range(rounds):
        n = rng.choice(mine)
        address = store.put(io.BytesIO(_CONTENTS[n]))
        rows[address.id] += 1
        _commit(folder, worker, rows)
        held.append(n)
        if len(held) > 2:
            n = held.pop(rng.randrange(len(held)))
            id = store.computehash(io.BytesIO(_CONTENTS[n]))
            rows[id] -= 1
            _commit(folder, worker, rows)
            if rows[id] == 0:
                with contextlib.suppress(FileNotFoundError):
                    os.utime(store.idpath(id), (time.time() - 2 * HOUR,) * 2)


_CONTENTS = [b"shared by processes %d" % n for n in range(12)]


def test_sweeps_racing_dedupe_puts_in_other_processes_lose_nothing(tmp_path: Path) -> None:
    """The storm across processes, in parallel on every core: each worker owns some
    contents, commits its rows table after every put, and ages what it released; a
    sweeper sweeps with the union of the committed tables until the workers are done."""
    store = HashFS(tmp_path / "store", fsync=False)
    for data in _CONTENTS:
        store.put(io.BytesIO(data))
    grace = age(store)
    folder = str(tmp_path)
    workers = [
        SPAWN.Process(target=_process_worker, args=(str(store.root), folder, n, 3, 150))
        for n in range(3)
    ]
    for process in workers:
        process.start()
    removed = sweeps = 0
    while any(process.is_alive() for process in workers) or sweeps < 3:
        live: list[str] = []
        for n in range(3):
            with contextlib.suppress(FileNotFoundError), open(_rows_file(folder, n)) as rows:
                live += json.load(rows)
        removed += store.sweep(live, grace=grace).removed
        sweeps += 1
    for process in workers:
        process.join(PATIENCE)
        assert process.exitcode == 0
    assert removed > 0
    for n in range(3):
        with open(_rows_file(folder, n)) as rows:
            for id in json.load(rows):
                with store.open(id) as stream:
                    assert hashlib.sha256(stream.read()).hexdigest() == id
    assert aside(store) == []
    assert list(store.corrupted()) == []


# -- sweeps killed half-way -----------------------------------------------------------

_KILLED_SWEEP = textwrap.dedent(
    """
    import json, os, signal, sys
    from flask_hashfs import HashFS, SweepReport
    from flask_hashfs.backends import local, s3

    root, live, crash_at, options = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
    store = HashFS(root, storage_options=json.loads(options) or None)

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if crash_at == "set-aside":  # on disk: claimed just before the rename, then killed
        real_rename = os.rename
        def rename(name, aside, **kwargs):
            os.utime(name, dir_fd=kwargs["src_dir_fd"], follow_symlinks=False)
            real_rename(name, aside, **kwargs)
            die()
        os.rename = rename
    elif crash_at == "put-back":  # on disk: linked back, killed before the aside name goes
        real_link = store.backend._link
        def link(*args, **kwargs):
            real_link(*args, **kwargs)
            die()
        store.backend._link = link
        real_rename = os.rename
        def rename(name, aside, **kwargs):
            os.utime(name, dir_fd=kwargs["src_dir_fd"], follow_symlinks=False)
            real_rename(name, aside, **kwargs)
        os.rename = rename
    elif crash_at == "deleted":  # S3: copied aside and deleted, killed before deciding
        real_delete = store.backend._delete_key
        def delete(key):
            real_delete(key)
            die()
        store.backend._delete_key = delete
    store.sweep(live, grace=float(sys.argv[5]))
    """
)


def _run_killed_sweep(
    store: HashFS, live: list[str], crash_at: str, grace: float, options: dict[str, Any]
) -> int:
    arguments = [str(store.root), json.dumps(live), crash_at, json.dumps(options), str(grace)]
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_SWEEP, *arguments], timeout=PATIENCE, check=False
    )
    return done.returncode


@pytest.mark.parametrize("crash_at", ["set-aside", "put-back"])
def test_a_sweep_killed_half_way_loses_nothing(tmp_path: Path, crash_at: str) -> None:
    store = HashFS(tmp_path / "store", fsync=False)
    live = [store.put(io.BytesIO(b"live %d" % n)).id for n in range(5)]
    dead = [store.put(io.BytesIO(b"dead %d" % n)).id for n in range(5)]
    grace = age(store)
    assert _run_killed_sweep(store, live, crash_at, grace, {}) == -signal.SIGKILL
    assert len(aside(store)) == 1  # the object it was deciding about
    for id in live:
        assert store.exists(id)
    # The one claimed just before it was set aside: missing from its address (killed
    # before it went back), or back but still set aside as well (killed just after).
    claimed = [id for id in dead if not store.exists(id) or _fresh(store, id, grace)]
    assert len(claimed) == 1
    report = store.sweep(live, grace=grace)  # restores it, then judges it like any object
    assert aside(store) == []
    assert (report.kept_live, report.kept_recent, report.removed) == (5, 1, 4)
    assert sorted(store.ids()) == sorted(live + claimed)
    assert list(store.corrupted()) == []


def _fresh(store: HashFS, id: str, grace: float) -> bool:
    path = store.realpath(id)
    assert path is not None
    return os.stat(path).st_mtime > time.time() - grace


def test_sweeps_killed_at_random_instants_lose_nothing(tmp_path: Path) -> None:
    store = HashFS(tmp_path / "store", fsync=False)
    live = [store.put(io.BytesIO(b"live %d" % n)).id for n in range(300)]
    for n in range(300):
        store.put(io.BytesIO(b"dead %d" % n))
    grace = age(store)
    script = textwrap.dedent(
        """
        import json, sys
        from flask_hashfs import HashFS, SweepReport
        HashFS(sys.argv[1]).sweep(json.loads(sys.argv[2]), grace=float(sys.argv[3]))
        """
    )
    rng = random.Random(9)
    for _ in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", script, str(store.root), json.dumps(live), str(grace)]
        )
        try:
            child.wait(timeout=rng.uniform(0.2, 0.6))
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            child.wait(PATIENCE)
        for id in live:
            assert store.exists(id)
    store.sweep(live, grace=grace)
    assert sorted(store.ids()) == sorted(live)
    assert aside(store) == []
    assert list(store.corrupted()) == []


def test_an_s3_sweep_killed_half_way_loses_nothing(s3_server: S3Server) -> None:
    store = HashFS(s3_server.new_url(), storage_options=s3_server.options)
    kept = store.put(io.BytesIO(b"kept"))
    grace = age(store)
    assert _run_killed_sweep(store, [], "deleted", grace, s3_server.options) == -signal.SIGKILL
    assert not store.exists(kept.id)
    assert len(aside(store)) == 1
    # The row that references it commits now: the next sweep restores it first.
    report = store.sweep([kept.id], grace=grace)
    assert report.kept_live == 1
    with store.open(kept.id) as stream:
        assert stream.read() == b"kept"
    assert aside(store) == []
