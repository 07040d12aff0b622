"""Stores on every backend for the lifecycle tests, and how to age their objects.

On disk an object is aged with ``os.utime``, as an operator would. A bucket's times are
the server's own, in whole seconds, so there objects age by waiting 2.5 s, and "old"
means older than a grace of 1 s.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from flask_hashfs import HashFS
from flask_hashfs.backends import s3

from .s3_server import BUCKET, S3Server

HOUR = 3600.0


def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> HashFS:
    """The store for a ``params=["local", "s3"]`` fixture."""
    if request.param == "local":
        return HashFS(tmp_path / "store", fsync=False)
    server: S3Server = request.getfixturevalue("s3_server")
    return HashFS(server.new_url(), storage_options=server.options)


def age(store: HashFS, *ids: str) -> float:
    """Make objects (all of them if no id is given) older than any claim since; return
    the grace that makes them old."""
    if isinstance(store.backend, s3.S3Backend):
        time.sleep(2.5)
        return 1.0
    for id in ids or list(store.ids()):
        path = store.realpath(id)
        assert path is not None
        os.utime(path, (time.time() - 2 * HOUR,) * 2)
    return HOUR


def raw_keys(store: HashFS) -> list[str]:
    """Every key under the store's root or prefix, the store's own bookkeeping included."""
    backend = store.backend
    if isinstance(backend, s3.S3Backend):
        pages = backend.client.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix=backend.prefix + "/"
        )
        cut = len(backend.prefix) + 1
        return sorted(item["Key"][cut:] for page in pages for item in page.get("Contents", []))
    root = Path(store.root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def aside(store: HashFS) -> list[str]:
    """What a sweep set aside and has not yet decided about."""
    return [key for key in raw_keys(store) if "/aside/" in key]
