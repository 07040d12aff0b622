"""Debian's nginx on a free 127.0.0.1 port, with its prefix in a temp folder."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")

needs_nginx = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed: apt-get install nginx (Debian/Ubuntu)"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"nginx exited: {log.read_text() if log.exists() else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail("nginx did not start listening")


@contextmanager
def running_nginx(prefix: Path, port: int, servers: str) -> Iterator[None]:
    """nginx with ``servers`` (one or more ``server {}`` blocks, one listening on
    ``port``) in its ``http {}``, until the block ends."""
    assert NGINX is not None
    prefix.mkdir()
    temp = "\n".join(
        f"    {kind}_temp_path {prefix}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"{user}\nworker_processes 1;\npid {prefix}/nginx.pid;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n    access_log off;\n{temp}\n{servers}\n}}\n"
    )
    log = prefix / "error.log"
    command = [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(log)]
    process = subprocess.Popen([*command, "-g", "daemon off;"])
    try:
        _wait_for(port, process, log)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)
