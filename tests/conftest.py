"""Shared fixtures: a fresh store per test, built on pytest's tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from flask_hashfs import HashFS


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def fs(root: Path) -> HashFS:
    return HashFS(root)
