"""Upload benchmark: what a 256 MiB upload costs through gunicorn, by the way the app takes it.

One run, everything on 127.0.0.1. The script starts gunicorn (1 sync worker) twice, with
the store durable (``HASHFS_FSYNC`` on) and with fsync off, each running one Flask app
with these endpoints:

- ``discard``: reads the body from ``wsgi.input`` in 1 MiB reads and drops it, the
  fastest any view can take a body through this server: the HTTP stack's limit;
- ``put``: ``fs.put(request.stream)``, the raw body;
- ``stream``: ``fs.stream_uploads()``, a multipart form taken off the socket (1.1);
- ``put_upload``: ``fs.put_upload(request.files["f"])``, the same form parsed by
  werkzeug first, which spools the file to a temp file (1.0's way, for reference);
- ``save``: ``request.files["f"].save(path)``, then fsync when durable: what an app
  does without us.

Two senders send every case, with the same bytes: curl (``--data-binary @file``, from
a file in the page cache) and Python's ``http.client`` (from memory). Every body differs
from the previous one in its first bytes, so that no put is a duplicate. Each round runs
the cases in turn, the senders alternating, in the reverse order every other round; the
script prints each case's median time and throughput (and the spread), and the ratios
the targets are about, each the median of the per-round ratios. Then 4 KiB multipart
uploads per second through ``stream`` against 4 KiB bodies through ``discard``, with
Python's sender, one connection per request (gunicorn's sync worker closes each).

``--quick`` runs one round of 8 MiB bodies and 200 small uploads: a smoke test of the
whole script in seconds, whose figures mean nothing. Run it with ``make bench-uploads``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from flask import Flask, Response, g, request

from flask_hashfs import FlaskHashFS, HashFS

ROOT_ENV = "HASHFS_BENCH_ROOT"
FSYNC_ENV = "HASHFS_BENCH_FSYNC"
BOUNDARY = "hashfs-bench-boundary-7d1f0c"
#: The endpoints, in the order of the first round.
ENDPOINTS = ("discard", "put", "stream", "put_upload", "save")
MULTIPART = {"stream", "put_upload", "save"}
#: The 4 KiB runs: the HTTP stack's limit, the streamed form, 1.0's way.
SMALL_ENDPOINTS = ("discard", "stream", "put_upload")
MiB = 1 << 20
SENDERS = ("curl", "python")
READ_SIZE = 1 << 20
CPU_HEADER = "X-Server-CPU"


# -- the app gunicorn runs (it imports this module) --------------------------------------


def bench_app() -> Flask:
    root = Path(os.environ[ROOT_ENV])
    durable = os.environ[FSYNC_ENV] == "1"
    app = Flask(__name__)
    app.config.update(HASHFS_ROOT_FOLDER=str(root / "store"), HASHFS_FSYNC=durable)
    fs = FlaskHashFS(app)
    saved = root / "saved"
    saved.mkdir(exist_ok=True)

    @app.before_request
    def start_clock() -> None:
        g.cpu = time.process_time()

    @app.after_request
    def tell_cpu(response: Response) -> Response:
        """The worker's CPU time for the request, both threads of a put included: on a
        shared machine it moves far less with the neighbours' load than wall time."""
        response.headers[CPU_HEADER] = f"{time.process_time() - g.cpu:.6f}"
        return response

    @app.post("/discard")
    def discard() -> str:
        read = request.environ["wsgi.input"].read
        total = 0
        while data := read(READ_SIZE):
            total += len(data)
        return str(total)

    @app.post("/put")
    def put() -> str:
        return fs.put(request.stream, extension=".bin").id

    @app.post("/stream")
    def stream() -> str:
        return fs.stream_uploads().files["f"].address.id

    @app.post("/put_upload")
    def put_upload() -> str:
        return fs.put_upload(request.files["f"]).id

    @app.post("/save")
    def save() -> str:
        path = saved / "upload.bin"
        request.files["f"].save(path)
        if durable:
            with path.open("rb+") as file:
                os.fsync(file.fileno())
        return str(path.stat().st_size)

    return app


# -- senders ---------------------------------------------------------------------------


def multipart(payload: bytes) -> bytes:
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="f"; filename="upload.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + payload + f"\r\n--{BOUNDARY}--\r\n".encode()


def content_type(endpoint: str) -> str:
    if endpoint in MULTIPART:
        return f"multipart/form-data; boundary={BOUNDARY}"
    return "application/octet-stream"


class Reply(NamedTuple):
    seconds: float
    status: int
    body: bytes
    #: The server's CPU seconds for the request.
    cpu: float


def send_python(port: int, path: str, ctype: str, body: bytes | bytearray) -> Reply:
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        connection.putrequest("POST", path, skip_accept_encoding=True)
        connection.putheader("Content-Type", ctype)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders()
        connection.send(memoryview(body))
        response = connection.getresponse()
        answer = response.read()
        seconds = time.perf_counter() - start
        return Reply(seconds, response.status, answer, float(response.getheader(CPU_HEADER, 0)))
    finally:
        connection.close()


def send_curl(port: int, path: str, ctype: str, body_file: Path) -> Reply:
    """curl's own count of the request's time (``time_total``): with ``--data-binary
    @file`` curl reads the whole file into memory before it connects, which a timer
    around the process would count too."""
    answer_file = body_file.with_suffix(".answer")
    headers_file = body_file.with_suffix(".headers")
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            str(answer_file),
            "-D",
            str(headers_file),
            "-w",
            "%{time_total} %{http_code}",
            "-H",
            f"Content-Type: {ctype}",
            "--data-binary",
            f"@{body_file}",
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    cpu = 0.0
    for line in headers_file.read_text().splitlines():
        name, _, value = line.partition(":")
        if name.lower() == CPU_HEADER.lower():
            cpu = float(value)
    return Reply(float(out[0]), int(out[1]), answer_file.read_bytes(), cpu)


# -- servers ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def answers(port: int) -> bool:
    with contextlib.suppress(OSError):
        return send_python(port, "/discard", "text/plain", b"x")[1] == 200
    return False


@contextlib.contextmanager
def gunicorn(workdir: Path, durable: bool) -> Iterator[tuple[int, Path]]:
    """A gunicorn with 1 sync worker running :func:`bench_app`: its port and its store."""
    root = workdir / ("durable" if durable else "fsync-off")
    root.mkdir()
    port = free_port()
    log = (workdir / f"gunicorn-{root.name}.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers=1",
            "--worker-class=sync",
            "--timeout=300",
            f"--bind=127.0.0.1:{port}",
            f"--pythonpath={Path(__file__).resolve().parent}",
            f"--worker-tmp-dir={workdir}",
            "--log-level=warning",
            f"{Path(__file__).stem}:bench_app()",
        ],
        env={**os.environ, ROOT_ENV: str(root), FSYNC_ENV: "1" if durable else "0"},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.close()
                text = (workdir / f"gunicorn-{root.name}.log").read_text(errors="replace")
                raise RuntimeError(f"gunicorn did not start:\n{text}")
            time.sleep(0.1)
        yield port, root / "store"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
        shutil.rmtree(root / "store", ignore_errors=True)


# -- the run ---------------------------------------------------------------------------


@dataclass
class Bodies:
    """The raw and the multipart body of one payload, in memory and in files (for curl),
    renewed in their first payload bytes before each request."""

    workdir: Path
    payload_size: int

    def __post_init__(self) -> None:
        payload = os.urandom(self.payload_size)
        self.memory = {"raw": bytearray(payload), "form": bytearray(multipart(payload))}
        self.offset = {"raw": 0, "form": len(multipart(b"")) - len(f"\r\n--{BOUNDARY}--\r\n")}
        self.files = {kind: self.workdir / f"{kind}.body" for kind in self.memory}
        for kind, body in self.memory.items():
            self.files[kind].write_bytes(body)

    def renew(self, kind: str) -> None:
        fresh = os.urandom(16)
        at = self.offset[kind]
        self.memory[kind][at : at + len(fresh)] = fresh
        with self.files[kind].open("rb+") as file:
            os.pwrite(file.fileno(), fresh, at)


@dataclass
class Server:
    name: str  # "durable" or "fsync off"
    port: int
    store: Path

    def forget(self, answer: bytes) -> None:
        """Remove what a put stored, so that every round stores anew and the disk stays
        free; a ``save`` rewrites its one file."""
        id = answer.decode()
        if len(id) == 64:
            HashFS(self.store, fsync=False).delete(id)


def send(server: Server, endpoint: str, sender: str, bodies: Bodies) -> Reply:
    kind = "form" if endpoint in MULTIPART else "raw"
    if endpoint != "discard":
        bodies.renew(kind)
    ctype = content_type(endpoint)
    path = "/" + endpoint
    if sender == "curl":
        reply = send_curl(server.port, path, ctype, bodies.files[kind])
    else:
        reply = send_python(server.port, path, ctype, bodies.memory[kind])
    if reply.status != 200:
        raise RuntimeError(f"{endpoint} via {sender} on {server.name}: {reply.status}")
    server.forget(reply.body)
    return reply


def small_rate(server: Server, endpoint: str, count: int) -> float:
    """4 KiB multipart uploads per second, each new content, one connection each."""
    ctype = content_type("stream")
    bodies = [multipart(os.urandom(4096)) for _ in range(count)]
    start = time.perf_counter()
    for body in bodies:
        status = send_python(server.port, "/" + endpoint, ctype, body)[1]
        if status != 200:
            raise RuntimeError(f"4 KiB {endpoint} on {server.name}: {status}")
    return count / (time.perf_counter() - start)


def sha256_pass(bodies: Bodies) -> Reply:
    """One sha256 pass over the payload, in this process: what a put cannot beat."""
    start, cpu = time.perf_counter(), time.process_time()
    hashlib.sha256(bodies.memory["raw"]).hexdigest()
    return Reply(time.perf_counter() - start, 200, b"", time.process_time() - cpu)


#: (what, candidate, reference, at least): ratios of throughput, candidate over reference.
TARGETS = (
    ("multipart stream_uploads / put(request.stream)", "stream", "put", 0.8),
    ("multipart stream_uploads / FileStorage.save", "stream", "save", 2.0),
    ("put(request.stream) / discard", "put", "discard", 0.8),
)
CONTEXT = (
    ("put(request.stream) / limit", "put", "limit", 0.0),
    ("multipart stream_uploads / limit", "stream", "limit", 0.0),
    ("multipart put_upload (1.0) / put(request.stream)", "put_upload", "put", 0.0),
    ("multipart stream_uploads / put_upload (1.0)", "stream", "put_upload", 0.0),
)


Runs = dict[tuple[str, str, str], list[Reply]]


def ratios(runs: Runs, key: tuple[str, str, str], reference: tuple[str, str, str]) -> list[float]:
    """Throughput of ``key`` over ``reference``, round by round, by wall time."""
    pairs = zip(runs[key], runs[reference], strict=True)
    return [ref.seconds / run.seconds for run, ref in pairs]


def report(runs: Runs, mib: int, rounds: int) -> None:
    print(f"\n{mib} MiB bodies, {rounds} rounds: median wall time (min-max), the MB/s of")
    print("that median, and the median server CPU time (the worker process, all threads)")
    for (server, endpoint, sender), replies in runs.items():
        seconds = [reply.seconds for reply in replies]
        median = statistics.median(seconds)
        cpu = statistics.median(reply.cpu for reply in replies)
        print(
            f"{server:<9} {sender:<6} {endpoint:<10} {median:>6.3f} s"
            f" ({min(seconds):.3f}-{max(seconds):.3f}) {mib * MiB / median / 1e6:>6.0f} MB/s"
            f"  CPU {cpu:.3f} s"
        )
    print("\nlimit: the slower of discard and one sha256 pass over the payload in this process")
    print("ratio: throughput, the median of the rounds' ratios; by CPU: of the server CPU times")
    for title, targets in (("target", TARGETS), ("context (no goal)", CONTEXT)):
        print(f"\n{title:<48} {'server':<9} {'sender':<6} {'ratio':>6} {'range':>11}  CPU goal")
        for what, candidate, reference, at_least in targets:
            for server in ("durable", "fsync off"):
                for sender in SENDERS:
                    key, ref = (server, candidate, sender), (server, reference, sender)
                    found = ratios(runs, key, ref)
                    ratio = statistics.median(found)
                    by_cpu = statistics.median(r.cpu for r in runs[ref]) / statistics.median(
                        r.cpu for r in runs[key]
                    )
                    line = (
                        f"{what:<48} {server:<9} {sender:<6} {ratio:>5.2f}x"
                        f" {min(found):>5.2f}-{max(found):.2f} {by_cpu:>5.2f}x"
                    )
                    if at_least:
                        verdict = "met" if ratio >= at_least else "MISSED"
                        line += f" {at_least:.1f}x {verdict}"
                    print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--rounds", type=int, default=5, help="rounds over every case [5]")
    parser.add_argument("--mib", type=int, default=256, help="payload size in MiB [256]")
    parser.add_argument("--small", type=int, default=1000, help="4 KiB uploads per case [1000]")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.mib, args.small = 1, 8, 50
    if shutil.which("curl") is None:
        print("missing: curl; install with: apt-get install curl")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="hashfs-bench-uploads-"))
    try:
        with gunicorn(workdir, True) as durable, gunicorn(workdir, False) as fsync_off:
            servers = [Server("durable", *durable), Server("fsync off", *fsync_off)]
            bodies = Bodies(workdir, args.mib * MiB)
            if not args.quick:  # warm up: imports, lazy setup, page cache
                for server in servers:
                    for endpoint in ENDPOINTS:
                        send(server, endpoint, "python", bodies)
            runs: Runs = {}
            for round in range(args.rounds):
                order = ENDPOINTS if round % 2 == 0 else ENDPOINTS[::-1]
                for turn, endpoint in enumerate(order):
                    senders = SENDERS if (round + turn) % 2 == 0 else SENDERS[::-1]
                    for server in servers:
                        for sender in senders:
                            reply = send(server, endpoint, sender, bodies)
                            runs.setdefault((server.name, endpoint, sender), []).append(reply)
                sha256 = sha256_pass(bodies)
                for server in servers:
                    for sender in SENDERS:
                        discard = runs[server.name, "discard", sender][-1]
                        limit = max(sha256, discard, key=lambda reply: reply.seconds)
                        runs.setdefault((server.name, "limit", sender), []).append(limit)
                print(f"round {round + 1} of {args.rounds} done")
            report(runs, args.mib, args.rounds)
            print(f"\n4 KiB multipart uploads, {args.small} per case, Python sender")
            for server in servers:
                rates = {ep: small_rate(server, ep, args.small) for ep in SMALL_ENDPOINTS}
                print(
                    f"{server.name:<9} "
                    + ", ".join(f"{ep} {rate:,.0f}/s" for ep, rate in rates.items())
                    + f"; stream_uploads / discard {rates['stream'] / rates['discard']:.2f}x"
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
