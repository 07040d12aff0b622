"""How close the lookups and the dedupe put are to the least their guarantees cost.

For exists(id), exists(missing id) and a dedupe put of 4 KiB, this times hashfs 0.7.2,
this store, and the bare system calls that the store's guarantees need, made from
Python with nothing around them (no id check, no layers): the best ratio any code with
the same guarantees could reach against hashfs here. It also times the unconfined
calls that 1.0 made, or that a put without a claim would make. CPU time per call
(``time.process_time``), 1,000 fresh ids per contender and round, the contenders in a
shuffled order, nine rounds, medians. It uses bench_store.py's tree (built on first use).

    .venv/bin/python benchmarks/lookup_floors.py
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import shutil
import stat
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hashfs
from bench_store import DEFAULT_DATA, build_tree

from flask_hashfs import HashFS
from flask_hashfs.backends import beneath

ROUNDS = 9
PER_ROUND = 1000
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LOOK = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC

Contender = tuple[Callable[[Any], object], Callable[[int, int], list[Any]]]


def openat2(path: bytes, flags: int) -> int:
    """The store's own confined open (``RESOLVE_NO_SYMLINKS``), called directly."""
    call = beneath._openat2
    assert call is not None, "this kernel has no openat2"
    fd: int = call(beneath._NUMBER, beneath._FROM_CWD, path, beneath._how(flags), beneath._HOW_SIZE)
    return fd


def parts(root: str, id: str) -> tuple[bytes, str]:
    """The shard folder's absolute path (bytes) and the object's name in it."""
    return f"{root}/{id[0]}/{id[1]}/{id[2]}/{id[3]}".encode(), id[4:]


def confined_exists(root: str) -> Callable[[str], object]:
    def call(id: str) -> bool:
        folder, name = parts(root, id)
        fd = openat2(folder + b"/" + name.encode(), _LOOK)
        if fd < 0:
            return False
        try:
            return stat.S_ISREG(os.fstat(fd).st_mode)
        finally:
            os.close(fd)

    return call


def unconfined_stat(root: str) -> Callable[[str], object]:
    def call(id: str) -> bool:
        try:
            path = f"{root}/{id[0]}/{id[1]}/{id[2]}/{id[3]}/{id[4:]}"
            return stat.S_ISREG(os.stat(path, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            return False

    return call


def confined_missing(root: str) -> Callable[[str], object]:
    """Folder, lstat of the id, one listing (``scandir`` of the descriptor), close."""

    def call(id: str) -> bool:
        folder, name = parts(root, id)
        fd = openat2(folder, _FOLDER)
        if fd < 0:
            return False
        try:
            try:
                os.stat(name, dir_fd=fd, follow_symlinks=False)
                return True
            except FileNotFoundError:
                pass
            with os.scandir(fd) as scan:
                return any(entry.name.startswith(name) for entry in scan)
        finally:
            os.close(fd)

    return call


def unconfined_missing(root: str) -> Callable[[str], object]:
    """1.0's way: lstat of the object's path, then a listing of its folder by path."""

    def call(id: str) -> bool:
        folder = f"{root}/{id[0]}/{id[1]}/{id[2]}/{id[3]}"
        try:
            os.lstat(f"{folder}/{id[4:]}")
            return True
        except FileNotFoundError:
            pass
        try:
            return any(name.startswith(id[4:]) for name in os.listdir(folder))
        except FileNotFoundError:
            return False

    return call


def confined_claim(root: str) -> Callable[[io.BytesIO], object]:
    """Hash, the folder, lstat, utime by name in it, close: a dedupe put's claim."""

    def call(stream: io.BytesIO) -> None:
        id = hashlib.sha256(stream.getvalue()).hexdigest()
        folder, name = parts(root, id)
        fd = openat2(folder, _FOLDER)
        try:
            if stat.S_ISREG(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                os.utime(name, dir_fd=fd, follow_symlinks=False)
        finally:
            os.close(fd)

    return call


def unconfined_claim(root: str) -> Callable[[io.BytesIO], object]:
    """Hash and one utime by path: a claim with no type check and no confinement."""

    def call(stream: io.BytesIO) -> None:
        id = hashlib.sha256(stream.getvalue()).hexdigest()
        os.utime(f"{root}/{id[0]}/{id[1]}/{id[2]}/{id[3]}/{id[4:]}", follow_symlinks=False)

    return call


def measure(title: str, contenders: dict[str, Contender]) -> None:
    rng = random.Random(7)
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for round_ in range(ROUNDS):
        names = list(contenders)
        rng.shuffle(names)
        for index, name in enumerate(names):
            call, items = contenders[name]
            batch = items(round_, index)
            start = time.process_time()
            for item in batch:
                call(item)
            seconds[name].append((time.process_time() - start) / len(batch))
    old = statistics.median(seconds["hashfs 0.7.2"])
    print(f"\n{title}")
    for name, samples in seconds.items():
        median = statistics.median(samples)
        print(f"  {name:48} {median * 1e6:7.2f} us   {old / median:5.2f}x hashfs")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args(argv)
    data: Path = args.data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    tree, _, without_ext = build_tree(data, 100_000)
    root = str(tree)
    ours, theirs = HashFS(root), hashfs.HashFS(root)
    ours.count()  # warm the page cache, as bench_store.py does
    rng = random.Random(11)

    def stored(round_: int, index: int) -> list[str]:
        return rng.sample(without_ext, PER_ROUND)

    def missing(round_: int, index: int) -> list[str]:
        seed = b"floors %d %d %f" % (round_, index, rng.random())
        return [hashlib.sha256(seed + b"%d" % i).hexdigest() for i in range(PER_ROUND)]

    measure(
        "exists(id), stored without extension",
        {
            "hashfs 0.7.2": (theirs.exists, stored),
            "ours": (ours.exists, stored),
            "confined floor: openat2 O_PATH, fstat, close": (confined_exists(root), stored),
            "unconfined: one stat": (unconfined_stat(root), stored),
        },
    )
    measure(
        "exists(missing id)",
        {
            "hashfs 0.7.2": (theirs.exists, missing),
            "ours": (ours.exists, missing),
            "confined floor: folder, lstat, scandir, close": (confined_missing(root), missing),
            "unconfined (1.0): lstat, listdir by path": (unconfined_missing(root), missing),
        },
    )
    scratch = Path(tempfile.mkdtemp(dir=data))
    try:
        blobs = [os.urandom(4096) for _ in range(PER_ROUND)]
        mine, old = HashFS(scratch / "ours"), hashfs.HashFS(str(scratch / "hashfs"))
        for blob in blobs:
            mine.put(io.BytesIO(blob))
            old.put(io.BytesIO(blob))
        streams = [io.BytesIO(blob) for blob in blobs]

        def same(round_: int, index: int) -> list[io.BytesIO]:
            return streams

        measure(
            "put 4 KiB stream, already stored",
            {
                "hashfs 0.7.2": (old.put, same),
                "ours": (mine.put, same),
                "claim floor: hash, folder, lstat, utime, close": (confined_claim(mine.root), same),
                "no claim check: hash, utime by path": (unconfined_claim(mine.root), same),
            },
        )
    finally:
        shutil.rmtree(scratch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
