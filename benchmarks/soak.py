"""Soak: a real server under mixed load while things fail, and a check that nothing is lost.

Run ``make soak`` (5 minutes; ``SOAK_SECONDS`` to change it) or ``make soak-s3``. It
starts everything itself on 127.0.0.1 and stops everything at the end:

- gunicorn with 4 sync workers running ``soak_app.py`` (the extension with serving on),
  on a store root on a tmpfs of its own (``--disk-mib``, mounted for the run: it needs
  root), or on a SeaweedFS bucket with ``--s3``;
- client processes: uploaders (0 B to 64 MiB, 30% duplicates, some bodies aborted
  halfway, some names and types refused on purpose), readers (GET, HEAD, ranges,
  conditional requests, hostile URLs), a deleter, and a sweeper (``HashFS.sweep`` with
  the ledger as the live set, as ``flask hashfs gc`` would run);
- faults on a schedule: SIGKILL of a random worker; the disk filled up and freed again
  (local); fsync failing with EIO in one worker (local, through ``soak_app``'s hook);
  slow clients trickling a body; the S3 server killed and restarted (``--s3``).

Every acknowledged upload goes into a ledger (its id, the sha256 of the bytes sent,
whether the soak deleted it since). At the end every acknowledged, undeleted upload is
downloaded and compared, ``flask hashfs verify`` runs, temp files are looked for, and the
workers' open files and memory are read from /proc. It prints one table and exits with
status 1 if a figure that must be 0 is not.

Deletes only ever remove content that no other upload of the soak sent (duplicates are
drawn from a pool that is never deleted): a delete racing a duplicate upload of the same
bytes is the lifecycle's business (claims and a sweep with a grace period), not a loss.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import multiprocessing
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flask_hashfs.layout import Layout
from tests.s3_server import BUCKET, WeedMini

HERE = Path(__file__).resolve().parent

KiB, MiB = 1 << 10, 1 << 20
WORKERS = 4
#: How often the sweeper runs, and the grace it gives: every acknowledged upload's ledger
#: line is written within milliseconds of its answer, far within the grace.
SWEEP_EVERY = 10.0
SWEEP_GRACE = 10.0
#: Memory a worker may hold at the end: a 64 MiB upload passes through in 2 MiB chunks.
RSS_BOUND_MIB = 200
PREFIX = "/uploads"
LAYOUT = Layout(4, 1, "sha256")
#: Content for duplicates: (seed, size) pairs every client can make again; never deleted.
POOL = [(seed, size) for seed, size in enumerate([0, 1, 17, 512, 4 * KiB, 60 * KiB])] + [
    (100 + i, size) for i, size in enumerate([300 * KiB, 1 * MiB, 5 * MiB, 64 * MiB])
]
HOSTILE = [
    "/uploads/../../../../etc/passwd",
    "/uploads/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/uploads/..%2f..%2f..%2fetc%2fpasswd",
    "/uploads/a/b/c/d/../../../../../../etc/passwd",
    "/uploads/.hashfs-tmp-0123",
    "/uploads/.hashfs/claims/x",
    "/uploads/" + "a" * 4000,
    "/uploads/%00",
    "/uploads//etc/passwd",
    "/uploads/\\..\\..\\etc\\passwd",
]


# -- plain HTTP on 127.0.0.1 ------------------------------------------------------------


@dataclass
class Reply:
    status: int  # 0: the connection failed or was dropped
    headers: dict[str, str]
    body: bytes
    error: str = ""


def call(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 120,
) -> Reply:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        # A server that answers before reading it all (a refusal) resets the rest: the
        # answer may still be there to read.
        with contextlib.suppress(OSError):
            connection.endheaders(body)
        response = connection.getresponse()
        return Reply(response.status, dict(response.headers), response.read())
    except (OSError, http.client.HTTPException) as exc:
        return Reply(0, {}, b"", f"{type(exc).__name__}: {exc}")
    finally:
        connection.close()


def key_of(id: str, extension: str) -> str:
    return LAYOUT.key(id, extension)


# -- what clients write down ------------------------------------------------------------


class Journal:
    """One JSON line per request or ledger entry, in a file of this process's own: a
    killed or stuck client loses nothing already written."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "a", buffering=1)  # noqa: SIM115

    def write(self, **entry: Any) -> None:
        self._file.write(json.dumps(entry) + "\n")

    def timed(self, kind: str, request: Callable[[], Reply], **extra: Any) -> Reply:
        start = time.time()
        reply = request()
        self.write(
            kind=kind,
            status=reply.status,
            t0=start,
            t1=time.time(),
            fault=reply.headers.get("X-Soak-Fault", ""),
            retry=reply.headers.get("Retry-After", ""),
            error=reply.error,
            **extra,
        )
        return reply


def read_lines(folder: Path, pattern: str) -> Iterator[dict[str, Any]]:
    for path in sorted(folder.glob(pattern)):
        with open(path) as handle:
            for line in handle:
                if line.endswith("\n"):
                    yield json.loads(line)


def pool_body(index: int) -> bytes:
    seed, size = POOL[index]
    return random.Random(seed).randbytes(size)


# -- clients ---------------------------------------------------------------------------


@dataclass
class Plan:
    """What every process of one run needs to know."""

    port: int
    work: Path
    deadline: float
    seconds: float
    timeout: int
    budget: int  # bytes of deletable content the deleter keeps the store under
    s3: bool


def unique_size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.45:
        return int(2 ** rng.uniform(0, 12))
    if roll < 0.85:
        return int(2 ** rng.uniform(12, 18))
    if roll < 0.985:
        return int(2 ** rng.uniform(18, 23))
    return min(64 * MiB, int(2 ** rng.uniform(23, 26.01)))


def uploader(plan: Plan, number: int) -> None:
    rng = random.Random(number)
    journal = Journal(plan.work / f"records-upload{number}.jsonl")
    ledger = Journal(plan.work / f"ledger-{number}.jsonl")
    while time.time() < plan.deadline:
        roll = rng.random()
        if roll < 0.05:
            refused_upload(plan, rng, journal)
        elif roll < 0.09:
            aborted_upload(plan, rng, journal)
        else:
            upload(plan, rng, journal, ledger, number)


def upload(plan: Plan, rng: random.Random, journal: Journal, ledger: Journal, who: int) -> None:
    duplicate = rng.random() < 0.3
    if duplicate:
        index = rng.randrange(len(POOL))
        if POOL[index][1] > 8 * MiB and rng.random() < 0.8:
            index = 0  # the largest pool body now and then, not a third of the time
        body = pool_body(index)
    else:
        body = os.urandom(unique_size(rng))
    extension = rng.choice([".bin", ".bin", ".txt", ".json"])
    sha = hashlib.sha256(body).hexdigest()
    reply = journal.timed(
        "upload",
        lambda: call(plan.port, "POST", f"/upload?name=u{extension}", body),
        size=len(body),
        sha=sha,
        extension=extension,
    )
    if reply.status == 201:
        answer = json.loads(reply.body)
        ledger.write(
            id=answer["id"],
            relpath=answer["relpath"],
            sha=sha,
            size=len(body),
            unique=not duplicate,
            t=time.time(),
            who=who,
        )
    elif reply.status == 507 and b"no space left" not in reply.body:
        journal.write(kind="unclear-507", status=507, t0=time.time(), t1=time.time())


def refused_upload(plan: Plan, rng: random.Random, journal: Journal) -> None:
    name, body = rng.choice(
        [
            ("setup.exe", b"MZ\x90\x00" + os.urandom(1000)),
            ("photo.png", b"<html><script>alert(1)</script></html>"),
            ("no-extension", b"plain"),
            ("archive.tar%20gz", b"x" * 100),
            ("..%2F..%2Fevil.png", b"GIF89a"),
        ]
    )
    journal.timed("refused", lambda: call(plan.port, "POST", f"/upload?name={name}", body))


def aborted_upload(plan: Plan, rng: random.Random, journal: Journal) -> None:
    """Send half of a body, then go away: half of the time reading the answer first."""
    body = os.urandom(rng.randint(64 * KiB, 4 * MiB))
    half = body[: len(body) // 2]
    start = time.time()
    status, error = 0, ""
    try:
        with socket.create_connection(("127.0.0.1", plan.port), timeout=60) as sock:
            head = f"POST /upload?name=a.bin HTTP/1.1\r\nHost: soak\r\nContent-Length: {len(body)}"
            sock.sendall(head.encode() + b"\r\n\r\n" + half)
            if rng.random() < 0.5:
                sock.shutdown(socket.SHUT_WR)
                answer = sock.recv(64)
                status = int(answer.split()[1]) if answer.startswith(b"HTTP/") else 0
    except OSError as exc:
        error = f"{type(exc).__name__}: {exc}"
    journal.write(
        kind="abort",
        status=status,
        t0=start,
        t1=time.time(),
        fault="",
        error=error,
        half=hashlib.sha256(half).hexdigest(),
    )


class LedgerView:
    """The acknowledged uploads and deletes so far, re-read now and then."""

    def __init__(self, work: Path) -> None:
        self._work = work
        self.entries: list[dict[str, Any]] = []
        self.deleted: set[str] = set()
        self._read = 0.0

    def refresh(self, every: float = 2.0) -> None:
        if time.time() - self._read < every:
            return
        self._read = time.time()
        self.entries = list(read_lines(self._work, "ledger-*.jsonl"))
        self.deleted = {entry["id"] for entry in read_lines(self._work, "deleted.jsonl")}


def reader(plan: Plan, number: int) -> None:
    rng = random.Random(1000 + number)
    journal = Journal(plan.work / f"records-read{number}.jsonl")
    view = LedgerView(plan.work)
    pool = {hashlib.sha256(pool_body(i)).hexdigest(): i for i in range(len(POOL) - 1)}
    while time.time() < plan.deadline:
        view.refresh()
        if not view.entries or rng.random() < 0.12:
            hostile = rng.choice(HOSTILE)
            journal.timed("hostile", lambda: call(plan.port, "GET", hostile), path=hostile)  # noqa: B023
            continue
        entry = rng.choice(view.entries)
        read_one(plan, rng, journal, entry, pool)


def read_one(
    plan: Plan, rng: random.Random, journal: Journal, entry: dict[str, Any], pool: dict[str, int]
) -> None:
    url = PREFIX + "/" + entry["relpath"]
    etag = f'"{entry["id"]}"'
    size = entry["size"]
    roll = rng.random()
    if roll < 0.35 and size <= 8 * MiB:
        reply = journal.timed("get", lambda: call(plan.port, "GET", url), id=entry["id"])
        if reply.status == 200 and hashlib.sha256(reply.body).hexdigest() != entry["sha"]:
            journal.write(kind="corrupt-read", status=200, t0=time.time(), t1=time.time())
    elif roll < 0.55:
        journal.timed("head", lambda: call(plan.port, "HEAD", url), id=entry["id"])
    elif roll < 0.8 and size > 0:
        first = rng.randrange(size)
        last = min(size - 1, first + rng.randrange(256 * KiB))
        headers = {"Range": f"bytes={first}-{last}"}
        if rng.random() < 0.5:
            headers["If-Range"] = etag
        reply = journal.timed(
            "range", lambda: call(plan.port, "GET", url, headers=headers), id=entry["id"]
        )
        index = pool.get(entry["sha"])
        if (
            reply.status == 206
            and index is not None
            and reply.body != pool_body(index)[first : last + 1]
        ):
            journal.write(kind="corrupt-read", status=206, t0=time.time(), t1=time.time())
    else:
        headers = {"If-None-Match": etag}
        journal.timed(
            "conditional", lambda: call(plan.port, "GET", url, headers=headers), id=entry["id"]
        )


def deleter(plan: Plan) -> None:
    """Deletes content only its own upload sent; keeps that under the budget, largest
    first, and otherwise deletes one at random now and then."""
    rng = random.Random(7)
    journal = Journal(plan.work / "records-delete.jsonl")
    deleted = Journal(plan.work / "deleted.jsonl")
    view = LedgerView(plan.work)
    gone: set[str] = set()
    while time.time() < plan.deadline:
        view.refresh(0.5)
        live = {e["id"]: e for e in view.entries if e["unique"] and e["id"] not in gone}
        held = sum(e["size"] for e in live.values())
        if not live:
            time.sleep(0.2)
            continue
        if held > plan.budget:
            victim = max(live.values(), key=lambda e: e["size"])
        elif rng.random() < 0.3:
            victim = rng.choice(list(live.values()))
        else:
            time.sleep(0.2)
            continue
        gone.add(victim["id"])
        deleted.write(id=victim["id"], t=time.time())  # before: a dropped answer may be a delete
        path = f"/objects/{victim['id']}"
        journal.timed("delete", lambda: call(plan.port, "DELETE", path), id=victim["id"])  # noqa: B023


def sweeper(plan: Plan, root: str, storage: dict[str, Any] | None) -> None:
    """Sweeps as a cron job would (``flask hashfs gc``): every few seconds, the ids of
    every acknowledged upload not deleted are the live set, and the grace is short."""
    from flask_hashfs import HashFS, StorageError, http_error

    store = HashFS(root, storage_options=storage)
    journal = Journal(plan.work / "records-sweep.jsonl")
    view = LedgerView(plan.work)

    def live() -> list[str]:
        view.refresh(0)
        return [entry["id"] for entry in view.entries if entry["id"] not in view.deleted]

    while time.time() + SWEEP_EVERY < plan.deadline:
        time.sleep(SWEEP_EVERY)
        start = time.time()
        try:
            report = store.sweep(live, grace=SWEEP_GRACE)
        except StorageError as exc:
            status = http_error(exc).code or 500
            journal.write(kind="sweep", status=status, t0=start, t1=time.time(), error=str(exc))
            continue
        journal.write(
            kind="sweep",
            status=200,
            t0=start,
            t1=time.time(),
            removed=report.removed,
            kept_live=report.kept_live,
            kept_recent=report.kept_recent,
        )


def slow_client(plan: Plan) -> None:
    """Declares 8 MiB and trickles 512 bytes every 0.25 s: how long does a worker wait?"""
    journal = Journal(plan.work / f"records-slow{os.getpid()}.jsonl")
    start = time.time()
    error = ""
    try:
        with socket.create_connection(("127.0.0.1", plan.port), timeout=5) as sock:
            head = f"POST /upload?name=slow.bin HTTP/1.1\r\nHost: soak\r\nContent-Length: {8 * MiB}"
            sock.sendall(head.encode() + b"\r\n\r\n")
            while time.time() - start < 4 * plan.timeout:
                sock.sendall(b"s" * 512)
                time.sleep(0.25)
                sock.setblocking(False)
                try:
                    if sock.recv(1) == b"":
                        break  # the server closed the connection
                    break  # it answered: also done with us
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
    except OSError as exc:
        error = f"{type(exc).__name__}: {exc}"
    held = time.time() - start
    journal.write(kind="slow", status=0, t0=start, t1=start + held, fault="", error=error)


# -- the server and its workers -------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """gunicorn and what the harness reads of its workers in /proc."""

    process: subprocess.Popen[bytes]
    port: int
    env: dict[str, str]

    def workers(self) -> list[int]:
        path = f"/proc/{self.process.pid}/task/{self.process.pid}/children"
        try:
            return [int(pid) for pid in Path(path).read_text().split()]
        except OSError:
            return []

    def answers(self) -> bool:
        return call(self.port, "GET", "/_soak/pid").status == 200

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if (
                len(self.workers()) == WORKERS
                and call(self.port, "GET", "/_soak/pid").status == 200
            ):
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}")
            time.sleep(0.2)
        raise RuntimeError("gunicorn did not answer in time")


def start_server(work: Path, root: str, storage: dict[str, Any] | None, timeout: int) -> Server:
    port = free_port()
    env = dict(
        os.environ,
        HASHFS_SOAK_ROOT=root,
        HASHFS_SOAK_EVENTS=str(work / "server-events.jsonl"),
        PYTHONPATH=str(HERE),
    )
    if storage is not None:
        env["HASHFS_SOAK_STORAGE"] = json.dumps(storage)
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        f"--workers={WORKERS}",
        f"--bind=127.0.0.1:{port}",
        f"--timeout={timeout}",
        "--graceful-timeout=5",
        f"--pythonpath={HERE}",
        f"--error-logfile={work / 'gunicorn.log'}",
        "soak_app:create_app()",
    ]
    with open(work / "gunicorn.out", "ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(process, port, env)
    server.wait_ready()
    return server


def proc_figures(pid: int) -> tuple[int, int, int]:
    """(files and pipes open, sockets open, RSS in bytes) of a live process."""
    files = sockets = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:"):
                sockets += 1
            else:
                files += 1
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0, 0
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return files, sockets, rss * KiB


def warm_up(port: int, rounds: int = 40) -> None:
    """Reach every worker with every kind of request, so that what they open once (the
    store's client, the events file, imports) is open before counting."""
    for i in range(rounds):
        body = f"warm-up {i}".encode()
        reply = call(port, "POST", "/upload?name=w.txt", body)
        if reply.status == 201:
            relpath = json.loads(reply.body)["relpath"]
            call(port, "GET", f"{PREFIX}/{relpath}")
            call(port, "HEAD", f"{PREFIX}/{relpath}")
        call(port, "GET", HOSTILE[0])


def measure(server: Server) -> dict[int, tuple[int, int, int]]:
    return {pid: proc_figures(pid) for pid in server.workers()}


# -- faults ---------------------------------------------------------------------------


@dataclass
class Event:
    kind: str
    t0: float
    t1: float
    detail: str = ""


@dataclass
class Faults:
    """Injects the faults and writes down when each one happened."""

    plan: Plan
    server: Server
    disk: Path | None
    weed: WeedMini | None
    events: list[Event] = field(default_factory=list)
    kills_survived: int = 0
    kills: int = 0
    recoveries_failed: int = 0
    notes: list[str] = field(default_factory=list)

    def kill_worker(self) -> None:
        workers = self.server.workers()
        if not workers:
            return
        victim = random.choice(workers)
        now = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
        self.kills += 1
        self.events.append(Event("kill", now, now, str(victim)))
        deadline = time.time() + 30
        while time.time() < deadline:
            alive = self.server.workers()
            if victim not in alive and len(alive) == WORKERS and self.server.answers():
                self.kills_survived += 1
                return
            time.sleep(0.2)

    def fill_disk(self, hold: float) -> None:
        """Fill the store's file system (and keep it full while the deleter frees space),
        check that an upload is refused with 507 and a clear message, free the space, and
        check that uploads work again."""
        assert self.disk is not None
        start = time.time()
        fillers: list[Path] = []
        refused = False
        answers = []
        # The deleter, the sweeper and running puts free and take space all the time, so
        # the probe goes out only while less than it is free, until one got its answer.
        # Each probe is new content: a probe that got in once would be a duplicate after,
        # a claim that needs no space, and every later answer a 201.
        for _ in range(50):
            self._top_up(fillers)
            probe = os.urandom(256 * KiB)
            stats = os.statvfs(self.disk)
            if stats.f_bavail * stats.f_frsize >= len(probe):
                time.sleep(0.1)
                continue
            reply = call(self.plan.port, "POST", "/upload?name=full.bin", probe)
            refused = reply.status == 507 and b"no space left" in reply.body
            if refused:
                break
            answers.append(f"{reply.status} {reply.error}")
        if not refused:
            self.recoveries_failed += 1
            self.notes.append(f"no 507 on a full disk: {answers or 'never full'}")
        while time.time() - start < hold:
            self._top_up(fillers)
            time.sleep(0.2)
        for filler in fillers:
            filler.unlink()
        self.events.append(Event("disk-full", start, time.time()))
        for _ in range(10):
            probe = os.urandom(256 * KiB)
            reply = call(self.plan.port, "POST", "/upload?name=freed.bin", probe)
            if reply.status == 201:
                return
            time.sleep(0.5)
        self.recoveries_failed += 1
        self.notes.append(f"no upload once space was freed: {reply.status} {reply.error}")

    def _top_up(self, fillers: list[Path]) -> None:
        """Take all but 64 KiB of the free space, in files outside the store's root. A
        fallocate that a concurrent put beats to the space fails whole: try again."""
        assert self.disk is not None
        for margin in range(64 * KiB, 64 * MiB, 256 * KiB):
            stats = os.statvfs(self.disk)
            free = stats.f_bavail * stats.f_frsize - margin
            if free <= 0:
                return
            filler = self.disk / f"filler-{len(fillers)}"
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
            fillers.append(filler)
            try:
                os.posix_fallocate(fd, 0, free)
                return
            except OSError:
                continue
            finally:
                os.close(fd)

    def fail_fsync(self) -> None:
        now = time.time()
        reply = call(self.plan.port, "POST", "/_soak/fsync-fault")
        detail = json.loads(reply.body)["pid"] if reply.status == 200 else reply.error
        self.events.append(Event("fsync-armed", now, now, str(detail)))

    def slow(self) -> None:
        context = multiprocessing.get_context("fork")
        process = context.Process(target=slow_client, args=(self.plan,), daemon=True)
        process.start()
        self.events.append(Event("slow-client", time.time(), time.time()))

    def s3_outage(self, hold: float) -> None:
        assert self.weed is not None
        start = time.time()
        self.weed.stop(kill=True)
        time.sleep(hold)
        self.weed.start()
        self.events.append(Event("s3-outage", start, time.time()))


def schedule(seconds: float, s3: bool) -> list[tuple[float, str]]:
    """When each fault happens, as fractions of the run (compressed for a short run)."""
    plan: list[tuple[float, str]] = []
    kills = 6
    plan += [((i + 0.5) / kills, "kill") for i in range(kills)]
    plan += [(0.2, "slow"), (0.65, "slow")]
    if s3:
        plan += [(0.4, "s3-outage")]
    else:
        plan += [(0.35, "disk-full"), (0.75, "disk-full")]
        plan += [(f, "fsync") for f in (0.15, 0.45, 0.6, 0.85)]
    return sorted((seconds * when, kind) for when, kind in plan)


def run_faults(faults: Faults, seconds: float, started: float) -> None:
    hold = max(5.0, seconds * 0.05)
    actions: dict[str, Callable[[], None]] = {
        "kill": faults.kill_worker,
        "disk-full": lambda: faults.fill_disk(hold),
        "fsync": faults.fail_fsync,
        "slow": faults.slow,
        "s3-outage": lambda: faults.s3_outage(hold),
    }
    for at, kind in schedule(seconds, faults.weed is not None):
        time.sleep(max(0.0, started + at - time.time()))
        if time.time() >= faults.plan.deadline:
            break
        actions[kind]()


# -- the end checks ---------------------------------------------------------------------


@dataclass
class Figures:
    requests: dict[str, dict[str, float]] = field(default_factory=dict)
    injected_5xx: int = 0
    other_5xx: int = 0
    injected_dropped: int = 0
    other_dropped: int = 0
    server_other_5xx: int = 0
    acknowledged: int = 0
    undeleted_checked: int = 0
    lost: int = 0
    corrupt: int = 0
    corrupt_reads: int = 0
    hostile_served: int = 0
    refusals_accepted: int = 0
    partial_stored: int = 0
    published_after_fsync_fault: int = 0
    stored_short: int = 0
    unclear_507: int = 0
    enospc_refusals: int = 0
    recoveries_failed: int = 0
    fsync_faults_fired: int = 0
    worker_kills: int = 0
    kills_survived: int = 0
    slow_clients: int = 0
    slow_held_max: float = 0.0
    slow_over_timeout: int = 0
    s3_outage_503: int = 0
    worker_timeouts: int = 0
    sweeps: int = 0
    swept: int = 0
    no_retry_after: int = 0
    s3_uploads_left: int = 0
    verify_failed: int = 0
    temp_files: int = 0
    fds_start: int = 0
    fds_end: int = 0
    fds_over_baseline: int = 0
    sockets_start: int = 0
    sockets_end: int = 0
    rss_start_mib: float = 0.0
    rss_end_mib: float = 0.0
    rss_over_bound: int = 0
    notes: list[str] = field(default_factory=list)

    MUST_BE_ZERO = (
        "other_5xx",
        "other_dropped",
        "server_other_5xx",
        "lost",
        "corrupt",
        "corrupt_reads",
        "hostile_served",
        "refusals_accepted",
        "partial_stored",
        "published_after_fsync_fault",
        "stored_short",
        "unclear_507",
        "no_retry_after",
        "recoveries_failed",
        "slow_over_timeout",
        "verify_failed",
        "temp_files",
        "fds_over_baseline",
        "rss_over_bound",
    )

    #: Must-be-0 figures that are timings: on a loaded test machine a worker may be held
    #: past its timeout for reasons of its own, so the short soak in ``make test`` leaves
    #: these to the full one.
    TIMINGS = ("slow_over_timeout",)

    def failures(self) -> list[str]:
        return [name for name in self.MUST_BE_ZERO if getattr(self, name)]

    def counted_failures(self) -> dict[str, int]:
        """The failures that count something, with their counts."""
        return {name: getattr(self, name) for name in self.failures() if name not in self.TIMINGS}


def overlaps(record: dict[str, Any], events: list[Event], kind: str, grace: float) -> bool:
    return any(
        e.kind == kind and record["t0"] <= e.t1 + grace and record["t1"] >= e.t0 - 0.05
        for e in events
    )


def injected(record: dict[str, Any], events: list[Event]) -> bool:
    """Whether a 5xx or a dropped connection was caused by a fault the soak injected."""
    status = record["status"]
    if status == 0:
        # A large upload refused with 507 before its body is read: gunicorn closes the
        # connection without draining it, and a client still sending sees a reset.
        full = record["kind"] == "upload" and overlaps(record, events, "disk-full", 1.0)
        # A bucket read starts at the first body byte, after the headers are decided: if
        # the bucket fails then (down, or its volume server still starting), the answer
        # can only be dropped; such drops count as injected up to 30 s after the S3 API
        # answered again, while SeaweedFS's volume server may still be starting.
        return (
            full
            or overlaps(record, events, "kill", 1.0)
            or overlaps(record, events, "s3-outage", 30.0)
        )
    if status == 507:
        return overlaps(record, events, "disk-full", 1.0)
    if status == 503:
        return overlaps(record, events, "s3-outage", 15.0)
    return status == 500 and record.get("fault") == "fsync"


def classify(
    figures: Figures, records: list[dict[str, Any]], events: list[Event], plan: Plan
) -> None:
    latencies: dict[str, list[float]] = defaultdict(list)
    for record in records:
        kind, status = record["kind"], record["status"]
        if kind in ("corrupt-read", "unclear-507"):
            figures.corrupt_reads += kind == "corrupt-read"
            figures.unclear_507 += kind == "unclear-507"
            continue
        if kind == "slow":
            figures.slow_clients += 1
            held = record["t1"] - record["t0"]
            figures.slow_held_max = max(figures.slow_held_max, held)
            figures.slow_over_timeout += held > plan.timeout * 1.5 + 5
            continue
        if kind == "abort":
            continue
        if kind == "sweep" and status == 200:
            figures.sweeps += 1
            figures.swept += record["removed"]
        latencies[kind].append(record["t1"] - record["t0"])
        if kind == "hostile" and status in (200, 206):
            figures.hostile_served += 1
        if kind == "refused" and 200 <= status < 300:
            figures.refusals_accepted += 1
        figures.enospc_refusals += status == 507
        figures.no_retry_after += status == 503 and kind != "sweep" and not record.get("retry")
        if status == 0 or status >= 500:
            cause = injected(record, events)
            figures.s3_outage_503 += status == 503 and cause
            if status == 0:
                figures.injected_dropped += cause
                figures.other_dropped += not cause
            else:
                figures.injected_5xx += cause
                figures.other_5xx += not cause
            if not cause:
                figures.notes.append(f"unexplained: {json.dumps(record)}")
    for kind, values in sorted(latencies.items()):
        values.sort()
        figures.requests[kind] = {
            "count": len(values),
            "p50_ms": 1000 * statistics.median(values),
            "p99_ms": 1000 * values[min(len(values) - 1, int(len(values) * 0.99))],
        }


def check_store(figures: Figures, plan: Plan, records: list[dict[str, Any]]) -> None:
    """Every acknowledged, undeleted upload downloads byte-exact; nothing partial is
    stored under an aborted body's or a failed fsync's address."""
    entries = list(read_lines(plan.work, "ledger-*.jsonl"))
    deleted = {entry["id"] for entry in read_lines(plan.work, "deleted.jsonl")}
    figures.acknowledged = len(entries)
    checked: dict[str, str] = {}
    for entry in entries:
        if entry["id"] != entry["sha"]:
            figures.corrupt += 1
            figures.notes.append(f"acknowledged under another id: {json.dumps(entry)}")
        if entry["id"] in deleted:
            continue
        figures.undeleted_checked += 1
        relpath = entry["relpath"]
        if relpath not in checked:
            reply = call(plan.port, "GET", f"{PREFIX}/{relpath}", timeout=300)
            checked[relpath] = (
                "missing" if reply.status == 404 else hashlib.sha256(reply.body).hexdigest()
            )
            if reply.status not in (200, 404):
                figures.notes.append(f"end check of {relpath}: {reply.status} {reply.error}")
        if checked[relpath] == "missing":
            figures.lost += 1
            figures.notes.append(f"lost: {json.dumps(entry)}")
        elif checked[relpath] != entry["sha"]:
            figures.corrupt += 1
            figures.notes.append(f"corrupt: {json.dumps(entry)}")
    for record in records:
        if record["kind"] == "abort":
            url = f"{PREFIX}/{key_of(record['half'], '.bin')}"
            figures.partial_stored += call(plan.port, "HEAD", url).status != 404
        if record["kind"] == "upload" and record.get("fault") == "fsync":
            figures.fsync_faults_fired += 1
            url = f"{PREFIX}/{key_of(record['sha'], record['extension'])}"
            figures.published_after_fsync_fault += call(plan.port, "HEAD", url).status != 404
    for event in read_lines(plan.work, "server-events.jsonl"):
        if "stored" in event and event["size"] != event["sent"]:
            figures.stored_short += 1
            figures.notes.append(f"stored shorter than sent: {json.dumps(event)}")


def check_leftovers(figures: Figures, server: Server, root: str, weed: WeedMini | None) -> None:
    verify = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "soak_app:create_app()", "hashfs", "verify"],
        env=server.env,
        cwd=HERE,
        capture_output=True,
        text=True,
        check=False,
    )
    figures.verify_failed = int(verify.returncode != 0)
    figures.notes.append("verify: " + (verify.stdout + verify.stderr).strip().splitlines()[-1])
    if weed is None:
        figures.temp_files = sum(name.startswith(".hashfs-tmp-") for name in os.listdir(root))
    else:
        prefix = root.removeprefix(f"s3://{BUCKET}/") + "/"
        uploads = weed.server.client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix)
        figures.s3_uploads_left = len(uploads.get("Uploads", []))


def check_workers(
    figures: Figures,
    start: dict[int, tuple[int, int, int]],
    end: dict[int, tuple[int, int, int]],
) -> None:
    figures.fds_start = max(files for files, _, _ in start.values())
    figures.fds_end = max(files for files, _, _ in end.values())
    figures.sockets_start = max(sockets for _, sockets, _ in start.values())
    figures.sockets_end = max(sockets for _, sockets, _ in end.values())
    figures.fds_over_baseline = max(0, figures.fds_end - figures.fds_start)
    figures.rss_start_mib = max(rss for _, _, rss in start.values()) / MiB
    figures.rss_end_mib = max(rss for _, _, rss in end.values()) / MiB
    figures.rss_over_bound = sum(rss > RSS_BOUND_MIB * MiB for _, _, rss in end.values())


# -- the report ------------------------------------------------------------------------


def report(figures: Figures, plan: Plan, wall: float) -> str:
    lines = [
        f"soak: {'S3 (SeaweedFS)' if plan.s3 else 'local tmpfs'} store, {WORKERS} gunicorn"
        f" workers, {wall:.0f} s of load, worker timeout {plan.timeout} s",
        "",
        f"{'requests':<14}{'count':>8}{'p50 ms':>10}{'p99 ms':>10}",
    ]
    for kind, row in figures.requests.items():
        lines.append(f"{kind:<14}{row['count']:>8.0f}{row['p50_ms']:>10.1f}{row['p99_ms']:>10.1f}")
    f = figures
    rows: list[tuple[str, object, bool]] = [
        ("5xx caused by injected faults", f.injected_5xx, False),
        ("5xx otherwise", f.other_5xx, True),
        ("  of which 503 during the S3 outage", f.s3_outage_503, False),
        ("  503 without Retry-After", f.no_retry_after, True),
        ("dropped connections, killed workers", f.injected_dropped, False),
        ("dropped connections otherwise", f.other_dropped, True),
        ("server-side 5xx not injected", f.server_other_5xx, True),
        ("acknowledged uploads", f.acknowledged, False),
        ("  undeleted, downloaded and compared", f.undeleted_checked, False),
        ("lost", f.lost, True),
        ("corrupt", f.corrupt, True),
        ("corrupt reads during the run", f.corrupt_reads, True),
        ("hostile URLs served", f.hostile_served, True),
        ("refused uploads accepted", f.refusals_accepted, True),
        ("aborted bodies stored in part", f.partial_stored, True),
        ("stored shorter than sent", f.stored_short, True),
        ("ENOSPC refusals (507)", f.enospc_refusals, False),
        ("  507 without a clear message", f.unclear_507, True),
        ("  no 507 when full, or no recovery", f.recoveries_failed, True),
        ("fsync faults fired (500)", f.fsync_faults_fired, False),
        ("  published after an fsync fault", f.published_after_fsync_fault, True),
        ("sweeps / objects they removed", f"{f.sweeps} / {f.swept}", False),
        ("worker kills / survived", f"{f.worker_kills} / {f.kills_survived}", False),
        ("slow clients / longest hold s", f"{f.slow_clients} / {f.slow_held_max:.1f}", False),
        ("  held past the timeout", f.slow_over_timeout, True),
        ("worker timeouts (gunicorn's log)", f.worker_timeouts, False),
        ("verify failed", f.verify_failed, True),
        ("leftover temp files", f.temp_files, True),
        ("S3 multipart uploads left (killed puts)", f.s3_uploads_left, False),
        ("worker fds start / end", f"{f.fds_start} / {f.fds_end}", False),
        ("  fds over baseline", f.fds_over_baseline, True),
        ("worker sockets start / end", f"{f.sockets_start} / {f.sockets_end}", False),
        ("worker RSS MiB start / end", f"{f.rss_start_mib:.0f} / {f.rss_end_mib:.0f}", False),
        (f"  workers over {RSS_BOUND_MIB} MiB", f.rss_over_bound, True),
    ]
    lines.append("")
    for label, value, must in rows:
        lines.append(f"{label:<42}{value!s:>12}" + ("  (must be 0)" if must else ""))
    lines += ["", *f.notes[:40]]
    failures = f.failures()
    lines.append(
        "FAILED: " + ", ".join(failures) if failures else "OK: every must-be-0 figure is 0"
    )
    return "\n".join(lines)


def server_failures(figures: Figures, plan: Plan, events: list[Event]) -> None:
    for event in read_lines(plan.work, "server-events.jsonl"):
        if "status" not in event:
            continue
        record = {"status": event["status"], "t0": event["t"], "t1": event["t"], **event}
        if not injected(record, events):
            figures.server_other_5xx += 1
            figures.notes.append(f"server-side: {json.dumps(event)}")


# -- the run ---------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(mount_point: Path, mib: int) -> Iterator[Path]:
    mount_point.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(mount_point)]
    mounted = subprocess.run(command, capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        raise SystemExit(
            f"the soak fills a tmpfs of its own, and could not mount one ({mounted.stderr.strip()})"
            ": run it as root, or with --s3"
        )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@contextlib.contextmanager
def stopping(process: subprocess.Popen[bytes]) -> Iterator[None]:
    try:
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run(args: argparse.Namespace) -> Figures:
    with contextlib.ExitStack() as stack:
        if args.keep:
            work = Path(tempfile.mkdtemp(prefix="hashfs-soak-"))
            print(f"keeping {work}", file=sys.stderr)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hashfs-soak-")))
        weed: WeedMini | None = None
        disk: Path | None = None
        storage = None
        if args.s3:
            (work / "weed").mkdir()
            weed = WeedMini(work / "weed")
            weed.start()
            stack.callback(weed.stop)
            root = f"s3://{BUCKET}/soak-{os.getpid()}"
            storage = {**weed.server.options, "max_attempts": 2}
        else:
            disk = stack.enter_context(tmpfs(work / "disk", args.disk_mib))
            root = str(disk / "store")
        server = start_server(work, root, storage, args.timeout)
        stack.enter_context(stopping(server.process))
        return soak(args, work, server, (root, storage), disk, weed)
    raise AssertionError("unreachable")


def soak(
    args: argparse.Namespace,
    work: Path,
    server: Server,
    store: tuple[str, dict[str, Any] | None],
    disk: Path | None,
    weed: WeedMini | None,
) -> Figures:
    root, storage = store
    warm_up(server.port)
    before = measure(server)
    started = time.time()
    budget = args.disk_mib * MiB // 4 if not args.s3 else 512 * MiB
    plan = Plan(
        server.port, work, started + args.seconds, args.seconds, args.timeout, budget, args.s3
    )
    context = multiprocessing.get_context("fork")
    clients = [context.Process(target=uploader, args=(plan, n)) for n in range(args.uploaders)]
    clients += [context.Process(target=reader, args=(plan, n)) for n in range(args.readers)]
    clients.append(context.Process(target=deleter, args=(plan,)))
    clients.append(context.Process(target=sweeper, args=(plan, root, storage)))
    for client in clients:
        client.start()
    faults = Faults(plan, server, disk, weed)
    try:
        run_faults(faults, args.seconds, started)
        for client in clients:
            client.join(timeout=max(1.0, plan.deadline - time.time()) + 180)
    finally:
        for client in clients:
            if client.is_alive():
                client.kill()
    wall = time.time() - started
    for child in multiprocessing.active_children():
        child.join(timeout=4 * args.timeout)
    server.wait_ready()
    warm_up(server.port)
    figures = Figures(worker_kills=faults.kills, kills_survived=faults.kills_survived)
    figures.recoveries_failed = faults.recoveries_failed
    figures.notes += faults.notes
    records = list(read_lines(work, "records-*.jsonl"))
    classify(figures, records, faults.events, plan)
    server_failures(figures, plan, faults.events)
    check_store(figures, plan, records)
    check_leftovers(figures, server, root, weed)
    check_workers(figures, before, measure(server))
    figures.notes.insert(0, f"faults: {dict(Counter(e.kind for e in faults.events))}")
    timeline = ", ".join(
        f"{e.kind} {e.t0 - started:.1f}" + (f"-{e.t1 - started:.1f}" if e.t1 > e.t0 + 1 else "")
        for e in faults.events
    )
    figures.notes.insert(1, f"fault times (s from the start): {timeline}")
    log = (work / "gunicorn.log").read_text(errors="replace")
    figures.worker_timeouts = log.count("WORKER TIMEOUT")
    for record in records:
        if record["status"] == 0 and record["kind"] not in ("slow", "abort"):
            when = f"{record['t0'] - started:.1f}-{record['t1'] - started:.1f}"
            figures.notes.append(f"dropped at {when} s: {record['kind']} {record['error']}")
    print(report(figures, plan, wall))
    if args.json:
        written = asdict(figures) | {"counted_failures": figures.counted_failures()}
        Path(args.json).write_text(json.dumps(written, indent=1))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_seconds = float(os.environ.get("SOAK_SECONDS", "300"))
    parser.add_argument("--seconds", type=float, default=default_seconds)
    parser.add_argument("--s3", action="store_true", help="a SeaweedFS bucket, killed mid-run")
    parser.add_argument("--disk-mib", type=int, default=384, help="the tmpfs the store is on")
    parser.add_argument("--timeout", type=int, default=15, help="gunicorn's worker timeout (s)")
    parser.add_argument("--uploaders", type=int, default=3)
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the logs and journals")
    args = parser.parse_args(argv)
    figures = run(args)
    return 1 if figures.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
