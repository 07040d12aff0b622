"""Serving benchmark: FlaskHashFS's route against ``send_from_directory`` and nginx.

One run, everything on 127.0.0.1. The script writes a 4 KiB and a 1 MiB object into a
fresh store in a temp folder and starts, itself:

- gunicorn (2 sync workers) with a Flask app serving the store through FlaskHashFS's
  route (``HASHFS_SERVE``): the candidate;
- gunicorn (2 sync workers) with a plain Flask view calling ``send_from_directory`` on
  the same folder: the peer a developer would otherwise write;
- gunicorn (2 sync workers) with the FlaskHashFS app answering with ``X-Accel-Redirect``;
- nginx (2 workers) serving the store folder directly (the limit: a plain static
  folder), on a second port serving it through the locations ``flask hashfs
  nginx-config`` generates (the app's headers, without the app), and on a third port
  proxying to that X-Accel app and serving the body from an internal location.

A bare WSGI app (no lookup, no framework) runs under gunicorn and behind nginx the
same way: the floor of what any app can reach on these servers.

wrk loads each case for a bounded time. The cases are run round-robin, ``--repeats``
times, so that the machine's drifting load spreads over all of them alike; the script
prints the median req/s of each case, its spread, the CPU time per request of its
servers (from /proc) and of wrk, and the ratios the targets are about (each the median
of the per-round ratios, which pairs runs made close in time). "By CPU" is the same
ratio estimated from total CPU per request (servers + wrk): on a saturated machine
req/s is inversely proportional to it, and it moves far less with the neighbours' load.
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
import resource
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
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask, Response, send_from_directory

from flask_hashfs import FlaskHashFS, HashFS

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

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


def bare_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The floor: no lookup, no framework, answers fixed by the request alone.

    A 304 for any ``If-None-Match``, else a hand-off of the requested path to nginx. What
    it reaches is the most any app can reach under these servers; how far FlaskHashFS is
    from it is the part of the cost that is the app's.
    """
    if "HTTP_IF_NONE_MATCH" in environ:
        start_response("304 Not Modified", [])
    else:
        key = environ["PATH_INFO"].removeprefix(PREFIX + "/")
        start_response("200 OK", [("X-Accel-Redirect", INTERNAL + key)])
    return []


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
    #: The main process of each server, by name; its workers are its children.
    pids: dict[str, int] = field(default_factory=dict)

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
        self.pids[name] = proc.pid
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

    def gunicorn(self, name: str, app: str, env: Mapping[str, str], path: str) -> str:
        """Start ``app`` (``"factory()"`` or a WSGI callable of this module) under gunicorn;
        return its URL."""
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
            f"{Path(__file__).stem}:{app}",
        ]
        base = f"http://127.0.0.1:{port}"
        self._start(name, argv, env, base + path)
        return base

    def nginx(self, root: Path, generated: str, upstreams: list[str], probe_path: str) -> list[str]:
        """Start nginx: one port serves ``root`` directly; one serves it directly and one
        with the ``generated`` locations, both with an open file cache; one with the
        generated locations without it; then one port per upstream proxies to it and
        serves its X-Accel-Redirect hand-offs. Return their URLs in that order."""
        ports = [free_port() for _ in range(4 + len(upstreams))]
        include = self.workdir / "hashfs.conf"
        include.write_text(generated)
        proxies = CACHED_SERVER.format(
            port=ports[1], locations=f"location {PREFIX}/ {{ alias {root}/; }}"
        )
        proxies += CACHED_SERVER.format(port=ports[2], locations=f"include {include};")
        proxies += GENERATED_SERVER.format(port=ports[3], include=include)
        proxies += "".join(
            PROXY_SERVER.format(
                port=port,
                upstream=upstream.removeprefix("http://"),
                root=root,
                public=PREFIX,
                internal=INTERNAL,
            )
            for port, upstream in zip(ports[4:], upstreams, strict=True)
        )
        prefix = self.workdir / "nginx"
        prefix.mkdir()
        conf = prefix / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                prefix=prefix, root=root, direct=ports[0], public=PREFIX, proxies=proxies
            )
        )
        argv = [str(tool("nginx")), "-p", str(prefix), "-c", str(conf)]
        argv += ["-e", str(prefix / "error.log")]
        self._start("nginx", argv, {}, f"http://127.0.0.1:{ports[0]}{probe_path}")
        return [f"http://127.0.0.1:{port}" for port in ports]


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by ``pid`` and every live descendant.

    On a shared machine req/s swing with the neighbours' load; the CPU a server spends
    per request swings much less, so it is the steadier figure of the work it does.
    """
    stats = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = Path(entry.path, "stat").read_text().rpartition(")")[2].split()
                stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += stats.get(current, (0, 0))[1]
        todo += [child for child, (parent, _) in stats.items() if parent == current]
    return total / _TICK


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
pcre_jit on;
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
{proxies}}}
"""
#: docs/production.md's include of what ``flask hashfs nginx-config`` prints.
GENERATED_SERVER = """\
    server {{
        listen 127.0.0.1:{port};
        include {include};
    }}
"""
#: The generated config refuses symlinks (as the app does): without a cache nginx then
#: opens every folder of the path on each request. docs/production.md recommends the
#: cache, which keeps those checks too; plain nginx is measured with the same cache.
CACHED_SERVER = """\
    server {{
        listen 127.0.0.1:{port};
        open_file_cache max=1000 inactive=60s;
        {locations}
    }}
"""
#: The production block of docs/production.md: the hand-off, with the app's headers kept.
PROXY_SERVER = """\
    server {{
        listen 127.0.0.1:{port};
        location {public}/ {{
            proxy_pass http://{upstream};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
        location {internal} {{
            internal;
            alias {root}/;
            etag off;
            add_header ETag $upstream_http_etag always;
            add_header X-Content-Type-Options $upstream_http_x_content_type_options always;
            add_header Content-Security-Policy $upstream_http_content_security_policy always;
        }}
    }}
"""


# -- load and report --------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    url: str
    #: The servers that work on this case, whose CPU time is charged to it.
    servers: tuple[str, ...]
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    rate: float
    #: CPU microseconds per request spent by the case's servers, and by wrk.
    cpu_us: float
    wrk_cpu_us: float


@dataclass(frozen=True)
class Load:
    duration: int
    connections: int
    threads: int


_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_COUNT = re.compile(r"^\s*(\d+) requests in", re.MULTILINE)
_BAD = re.compile(r"^\s*(Non-2xx or 3xx responses|Socket errors):.*$", re.MULTILINE)


def wrk(case: Case, load: Load, pids: Mapping[str, int]) -> Run:
    """One bounded wrk run: req/s, and the servers' CPU microseconds per request.

    A failed request fails the benchmark.
    """
    argv = [
        str(tool("wrk")),
        f"--threads={load.threads}",
        f"--connections={load.connections}",
        f"--duration={load.duration}s",
        "--timeout=5s",
    ]
    for name, value in case.headers.items():
        argv += ["--header", f"{name}: {value}"]
    cpu_before = sum(cpu_seconds(pids[name]) for name in case.servers)
    wrk_before = _children_cpu_seconds()
    out = subprocess.run(
        [*argv, case.url], capture_output=True, text=True, check=True, timeout=load.duration + 60
    ).stdout
    wrk_cpu = _children_cpu_seconds() - wrk_before
    cpu = sum(cpu_seconds(pids[name]) for name in case.servers) - cpu_before
    bad = _BAD.search(out)
    # gunicorn's sync workers close each connection; wrk counts nothing wrong with that.
    if bad is not None:
        raise RuntimeError(f"{case.name}: {bad.group(0).strip()}\n{out}")
    rate, count = _RATE.search(out), _COUNT.search(out)
    if rate is None or count is None or not int(count.group(1)):
        raise RuntimeError(f"{case.name}: no requests in wrk's output:\n{out}")
    requests = int(count.group(1))
    return Run(float(rate.group(1)), cpu / requests * 1e6, wrk_cpu / requests * 1e6)


def _children_cpu_seconds() -> float:
    """CPU time of the children this process has waited for: wrk's, around one run."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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


def check_same_headers(url: str, reference: str) -> None:
    """The generated config must measure nginx sending what the app sends."""
    hop = {"date", "server", "connection", "keep-alive"}
    got, expected = (
        {k.lower(): v for k, v in fetch(u)[1].items() if k.lower() not in hop}
        for u in (url, reference)
    )
    if got != expected:
        raise RuntimeError(f"{url}: other headers than the app's: {got} != {expected}")


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
    #: Met only if the ratio by CPU is at least as high too.
    by_cpu_too: bool = False


TARGETS = (
    Target("4 KiB 200: hashfs / send_from_directory", "hashfs 4K 200", "sfd 4K 200", 1.5),
    Target("4 KiB 304: hashfs / send_from_directory", "hashfs 4K 304", "sfd 4K 304", 2.0),
    Target("1 MiB: nginx+X-Accel / nginx direct", "x-accel 1M 200", "nginx 1M 200", 0.8),
    Target(
        "4 KiB: generated / nginx, file cache", "generated 4K cache", "nginx 4K cache", 0.9, True
    ),
    Target(
        "1 MiB: generated / nginx, file cache", "generated 1M cache", "nginx 1M cache", 0.9, True
    ),
)
#: Not targets: how close each path is to what the servers allow any app (``bare_app``).
FLOORS = (
    Target("4 KiB 304: hashfs / bare app", "hashfs 4K 304", "bare 304", 0.0),
    Target("1 MiB X-Accel: hashfs / bare app", "x-accel 1M 200", "bare x-accel 1M", 0.0),
    Target("1 MiB X-Accel: bare app / nginx direct", "bare x-accel 1M", "nginx 1M 200", 0.0),
    Target("4 KiB, no file cache: generated / nginx", "generated 4K 200", "nginx 4K 200", 0.0),
)


def report(cases: list[Case], runs: dict[str, list[Run]], load: Load) -> None:
    rounds = len(runs[cases[0].name])
    print(
        f"\n{rounds} rounds x {load.duration} s per case; wrk {load.threads} threads,"
        f" {load.connections} connections"
    )
    print(
        f"{'case':<18} {'req/s':>8} {'min':>8} {'max':>8} {'spread':>7}"
        f" {'CPU/req: servers':>17} {'wrk':>7}"
    )
    for case in cases:
        rates = [run.rate for run in runs[case.name]]
        median = statistics.median(rates)
        spread = (max(rates) - min(rates)) / median
        cpu = statistics.median(run.cpu_us for run in runs[case.name])
        wrk_cpu = statistics.median(run.wrk_cpu_us for run in runs[case.name])
        print(
            f"{case.name:<18} {median:>8.0f} {min(rates):>8.0f} {max(rates):>8.0f}"
            f" {spread:>6.0%} {cpu:>14.0f} us {wrk_cpu:>4.0f} us"
        )
    for title, targets in (("target", TARGETS), ("context (no goal)", FLOORS)):
        print(f"\n{title:<42} {'ratio':>6} {'range':>11} {'by CPU':>7} {'goal':>6}")
        for target in targets:
            pairs = list(zip(runs[target.candidate], runs[target.reference], strict=True))
            ratios = [candidate.rate / reference.rate for candidate, reference in pairs]
            ratio = statistics.median(ratios)
            by_cpu = statistics.median(
                (reference.cpu_us + reference.wrk_cpu_us)
                / (candidate.cpu_us + candidate.wrk_cpu_us)
                for candidate, reference in pairs
            )
            line = (
                f"{target.what:<42} {ratio:>5.2f}x {min(ratios):>5.2f}-{max(ratios):.2f}"
                f" {by_cpu:>6.2f}x"
            )
            if target.at_least:
                met = ratio >= target.at_least
                if target.by_cpu_too:
                    met = met and by_cpu >= target.at_least
                verdict = "met" if met else "MISSED"
                line += f" {target.at_least:>5.1f}x  {verdict}"
            print(line)


# -- the run ----------------------------------------------------------------------------


#: Debian installs nginx in /usr/sbin, which a user's PATH often lacks.
TOOL_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def tool(name: str) -> str | None:
    return shutil.which(name, path=TOOL_PATH)


def build_store(root: Path) -> tuple[str, str, str]:
    """Store one 4 KiB and one 1 MiB object; return their URL paths under ``PREFIX``,
    and the nginx config ``flask hashfs nginx-config`` prints for the store."""
    store = HashFS(root, fsync=False)
    small = store.put(io.BytesIO(_content(SMALL)), ".jpg")
    large = store.put(io.BytesIO(_content(LARGE)), ".jpg")
    os.environ[ROOT_ENV] = str(root)
    app = hashfs_app()
    generated = app.test_cli_runner().invoke(args=["hashfs", "nginx-config"])
    if generated.exit_code != 0:
        raise RuntimeError(f"flask hashfs nginx-config failed:\n{generated.output}")
    with app.test_request_context():
        fs: FlaskHashFS = app.extensions["hashfs"]
        small_path = fs.url_for(small.relpath, external=False)
        return small_path, fs.url_for(large.relpath, external=False), generated.output


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
        small, large, generated_config = build_store(root)
        env = {ROOT_ENV: str(root)}
        hashfs = servers.gunicorn("hashfs", "hashfs_app()", env, small)
        peer = servers.gunicorn("sfd", "peer_app()", env, small)
        accel_app = servers.gunicorn(
            "x-accel-app", "hashfs_app()", {**env, ACCEL_ENV: INTERNAL}, small
        )
        bare = servers.gunicorn("bare", "bare_app", env, PREFIX + "/")
        direct, cached, generated_cached, generated, accel, bare_accel = servers.nginx(
            root, generated_config, [accel_app, bare], small
        )
        hashfs_etag, peer_etag = etag_of(hashfs + small), etag_of(peer + small)
        cases = [
            Case("sfd 4K 200", peer + small, ("sfd",)),
            Case("hashfs 4K 200", hashfs + small, ("hashfs",)),
            Case("nginx 4K 200", direct + small, ("nginx",)),
            Case("generated 4K 200", generated + small, ("nginx",)),
            Case("nginx 4K cache", cached + small, ("nginx",)),
            Case("generated 4K cache", generated_cached + small, ("nginx",)),
            Case("sfd 4K 304", peer + small, ("sfd",), {"If-None-Match": peer_etag}),
            Case("hashfs 4K 304", hashfs + small, ("hashfs",), {"If-None-Match": hashfs_etag}),
            Case("bare 304", bare + small, ("bare",), {"If-None-Match": '"any"'}),
            Case("nginx 1M 200", direct + large, ("nginx",)),
            Case("nginx 1M cache", cached + large, ("nginx",)),
            Case("generated 1M cache", generated_cached + large, ("nginx",)),
            Case("x-accel 1M 200", accel + large, ("nginx", "x-accel-app")),
            Case("bare x-accel 1M", bare_accel + large, ("nginx", "bare")),
        ]
        check_handoff(accel_app + large)
        if fetch(accel + large)[1].get("ETag") != etag_of(hashfs + large):
            raise RuntimeError("nginx did not keep the app's ETag on the X-Accel hand-off")
        check_handoff(bare + large)
        for path in (small, large):
            check_same_headers(generated + path, hashfs + path)
            check_same_headers(generated_cached + path, hashfs + path)
        for case in cases:
            size = LARGE if "1M" in case.name else SMALL
            check(case, 304 if "304" in case.name else 200, 0 if "304" in case.name else size)
        for case in cases:  # warm up: imports, page cache, lazy setup in each worker
            wrk(case, Load(1, load.connections, load.threads), servers.pids)
        runs: dict[str, list[Run]] = {case.name: [] for case in cases}
        for round in range(1, args.repeats + 1):
            for case in cases:
                run = wrk(case, load, servers.pids)
                runs[case.name].append(run)
                print(
                    f"round {round}: {case.name:<18} {run.rate:>8.0f} req/s, CPU/req:"
                    f" servers {run.cpu_us:>4.0f} us, wrk {run.wrk_cpu_us:>4.0f} us"
                )
        report(cases, runs, load)
    return 0


if __name__ == "__main__":
    sys.exit(main())
