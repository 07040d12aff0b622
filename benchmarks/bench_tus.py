"""A 256 MiB file through tus in 8 MiB chunks (tuspy) against one ``put(request.stream)``
of the same bytes, on the same server.

Run ``.venv/bin/python benchmarks/bench_tus.py`` from the repository root (``make
bench-tus``; it needs the ``test`` extra: gunicorn and tuspy). It serves an app with
the tus blueprint under /files and a ``PUT /put`` view that stores the raw body, under
gunicorn with one sync worker on 127.0.0.1, into a durable store (fsync on) in
``benchmarks/.data``. Each round writes a fresh random file, so that no upload is a
duplicate, and the two uploads alternate which goes first.

How to read it: each row is the median over the rounds of the whole upload, as the
client waits for it: for tus the creation, every PATCH and the last one's hashing and
publication; for the put the one request. ``ratio`` is tus's throughput over the put's
(1.0: resumability costs nothing). On a shared 2-core machine times swing.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flask import Flask, request
from tusclient.client import TusClient

from flask_hashfs import FlaskHashFS
from flask_hashfs.tus import TusUploads

SIZE = 256 << 20
CHUNK = 8 << 20
DATA = Path(__file__).resolve().parent / ".data"


def create_app() -> Flask:
    """The benchmark's server app (gunicorn imports it), storing in ``$TUS_BENCH_ROOT``."""
    app = Flask(__name__)
    app.config.update(HASHFS_ROOT_FOLDER=os.environ["TUS_BENCH_ROOT"])
    fs = FlaskHashFS(app)
    tus = TusUploads(fs, max_size=1 << 40)
    app.register_blueprint(tus.blueprint, url_prefix="/files")

    @app.put("/put")
    def put() -> tuple[str, int]:
        return fs.put(request.stream, ".bin").id, 201

    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(port: int) -> None:
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("gunicorn did not start")


def through_tus(port: int, path: Path) -> float:
    client = TusClient(f"http://127.0.0.1:{port}/files")
    start = time.perf_counter()
    client.uploader(file_path=str(path), chunk_size=CHUNK, metadata={"filename": "x.bin"}).upload()
    return time.perf_counter() - start


def through_put(port: int, path: Path) -> float:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120, blocksize=1 << 20)
    start = time.perf_counter()
    with path.open("rb") as body:
        connection.request("PUT", "/put", body=body, headers={"Content-Length": str(SIZE)})
        reply = connection.getresponse()
        reply.read()
    seconds = time.perf_counter() - start
    connection.close()
    if reply.status != 201:
        raise SystemExit(f"PUT /put answered {reply.status}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    DATA.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tus-", dir=DATA))
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers=1",
            "--timeout=300",
            f"--bind=127.0.0.1:{port}",
            "--chdir",
            str(Path(__file__).resolve().parent),
            "bench_tus:create_app()",
        ],
        env={**os.environ, "TUS_BENCH_ROOT": str(work / "store")},
        stderr=subprocess.DEVNULL,
    )
    times: dict[str, list[float]] = {"tus": [], "put": []}
    try:
        wait_for(port)
        for round in range(args.rounds):
            path = work / "upload.bin"
            with path.open("wb") as out:
                for _ in range(SIZE // CHUNK):
                    out.write(os.urandom(CHUNK))
            order = ["tus", "put"] if round % 2 == 0 else ["put", "tus"]
            for name in order:
                send = through_tus if name == "tus" else through_put
                times[name].append(send(port, path))
                os.sync()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait()
        shutil.rmtree(work)
    print(f"256 MiB, durable store, gunicorn 1 sync worker, {args.rounds} rounds (medians)")
    print(f"{'path':40s} {'time':>8s} {'MiB/s':>8s}   all rounds")
    label = {
        "tus": "tus, tuspy, 8 MiB chunks (32 PATCHes)",
        "put": "one put(request.stream), http.client",
    }
    medians = {}
    for name in ("tus", "put"):
        medians[name] = statistics.median(times[name])
        rounds = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"{label[name]:40s} {medians[name]:7.2f}s {256 / medians[name]:8.0f}   {rounds}")
    print(f"ratio (tus throughput / put throughput): {medians['put'] / medians['tus']:.2f}")


if __name__ == "__main__":
    main()
