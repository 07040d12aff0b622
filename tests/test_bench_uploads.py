"""``make bench-uploads ARGS=--quick`` on every ``make test``: the whole upload benchmark
(two gunicorns, curl and Python senders, every endpoint) in a few seconds, so that it
keeps working. Its figures mean nothing at this size and are not checked."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_upload_benchmark_runs() -> None:
    if shutil.which("curl") is None:
        pytest.skip("the benchmark sends with curl: apt-get install curl")
    run = subprocess.run(
        [sys.executable, "benchmarks/bench_uploads.py", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = [" ".join(line.split()) for line in run.stdout.splitlines()]
    for start in (
        "multipart stream_uploads / put(request.stream) durable curl",
        "put(request.stream) / discard fsync off python",
        "4 KiB multipart uploads, 50 per case",
    ):
        assert any(line.startswith(start) for line in lines), run.stdout
