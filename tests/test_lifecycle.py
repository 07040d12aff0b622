"""Sharing and collecting on every backend: ids(), claims on dedupe puts, and sweep()."""

from __future__ import annotations

import io
import itertools
import os
import random
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from flask_hashfs import HashFS, InvalidId, StorageError, SweepReport
from flask_hashfs.backends import local, s3
from flask_hashfs.layout import Layout
from flask_hashfs.sweep import LiveIds

from .lifecycle_helpers import HOUR, age, aside, make_store, raw_keys
from .test_backend_conformance import LARGE, blob


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> HashFS:
    return make_store(request, tmp_path)


def test_ids_lists_objects_only(store: HashFS) -> None:
    a = store.put(io.BytesIO(b"a"), ".txt")
    b = store.put(io.BytesIO(blob(LARGE)))
    store.put(io.BytesIO(b"a"))  # a duplicate: still one object
    assert sorted(store.ids()) == sorted([a.id, b.id])


def test_a_store_that_never_stored_anything(tmp_path: Path) -> None:
    store = HashFS(tmp_path / "never")
    assert list(store.ids()) == []
    assert store.sweep([], grace=0) == SweepReport(0, 0, 0, 0, 0, 0, False)
    assert not (tmp_path / "never").exists()


def test_sweep_removes_only_unreferenced_old_objects(store: HashFS) -> None:
    live = store.put(io.BytesIO(b"live"), ".txt")
    dead = store.put(io.BytesIO(b"dead"), ".txt")
    large = store.put(io.BytesIO(blob(LARGE)))
    grace = age(store)
    recent = store.put(io.BytesIO(b"recent"))
    dry = store.sweep([live.id], grace=grace, dry_run=True)
    real = store.sweep([live.id], grace=grace)
    expected = SweepReport(
        removed=2,
        removed_bytes=4 + LARGE,
        kept_live=1,
        kept_live_bytes=4,
        kept_recent=1,
        kept_recent_bytes=6,
        dry_run=False,
    )
    assert real == expected
    assert dry == SweepReport(**{**expected.__dict__, "dry_run": True})
    assert set(store.ids()) == {live.id, recent.id}
    assert not store.exists(dead.id)
    assert not store.exists(large.id)
    # Nothing set aside is left behind, and the claims of removed objects went with them.
    assert aside(store) == []
    assert not any(dead.id in key or large.id in key for key in raw_keys(store))
    if isinstance(store.backend, local.LocalBackend):
        assert sorted(raw_keys(store)) == sorted([live.relpath, recent.relpath])


def test_delete_leaves_none_of_the_ids_bookkeeping(store: HashFS) -> None:
    """A deleted id's claim (and marker) would otherwise stay in the bucket for ever."""
    kept = store.put(io.BytesIO(b"kept"))
    gone = store.put(io.BytesIO(b"gone"), ".txt")
    store.put(io.BytesIO(b"gone"), ".txt")  # a dedupe put: a claim of its own
    store.delete(gone.id)
    assert [key for key in raw_keys(store) if gone.id in key] == []
    assert store.exists(kept.id)


def test_recent_objects_are_kept_whatever_the_grace_type(store: HashFS) -> None:
    address = store.put(io.BytesIO(b"new"))
    for grace in (HOUR, timedelta(hours=1), 3600):
        report = store.sweep([], grace=grace)
        assert (report.removed, report.kept_recent, report.kept_recent_bytes) == (0, 1, 3)
    assert store.exists(address.id)


def test_grace_must_be_seconds_or_a_timedelta(store: HashFS) -> None:
    with pytest.raises(ValueError, match="grace"):
        store.sweep([], grace=-1)
    with pytest.raises(ValueError, match="grace"):
        store.sweep([], grace=float("nan"))
    with pytest.raises(TypeError, match="grace"):
        store.sweep([], grace="24h")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="grace"):
        store.sweep([], grace=True)


def test_a_live_set_that_is_not_ids_removes_nothing(store: HashFS) -> None:
    address = store.put(io.BytesIO(b"kept"), ".txt")
    grace = age(store)
    for wrong in ([address.relpath], [address.id.upper()], [(address.id,)]):
        with pytest.raises(InvalidId):
            store.sweep(wrong, grace=grace)  # type: ignore[arg-type]
    assert store.exists(address.id)
    # A nullable column's None references nothing: it is skipped.
    assert store.sweep([None, address.id], grace=grace).kept_live == 1


def test_live_ids_may_repeat_and_come_from_a_generator(store: HashFS) -> None:
    ids = [store.put(io.BytesIO(b"%d" % n)).id for n in range(20)]
    grace = age(store)
    report = store.sweep((id for id in ids[:10] * 3), grace=grace)
    assert (report.kept_live, report.removed) == (10, 10)
    assert sorted(store.ids()) == sorted(ids[:10])


def test_progress_counts_every_object_examined(store: HashFS) -> None:
    for n in range(30):
        store.put(io.BytesIO(b"%d" % n))
    steps: list[int] = []
    store.sweep([], grace=HOUR, progress=steps.append)
    assert sum(steps) == 30
    assert all(step > 0 for step in steps)


def test_a_dedupe_put_renews_the_claim(store: HashFS) -> None:
    address = store.put(io.BytesIO(b"shared"))
    grace = age(store)
    again = store.put(io.BytesIO(b"shared"), ".txt")
    assert again.is_duplicate
    assert again.relpath == address.relpath
    report = store.sweep([], grace=grace)
    assert (report.removed, report.kept_recent) == (0, 1)
    assert store.exists(address.id)


@pytest.mark.parametrize("size", [10, LARGE], ids=["small", "large"])
def test_a_put_stores_again_what_vanished_under_its_claim(
    store: HashFS, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The object is removed between the put's lookup and its claim's utime (local), or
    between the claim and the lookup (S3): the put stores its own bytes, never a dead
    address."""
    data = blob(size)
    first = store.put(io.BytesIO(data))
    backend = store.backend
    target: Any = backend if isinstance(backend, s3.S3Backend) else os
    name = "find" if isinstance(backend, s3.S3Backend) else "utime"
    step: Callable[..., Any] = getattr(target, name)
    removed: list[str] = []

    def removed_first(*args: Any, **kwargs: Any) -> Any:
        if not removed:
            removed.append(first.relpath)
            backend.delete(first.relpath)
        return step(*args, **kwargs)

    monkeypatch.setattr(target, name, removed_first)
    again = store.put(io.BytesIO(data))
    monkeypatch.undo()
    assert removed == [first.relpath]
    assert not again.is_duplicate
    assert again.relpath == first.relpath
    with store.open(again.id) as stream:
        assert stream.read() == data


@pytest.mark.parametrize("extension", ["", ".jpg"])
def test_claim_is_one_utime_in_the_objects_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extension: str
) -> None:
    """By name, relative to the folder the lookup opened: no second walk of the path."""
    store = HashFS(tmp_path / "store", fsync=False)
    address = store.put(io.BytesIO(b"shared"), extension)
    os.utime(address.abspath, (1.0, 1.0))
    folder = os.stat(os.path.dirname(address.abspath))
    calls: list[tuple[str, bool, bool]] = []
    real_utime = os.utime

    def utime(path: str, *args: Any, **kwargs: Any) -> None:
        dir_fd = kwargs.get("dir_fd")
        in_folder = dir_fd is not None and os.path.samestat(os.fstat(dir_fd), folder)
        calls.append((path, in_folder, kwargs.get("follow_symlinks", True)))
        real_utime(path, *args, **kwargs)

    monkeypatch.setattr(os, "utime", utime)
    assert store.put(io.BytesIO(b"shared")).is_duplicate
    monkeypatch.undo()
    assert calls == [(os.path.basename(address.abspath), True, False)]
    assert os.stat(address.abspath).st_mtime > time.time() - HOUR


def test_a_claim_never_lands_outside_when_a_folder_flips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shard folder turned into a symlink out of the root between the lookup and the
    claim: the claim still lands on the object the lookup found, never on a look-alike
    outside (a claim by path followed the symlink)."""
    root = tmp_path / "store"
    store = HashFS(root, fsync=False)
    address = store.put(io.BytesIO(b"shared"))
    first, *rest = address.relpath.split("/")
    outside = tmp_path / "outside"
    look_alike = outside.joinpath(*rest)
    look_alike.parent.mkdir(parents=True)
    look_alike.write_bytes(b"shared")
    os.utime(look_alike, (1.0, 1.0))
    real_utime = os.utime

    def flip_then_utime(*args: Any, **kwargs: Any) -> None:
        os.rename(root / first, root / "parked")
        os.symlink(outside, root / first)
        real_utime(*args, **kwargs)

    monkeypatch.setattr(os, "utime", flip_then_utime)
    store.put(io.BytesIO(b"shared"))
    monkeypatch.undo()
    assert os.stat(look_alike).st_mtime == 1.0
    assert os.stat(root.joinpath("parked", *rest)).st_mtime > time.time() - HOUR


def test_a_bookkeeping_folder_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    store = HashFS(tmp_path / "store", fsync=False)
    address = store.put(io.BytesIO(b"old"))
    age(store)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "store" / ".hashfs").symlink_to(elsewhere)
    with pytest.raises(StorageError, match="sweep's own folder"):
        store.sweep([], grace=HOUR)
    assert list(elsewhere.iterdir()) == []
    assert store.exists(address.id)
    # A dry run changes nothing, so it needs no folder of its own.
    assert store.sweep([], grace=HOUR, dry_run=True).removed == 1


@pytest.mark.parametrize("count", [1, 2, 64, 65, 300])
def test_live_ids_in_one_bucket_are_found_however_many(count: int) -> None:
    """Ids that share their first two bytes (ids an attacker made collide) land in one
    bucket: searched up to 64 ids, bisected beyond."""
    rng = random.Random(count)
    ids = ["0000" + rng.randbytes(30).hex() for _ in range(count)]
    live = LiveIds([*ids, *ids[:5], None], Layout())
    assert all(id in live for id in ids)
    others = ["0000" + rng.randbytes(30).hex() for _ in range(50)] + ["1" * 64]
    rests = sorted(id[4:] for id in ids)
    # Non-members that the bucket holds across a record boundary.
    others += ["0000" + a[30:] + b[:30] for a, b in itertools.pairwise(rests)]
    assert not any(id in live for id in others)
