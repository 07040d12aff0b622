"""The soak harness, compressed into 60 seconds, on every ``make test``.

It runs ``benchmarks/soak.py`` as ``make soak`` does (gunicorn with 4 workers, uploaders,
readers, a deleter) with every local fault of the full soak in a shorter schedule: killed
workers, a disk that fills up, a failing fsync, slow clients. The full, 5-minute soak and
its S3 variant stay in ``make soak`` and ``make soak-s3``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(os.geteuid() != 0, reason="the soak mounts a tmpfs: it needs root")
def test_sixty_seconds_of_faults_lose_nothing(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    run = subprocess.run(
        [sys.executable, "benchmarks/soak.py", "--seconds", "60", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert out.exists(), run.stdout + run.stderr
    figures = json.loads(out.read_text())
    table = run.stdout
    # Every must-be-0 figure that counts something (timings are left to the full soak).
    assert figures["counted_failures"] == {}, table
    # The faults happened, and the load was real.
    assert figures["worker_kills"] == figures["kills_survived"] > 0, table
    assert figures["enospc_refusals"] > 0, table
    assert figures["fsync_faults_fired"] > 0, table
    assert figures["slow_clients"] == 2, table
    assert figures["acknowledged"] > 100, table
    assert figures["undeleted_checked"] > 0, table
