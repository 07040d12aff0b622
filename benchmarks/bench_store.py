"""The store against its limit and against hashfs 0.7.2, in one process and one run.

Every figure is the median of several repeats, and the repeats of the contenders in a
row are interleaved (A B C, A B C, ...) so that a noisy neighbour hurts them alike.
See benchmarks/README.md for how to read the output. Run it with ``make bench``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import itertools
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hashfs

from flask_hashfs import HashFS

CHUNK = 1 << 20
SMALL = 4096
EXTENSION = ".jpg"
SMALL_ROOTS = "small"
DELETED_STAMP = "small.deleted"
#: Seconds between a run's deletion of its trees and the next run's first measurement.
SETTLE = 90
DEFAULT_DATA = Path(__file__).resolve().parent / ".data"
#: cpu/wall of hashfs's single-threaded lookups: the share of a core this process got.
SHARE: list[float] = []


@dataclass
class Scale:
    big_mib: int
    big_repeats: int
    small_puts: int
    durable_puts: int
    small_repeats: int
    objects: int
    lookups: int
    lookup_repeats: int
    walk_repeats: int
    cold_repeats: int


FULL = Scale(256, 5, 2000, 300, 5, 100_000, 2000, 5, 5, 3)
QUICK = Scale(64, 3, 500, 100, 3, 20_000, 1000, 3, 3, 1)


@dataclass
class Samples:
    """Seconds per repeat for one contender; ``work`` is bytes or operations per repeat."""

    work: float
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rate(self) -> float:
        return self.work / self.median

    @property
    def busy(self) -> float:
        """CPU seconds of this process per wall second: well under 1 for single-threaded
        work means other processes had the cores."""
        return statistics.median(self.cpu) / self.median

    @property
    def spread(self) -> float:
        """(slowest - fastest) / median: how much the machine moved under this row."""
        return (max(self.seconds) - min(self.seconds)) / self.median


def timed(action: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of one call."""
    cpu, start = time.process_time(), time.perf_counter()
    action()
    return time.perf_counter() - start, time.process_time() - cpu


def interleave(
    repeats: int,
    contenders: Mapping[str, tuple[float, Callable[[], Callable[[], object]]]],
) -> dict[str, Samples]:
    """Run each contender once per round, in a rotating order.

    A contender is ``(work, prepare)``: ``prepare()`` runs untimed and returns the
    action that is timed.
    """
    samples = {name: Samples(work) for name, (work, _) in contenders.items()}
    names = list(contenders)
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            action = contenders[name][1]()
            os.sync()  # nobody's dirty pages are flushed on someone else's clock
            wall, cpu = timed(action)
            samples[name].seconds.append(wall)
            samples[name].cpu.append(cpu)
    return samples


def drop_caches() -> bool:
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as control:
            control.write("3\n")
    except OSError:
        return False
    return True


# -- report ------------------------------------------------------------------------------


@dataclass
class Row:
    what: str
    ours: str
    theirs: str
    limit: str
    ratio: float
    target: float
    noise: float

    @property
    def ok(self) -> bool:
        return self.ratio >= self.target


def gbps(s: Samples) -> str:
    return f"{s.rate / 1e9:.2f} GB/s"


def per_s(s: Samples) -> str:
    return f"{s.rate:,.0f}/s"


def secs(s: Samples) -> str:
    return f"{s.median:.2f} s"


def noise(*samples: Samples) -> float:
    return max(s.spread for s in samples)


def print_table(rows: Sequence[Row]) -> None:
    print()
    print("| benchmark | ours | hashfs 0.7.2 | limit | ratio | target | ok | noise |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ok = "yes" if r.ok else "**no**"
        print(
            f"| {r.what} | {r.ours} | {r.theirs} | {r.limit} | {r.ratio:.2f} "
            f"| >= {r.target:g} | {ok} | {r.noise:.0%} |"
        )


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the benchmarks ----------------------------------------------------------------------


def random_file(path: Path, size: int) -> Path:
    """``path``, made of ``size`` random bytes unless it already has that size."""
    if not path.exists() or path.stat().st_size != size:
        with open(path, "wb") as out:
            for _ in range(0, size, CHUNK):
                out.write(os.urandom(CHUNK))
    return path


def free_page_cache(ballast: Path) -> None:
    """Read ``ballast`` into the page cache and drop it, just before a timed large put.

    On the 2-core VM, memory that has stayed free for a few seconds is handed back to
    the host (the balloon device's free page reporting), and the first touch of it costs
    a fault on the host. A 256 MiB write that got such pages for its page cache took
    0.3-0.6 s instead of 0.19 s, with half the time in the copy into the page cache. Who
    got them depended on what the contender before had freed. Freeing as much page cache
    just before each timed call gives every contender recycled pages, so that the figure
    is the contender's and not the VM's.
    """
    buffer = bytearray(CHUNK)
    with open(ballast, "rb", buffering=0) as file:
        while file.readinto(buffer):
            pass
        os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def bench_big_put(data_dir: Path, scale: Scale) -> list[Row]:
    size = scale.big_mib << 20
    log(f"large put: {scale.big_mib} MiB by path, {scale.big_repeats} repeats")
    source = random_file(data_dir / f"source-{scale.big_mib}.bin", size)
    ballast = random_file(data_dir / f"ballast-{scale.big_mib}.bin", size)
    data = source.read_bytes()
    view = memoryview(data)
    root = data_dir / "big"
    shutil.rmtree(root, ignore_errors=True)
    durable = HashFS(root / "ours", fsync=True)
    fast = HashFS(root / "ours", fsync=False)
    theirs = hashfs.HashFS(str(root / "hashfs"))
    scratch = data_dir / "raw-write.bin"

    def sha256_pass() -> Callable[[], object]:
        def run() -> str:
            hasher = hashlib.sha256()
            for offset in range(0, size, CHUNK):
                hasher.update(view[offset : offset + CHUNK])
            return hasher.hexdigest()

        return run

    def raw_write(fsync: bool) -> Callable[[], Callable[[], object]]:
        def prepare() -> Callable[[], object]:
            scratch.unlink(missing_ok=True)

            def run() -> None:
                fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    for offset in range(0, size, CHUNK):
                        os.write(fd, view[offset : offset + CHUNK])
                    if fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)

            return run

        return prepare

    def put(store: Any) -> Callable[[], Callable[[], object]]:
        def prepare() -> Callable[[], object]:
            for candidate in (durable, theirs):
                candidate.delete(hashlib.sha256(data).hexdigest())
            return lambda: store.put(str(source))

        return prepare

    def recycled(prepare: Callable[[], Callable[[], object]]) -> Callable[[], Callable[[], object]]:
        def recycle_then_prepare() -> Callable[[], object]:
            action = prepare()
            free_page_cache(ballast)
            return action

        return recycle_then_prepare

    contenders = {
        "sha256": (size, recycled(sha256_pass)),
        "write": (size, recycled(raw_write(False))),
        "write+fsync": (size, recycled(raw_write(True))),
        "ours durable": (size, recycled(put(durable))),
        "ours fsync off": (size, recycled(put(fast))),
        "hashfs": (size, recycled(put(theirs))),
    }
    # One untimed round first: whoever touches this process's fresh memory and page
    # cache first pays for it (0.4-1.1 s instead of 0.2-0.5 s on the 2-core VM).
    interleave(1, contenders)
    samples = interleave(scale.big_repeats, contenders)
    scratch.unlink(missing_ok=True)
    shutil.rmtree(root, ignore_errors=True)
    for name, s in samples.items():
        log(
            f"  {name:16} {gbps(s):>10}  {s.median:.3f} s"
            f"  cpu/wall {s.busy:.2f}  spread {s.spread:.0%}"
            f"  rounds {' '.join(f'{x:.3f}' for x in s.seconds)}"
        )
    sha, write_fsync = samples["sha256"], samples["write+fsync"]
    slower = sha if sha.median >= write_fsync.median else write_fsync
    ours_durable, ours_fast, old = (
        samples["ours durable"],
        samples["ours fsync off"],
        samples["hashfs"],
    )
    write = samples["write"]
    limit_text = f"{gbps(slower)} ({'sha256' if slower is sha else 'write+fsync'})"
    mib = scale.big_mib
    return [
        Row(
            f"put {mib} MiB by path, durable, vs limit",
            gbps(ours_durable),
            "-",
            limit_text,
            ours_durable.rate / slower.rate,
            0.85,
            noise(ours_durable, sha, write_fsync),
        ),
        Row(
            f"put {mib} MiB by path, fsync off, vs sha256",
            gbps(ours_fast),
            gbps(old),
            f"{gbps(sha)} (sha256; write {gbps(write)})",
            ours_fast.rate / sha.rate,
            0.85,
            noise(ours_fast, sha),
        ),
        Row(
            f"put {mib} MiB by path, fsync off, vs hashfs",
            gbps(ours_fast),
            gbps(old),
            "-",
            ours_fast.rate / old.rate,
            2.5,
            noise(ours_fast, old),
        ),
    ]


def remove_small_roots(data_dir: Path) -> None:
    """Delete this run's small-put roots, last thing in a run, and note when.

    ext4 without a journal (this machine's disk) does not reuse a freed inode for a minute
    or more, and each new file or folder in that inode's block group scans past it. A tree
    deleted just before a run of small puts (as this benchmark once did between
    contenders) made every mkdir and create pay for that scan, ours and hashfs's alike:
    perf showed 40-50% of a put's time in the kernel's recently_deleted(), which hid what
    the stores themselves cost. The deletion also keeps the disk busy with discards for a
    while, which slows durable puts. See settle().
    """
    roots = data_dir / SMALL_ROOTS
    if roots.exists():
        log(f"removing the small-put roots ({roots})")
        shutil.rmtree(roots)
        os.sync()
        (data_dir / DELETED_STAMP).touch()


def settle(data_dir: Path) -> None:
    """Wait until the previous run's deletion is SETTLE seconds old."""
    try:
        age = time.time() - (data_dir / DELETED_STAMP).stat().st_mtime
    except FileNotFoundError:
        return
    if age < SETTLE:
        log(f"waiting {SETTLE - age:.0f} s: the previous run deleted its trees {age:.0f} s ago")
        time.sleep(SETTLE - age)


def bench_small_puts(data_dir: Path, scale: Scale) -> list[Row]:
    n, n_durable = scale.small_puts, scale.durable_puts
    log(f"small puts: {n} x 4 KiB streams ({n_durable} durable), {scale.small_repeats} repeats")
    # Each timed run gets a root of its own, and none is deleted during this part: see
    # remove_small_roots().
    base = data_dir / SMALL_ROOTS
    roots = itertools.count()

    def fresh(name: str, count: int) -> tuple[Path, list[io.BytesIO]]:
        """A new empty root and ``count`` streams of content nobody stored yet."""
        root = base / f"{name}-{next(roots)}"
        blob = os.urandom(SMALL * count)
        return root, [io.BytesIO(blob[i * SMALL : (i + 1) * SMALL]) for i in range(count)]

    def put_all(store: Any, streams: list[io.BytesIO]) -> Callable[[], object]:
        def run() -> None:
            put = store.put
            for stream in streams:
                put(stream)

        return run

    def ours(fsync: bool, count: int) -> Callable[[], Callable[[], object]]:
        def prepare() -> Callable[[], object]:
            root, streams = fresh("ours", count)
            return put_all(HashFS(root, fsync=fsync), streams)

        return prepare

    def theirs() -> Callable[[], object]:
        root, streams = fresh("hashfs", n)
        return put_all(hashfs.HashFS(str(root)), streams)

    def dedupe(make: Callable[[Path], Any]) -> Callable[[], Callable[[], object]]:
        def prepare() -> Callable[[], object]:
            root, streams = fresh("dedupe", n)
            store = make(root)
            put_all(store, streams)()
            return put_all(store, streams)

        return prepare

    samples = interleave(
        scale.small_repeats,
        {
            "ours fsync off": (n, ours(False, n)),
            "ours durable": (n_durable, ours(True, n_durable)),
            "hashfs": (n, theirs),
            "ours dedupe": (n, dedupe(lambda root: HashFS(root, fsync=True))),
            "hashfs dedupe": (n, dedupe(lambda root: hashfs.HashFS(str(root)))),
        },
    )
    for name, s in samples.items():
        log(f"  {name:16} {per_s(s):>10}  cpu/wall {s.busy:.2f}  spread {s.spread:.0%}")
    fast, durable, old = samples["ours fsync off"], samples["ours durable"], samples["hashfs"]
    dup, old_dup = samples["ours dedupe"], samples["hashfs dedupe"]
    return [
        Row(
            "put 4 KiB stream, fsync off",
            per_s(fast),
            per_s(old),
            "-",
            fast.rate / old.rate,
            1.5,
            noise(fast, old),
        ),
        Row(
            "put 4 KiB stream, durable (report only)",
            per_s(durable),
            per_s(old),
            "-",
            durable.rate / old.rate,
            0,
            noise(durable, old),
        ),
        Row(
            "put 4 KiB stream, already stored",
            per_s(dup),
            per_s(old_dup),
            "-",
            dup.rate / old_dup.rate,
            1.5,
            noise(dup, old_dup),
        ),
    ]


def build_tree(data_dir: Path, objects: int) -> tuple[Path, list[str], list[str]]:
    """A store of ``objects`` small objects, every other one with an extension.

    Both stores use the same layout (depth 4, width 1, sha256), so one tree serves both;
    it is written directly, once, and kept for the next run.
    """
    root = data_dir / f"tree-{objects}"
    done = data_dir / f"tree-{objects}.done"
    with_ext: list[str] = []
    without_ext: list[str] = []
    for i in range(objects):
        content = b"object %d\n" % i * (1 + i % 7)
        id = hashlib.sha256(content).hexdigest()
        (with_ext if i % 2 else without_ext).append(id)
        if done.exists():
            continue
        folder = root.joinpath(*id[:4])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / (id[4:] + (EXTENSION if i % 2 else ""))).write_bytes(content)
    done.touch()
    return root, with_ext, without_ext


def bench_lookups(
    root: Path, with_ext: list[str], without_ext: list[str], scale: Scale
) -> list[Row]:
    rng = random.Random(7)
    n, repeats = scale.lookups, scale.lookup_repeats
    log(f"lookups: {n} ids each in a store of {len(with_ext) + len(without_ext):,} objects")
    # Every call asks for an id that nobody asked for before in this run: hashfs compiles
    # a glob pattern per id and caches it, and repeating ids would measure that cache.
    per_row = n * repeats
    plain = rng.sample(without_ext, 2 * per_row)
    dotted = rng.sample(with_ext, 2 * per_row)
    missing = [hashlib.sha256(b"missing %d" % i).hexdigest() for i in range(per_row)]
    ours = HashFS(root)
    theirs = hashfs.HashFS(str(root))
    # Lookups are measured on a warm cache (the walks measure a cold one). Both stores are
    # asked for the same ids in a round, so whichever went first would pay for reading
    # the folders from disk, and the other would find them cached.
    log("  warming the page cache with one walk of the tree")
    ours.count()
    for id in rng.sample(with_ext, 10) + rng.sample(without_ext, 10):
        assert ours.get(id) is not None  # the tree is what both are asked about
        assert ours.get(id) == theirs.get(id)

    def loop(
        method: Callable[[str], object], ids: list[str], expect: bool
    ) -> Callable[[], Callable[[], object]]:
        """Each repeat takes the next ``n`` ids."""
        rounds = iter(range(0, len(ids), n))

        def prepare() -> Callable[[], object]:
            start = next(rounds)
            batch = ids[start : start + n]

            def run() -> None:
                for id in batch:
                    if bool(method(id)) is not expect:
                        raise AssertionError(f"{method} {id}")

            return run

        return prepare

    rows = []
    for label, ids, expect, target in [
        ("get(id)", plain[:per_row], True, 5),
        ("get(id) stored with extension", dotted[:per_row], True, 5),
        ("exists(id)", plain[per_row:], True, 2),
        ("exists(id) stored with extension", dotted[per_row:], True, 2),
        ("exists(missing id)", missing, False, 10),
    ]:
        op = label.partition("(")[0]
        samples = interleave(
            repeats,
            {
                "ours": (n, loop(getattr(ours, op), ids, expect)),
                "hashfs": (n, loop(getattr(theirs, op), ids, expect)),
            },
        )
        mine, old = samples["ours"], samples["hashfs"]
        log(
            f"  {label:34} ours {per_s(mine):>10} (cpu/wall {mine.busy:.2f})"
            f"  hashfs {per_s(old):>10} (cpu/wall {old.busy:.2f})"
        )
        SHARE.append(old.busy)
        rows.append(
            Row(label, per_s(mine), per_s(old), "-", mine.rate / old.rate, target, noise(mine, old))
        )
    return rows


def bench_walks(root: Path, objects: int, scale: Scale, cold: bool) -> list[Row]:
    ours = HashFS(root)
    theirs = hashfs.HashFS(str(root))
    assert ours.count() == theirs.count() == objects
    assert ours.size() == theirs.size()
    rows = []
    modes: list[tuple[str, int, Callable[[], object]]] = [
        ("warm", scale.walk_repeats, lambda: None)
    ]
    if cold:
        modes.append(("cold", scale.cold_repeats, drop_caches))

    def after(
        before: Callable[[], object], method: Callable[[], int]
    ) -> Callable[[], Callable[[], object]]:
        def ready() -> Callable[[], object]:
            before()
            return method

        return ready

    for mode, repeats, before in modes:
        log(f"{mode} walks over {objects:,} objects, {repeats} repeats")
        for op, target in [("count", 2.0), ("size", 2.0)]:
            samples = interleave(
                repeats,
                {
                    "ours": (1, after(before, getattr(ours, op))),
                    "hashfs": (1, after(before, getattr(theirs, op))),
                },
            )
            mine, old = samples["ours"], samples["hashfs"]
            log(
                f"  {op:6} ours {secs(mine):>8} (cpu/wall {mine.busy:.2f})"
                f"  hashfs {secs(old):>8} (cpu/wall {old.busy:.2f})"
            )
            rows.append(
                Row(
                    f"{op}() over {objects:,} objects, {mode}",
                    secs(mine),
                    secs(old),
                    "-",
                    old.median / mine.median,
                    target,
                    noise(mine, old),
                )
            )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="scratch folder on the filesystem to measure (default: benchmarks/.data)",
    )
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-cache walks")
    parser.add_argument(
        "--only",
        choices=["big", "small", "lookups", "walks"],
        action="append",
        help="run only these parts (repeatable)",
    )
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    parts = set(args.only or ["big", "small", "lookups", "walks"])
    data_dir: Path = args.data.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    # hashfs 0.7.2 writes its temp files in the system temp folder and then moves them.
    # Keep them on the measured filesystem, so that the move is a rename there as here.
    tempfile.tempdir = str(data_dir)
    started = time.perf_counter()
    load = os.getloadavg()
    rows: list[Row] = []
    settle(data_dir)
    if "big" in parts:
        rows += bench_big_put(data_dir, scale)
    if "small" in parts:
        rows += bench_small_puts(data_dir, scale)
    if parts & {"lookups", "walks"}:
        log(f"building a tree of {scale.objects:,} objects (kept for the next run)")
        root, with_ext, without_ext = build_tree(data_dir, scale.objects)
        if "lookups" in parts:
            rows += bench_lookups(root, with_ext, without_ext, scale)
        if "walks" in parts:
            cold = not args.no_cold and drop_caches()
            if not cold and not args.no_cold:
                log("cannot drop the page cache (needs root): cold walks skipped")
            rows += bench_walks(root, scale.objects, scale, cold)
    remove_small_roots(data_dir)
    print_table(rows)
    after = os.getloadavg()
    print(
        f"\n{time.perf_counter() - started:.0f} s on {os.cpu_count()} cores; load average "
        f"{load[0]:.1f} before, {after[0]:.1f} after; data in {data_dir}"
    )
    if SHARE:
        print(
            f"hashfs's single-threaded lookups got {statistics.median(SHARE):.2f} of a core "
            "(cpu/wall; about 1.0 on a quiet machine)"
        )
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
