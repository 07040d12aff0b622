"""Serving benchmark: FlaskHashFS's route against ``send_from_directory`` and nginx.

One run, everything on 127.0.0.1. The script writes a 4 KiB and a 1 MiB object into a
fresh store in a temp folder and starts, itself:

- gunicorn (2 sync workers) with a Flask app serving the store through FlaskHashFS's
  route (``HASHFS_SERVE``): the candidate;
- gunicorn (2 sync workers) with a plain Flask view calling ``send_from_directory`` on
  the same folder: the peer a developer would otherwise write;
- gunicorn (2 sync workers) with the FlaskHashFS app answering with ``X-Accel-Redirect``;
- nginx (2 workers) serving the store folder directly (the limit) and, on a second port,
  proxying to that X-Accel app and serving the body from an internal location.

wrk loads each case for a bounded time. The cases are run round-robin, ``--repeats``
times, so that the machine's drifting load spreads over all of them alike; the script
prints the median req/s of each case, its spread, and the ratios the targets are about
(each ratio is the median of the per-round ratios, which pairs runs made close in time).
Every server is stopped and the temp folder removed on the way out, whatever happens.

Run it with ``make bench-serving``; it needs the Debian packages ``nginx`` and ``wrk``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask, Response, send_from_directory

from flask_hashfs import FlaskHashFS, HashFS

SMALL = 4 * 1024
LARGE = 1024 * 1024
PREFIX = "/uploads"
#: nginx's internal location the X-Accel app points at; it aliases the store's root.
INTERNAL = "/_hashfs_internal/"
ROOT_ENV = "HASHFS_BENCH_ROOT"
ACCEL_ENV = "HASHFS_BENCH_ACCEL"


# -- the apps gunicorn runs (it imports this module: see Servers.gunicorn) --------------


def hashfs_app() -> Flask:
    """The candidate: FlaskHashFS's own route; with ``ACCEL_ENV`` set, via X-Accel-Redirect."""
    app = Flask(__name__)
    app.config.update(
        HASHFS_ROOT_FOLDER=os.environ[ROOT_ENV],
        HASHFS_PATH_PREFIX=PREFIX,
        HASHFS_SERVE=True,
    )
    if os.environ.get(ACCEL_ENV):
        app.config["HASHFS_X_ACCEL_REDIRECT"] = os.environ[ACCEL_ENV]
    FlaskHashFS(app)
    return app


def peer_app() -> Flask:
    """The peer: the view a developer writes by hand, with Flask's defaults."""
    app = Flask(__name__)
    root = os.environ[ROOT_ENV]

    @app.get(f"{PREFIX}/<path:filename>")
    def uploads(filename: str) -> Response:
        return send_from_directory(root, filename)

    return app


# -- starting and stopping servers ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def fetch(url: str, headers: Mapping[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One GET; any status (304 and 4xx included) comes back instead of raising."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@dataclass
class Servers:
    """Starts servers in their own process groups and stops every one of them at exit."""

    workdir: Path
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stack.close()

    def _start(self, name: str, argv: list[str], env: Mapping[str, str], probe: str) -> None:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 (closed by the stack)
        self.stack.callback(log.close)
        proc = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.stack.callback(stop, proc)
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited at start:\n{self.log_of(name)}")
            with contextlib.suppress(OSError):
                if fetch(probe)[0] == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer {probe} in 30 s:\n{self.log_of(name)}")
            time.sleep(0.1)

    def log_of(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")[-4000:]

    def gunicorn(self, name: str, factory: str, env: Mapping[str, str], path: str) -> str:
        """Start ``factory`` (a function of this module) under gunicorn; return its URL."""
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers=2",
            "--worker-class=sync",
            f"--bind=127.0.0.1:{port}",
            f"--pythonpath={Path(__file__).resolve().parent}",
            f"--worker-tmp-dir={self.workdir}",
            "--log-level=warning",
            f"{Path(__file__).stem}:{factory}()",
        ]
        base = f"http://127.0.0.1:{port}"
        self._start(name, argv, env, base + path)
        return base

    def nginx(self, root: Path, accel_upstream: str, probe_path: str) -> tuple[str, str]:
        """Start nginx: one port serves ``root`` directly, one proxies with X-Accel."""
        direct, accel = free_port(), free_port()
        prefix = self.workdir / "nginx"
        prefix.mkdir()
        conf = prefix / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                prefix=prefix,
                root=root,
                direct=direct,
                accel=accel,
                upstream=accel_upstream.removeprefix("http://"),
                public=PREFIX,
                internal=INTERNAL,
            )
        )
        argv = [
            str(tool("nginx")),
            "-p",
            str(prefix),
            "-c",
            str(conf),
            "-e",
            str(prefix / "error.log"),
        ]
        self._start("nginx", argv, {}, f"http://127.0.0.1:{direct}{probe_path}")
        return f"http://127.0.0.1:{direct}", f"http://127.0.0.1:{accel}"


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT is a quick shutdown for both gunicorn and nginx; kill the group if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


NGINX_CONF = """\
daemon off;
worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types {{ image/jpeg jpg; }}
    default_type application/octet-stream;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{direct};
        location {public}/ {{ alias {root}/; }}
    }}
    server {{
        listen 127.0.0.1:{accel};
        location {public}/ {{ proxy_pass http://{upstream}; }}
        location {internal} {{ internal; alias {root}/; }}
    }}
}}
"""


# -- load and report --------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Load:
    duration: int
    connections: int
    threads: int


_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_BAD = re.compile(r"^\s*(Non-2xx or 3xx responses|Socket errors):.*$", re.MULTILINE)


def wrk(case: Case, load: Load) -> float:
    """Requests per second of one bounded wrk run; a failed request fails the benchmark."""
    argv = [
        str(tool("wrk")),
        f"--threads={load.threads}",
        f"--connections={load.connections}",
        f"--duration={load.duration}s",
        "--timeout=5s",
    ]
    for name, value in case.headers.items():
        argv += ["--header", f"{name}: {value}"]
    out = subprocess.run(
        [*argv, case.url], capture_output=True, text=True, check=True, timeout=load.duration + 60
    ).stdout
    bad = _BAD.search(out)
    # gunicorn's sync workers close each connection; wrk counts nothing wrong with that.
    if bad is not None:
        raise RuntimeError(f"{case.name}: {bad.group(0).strip()}\n{out}")
    match = _RATE.search(out)
    if match is None:
        raise RuntimeError(f"{case.name}: no rate in wrk's output:\n{out}")
    return float(match.group(1))


def check(case: Case, status: int, length: int) -> None:
    """Before timing anything, make sure each case answers what it claims to measure."""
    got, _, body = fetch(case.url, case.headers)
    if got != status or len(body) != length:
        raise RuntimeError(f"{case.name}: expected {status} with {length} bytes, got {got}")


def check_handoff(url: str) -> None:
    """The X-Accel case must measure nginx sending the body, not the app."""
    status, headers, body = fetch(url)
    if status != 200 or "X-Accel-Redirect" not in headers or body:
        raise RuntimeError(f"{url}: the app did not hand the body to nginx (status {status})")


def etag_of(url: str) -> str:
    status, headers, _ = fetch(url)
    etag = headers.get("ETag")
    if status != 200 or not etag:
        raise RuntimeError(f"{url}: no ETag on a 200 (status {status})")
    return etag


@dataclass(frozen=True)
class Target:
    what: str
    candidate: str
    reference: str
    at_least: float


TARGETS = (
    Target("4 KiB 200: hashfs / send_from_directory", "hashfs 4K 200", "sfd 4K 200", 1.5),
    Target("4 KiB 304: hashfs / send_from_directory", "hashfs 4K 304", "sfd 4K 304", 2.0),
    Target("1 MiB: nginx+X-Accel / nginx direct", "x-accel 1M 200", "nginx 1M 200", 0.8),
)


def report(cases: list[Case], rates: dict[str, list[float]], load: Load) -> None:
    runs = len(next(iter(rates.values())))
    print(
        f"\n{runs} rounds x {load.duration} s per case; wrk {load.threads} threads,"
        f" {load.connections} connections; req/s"
    )
    print(f"{'case':<16} {'median':>9} {'min':>9} {'max':>9} {'spread':>7}")
    for case in cases:
        values = rates[case.name]
        median = statistics.median(values)
        spread = (max(values) - min(values)) / median if median else 0.0
        print(
            f"{case.name:<16} {median:>9.0f} {min(values):>9.0f} {max(values):>9.0f} {spread:>6.0%}"
        )
    print(f"\n{'target':<42} {'ratio':>6} {'range':>13} {'goal':>6}")
    for target in TARGETS:
        pairs = zip(rates[target.candidate], rates[target.reference], strict=True)
        ratios = [c / r for c, r in pairs]
        ratio = statistics.median(ratios)
        verdict = "met" if ratio >= target.at_least else "MISSED"
        span = f"{min(ratios):.2f}-{max(ratios):.2f}"
        print(f"{target.what:<42} {ratio:>5.2f}x {span:>13} {target.at_least:>5.1f}x  {verdict}")


# -- the run ----------------------------------------------------------------------------


#: Debian installs nginx in /usr/sbin, which a user's PATH often lacks.
TOOL_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def tool(name: str) -> str | None:
    return shutil.which(name, path=TOOL_PATH)


def build_store(root: Path) -> tuple[str, str]:
    """Store one 4 KiB and one 1 MiB object; return their URL paths under ``PREFIX``."""
    store = HashFS(root, fsync=False)
    small = store.put(io.BytesIO(_content(SMALL)), ".jpg")
    large = store.put(io.BytesIO(_content(LARGE)), ".jpg")
    os.environ[ROOT_ENV] = str(root)
    app = hashfs_app()
    with app.test_request_context():
        fs: FlaskHashFS = app.extensions["hashfs"]
        return fs.url_for(small.relpath, external=False), fs.url_for(large.relpath, external=False)


def _content(size: int) -> bytes:
    """Incompressible, reproducible bytes."""
    return random.Random(size).randbytes(size)


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hashfs-bench-serving-"))
    try:
        # nginx's workers drop root privileges: let them read the store.
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run [5]")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over every case [3]")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections [16]")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads [2]")
    args = parser.parse_args()
    missing = [name for name in ("nginx", "wrk") if tool(name) is None]
    if missing:
        print(f"missing: {' '.join(missing)}; install with: apt-get install {' '.join(missing)}")
        return 2
    load = Load(args.duration, args.connections, args.threads)
    with workdir() as tmp, Servers(tmp) as servers:
        root = tmp / "store"
        small, large = build_store(root)
        env = {ROOT_ENV: str(root)}
        hashfs = servers.gunicorn("hashfs", "hashfs_app", env, small)
        peer = servers.gunicorn("sfd", "peer_app", env, small)
        accel_app = servers.gunicorn(
            "x-accel-app", "hashfs_app", {**env, ACCEL_ENV: INTERNAL}, small
        )
        direct, accel = servers.nginx(root, accel_app, small)
        cases = [
            Case("sfd 4K 200", peer + small),
            Case("hashfs 4K 200", hashfs + small),
            Case("nginx 4K 200", direct + small),
            Case("sfd 4K 304", peer + small, {"If-None-Match": etag_of(peer + small)}),
            Case("hashfs 4K 304", hashfs + small, {"If-None-Match": etag_of(hashfs + small)}),
            Case("nginx 1M 200", direct + large),
            Case("x-accel 1M 200", accel + large),
        ]
        check_handoff(accel_app + large)
        for case in cases:
            size = LARGE if "1M" in case.name else SMALL
            check(case, 304 if "304" in case.name else 200, 0 if "304" in case.name else size)
        for case in cases:  # warm up: imports, page cache, lazy setup in each worker
            wrk(case, Load(1, load.connections, load.threads))
        rates: dict[str, list[float]] = {case.name: [] for case in cases}
        for round in range(1, args.repeats + 1):
            for case in cases:
                rates[case.name].append(wrk(case, load))
                print(f"round {round}: {case.name:<16} {rates[case.name][-1]:>9.0f} req/s")
        report(cases, rates, load)
    return 0


if __name__ == "__main__":
    sys.exit(main())
