"""Platforms without POSIX file locks (Windows): the package imports, a bucket works,
and a folder root is refused when the store is made, with a sentence that says why.

The platform is simulated in a fresh interpreter whose import system refuses ``fcntl``,
as Windows' does; everything else is the real package.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import json, sys

class NoFcntl:
    def find_spec(self, name, path=None, target=None):
        if name == "fcntl":
            raise ModuleNotFoundError("No module named 'fcntl'", name=name)
        return None

sys.modules.pop("fcntl", None)
sys.meta_path.insert(0, NoFcntl())

import flask_hashfs
from flask_hashfs import ConfigurationError, FlaskHashFS, HashFS

result = {"fcntl loaded": "fcntl" in sys.modules}
bucket = HashFS("s3://bucket/prefix", storage_options={"endpoint_url": "http://127.0.0.1:9"})
result["bucket"] = bucket.root
try:
    HashFS(sys.argv[1])
except ConfigurationError as exc:
    result["folder"] = str(exc)
print(json.dumps(result))
"""


def test_without_fcntl_buckets_work_and_folders_are_refused_clearly(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "store")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["fcntl loaded"] is False
    assert result["bucket"] == "s3://bucket/prefix"
    assert "needs POSIX file locks (fcntl)" in result["folder"]
    assert "use an s3:// root" in result["folder"]
    assert not (tmp_path / "store").exists()
