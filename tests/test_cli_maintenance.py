"""``flask hashfs verify`` and ``repair`` as an operator meets them: JSON, progress on a
terminal, hostile file names, a missing root."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pty
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner

from flask_hashfs import FlaskHashFS, HashFS


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    app = Flask(__name__)
    app.config["HASHFS_ROOT_FOLDER"] = str(tmp_path / "store")
    FlaskHashFS(app)
    return app


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def store(app: Flask) -> HashFS:
    extension = app.extensions["hashfs"]
    assert isinstance(extension, FlaskHashFS)
    return extension.store_for(app)


def test_verify_json(runner: FlaskCliRunner, store: HashFS) -> None:
    good = store.put(io.BytesIO(b"good"))
    result = runner.invoke(args=["hashfs", "verify", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "root": store.root,
        "ok": True,
        "checked": 1,
        "findings": [],
        "lost": [],
        "stale_temp_files": [],
    }
    rotten = store.put(io.BytesIO(b"will rot"))
    Path(rotten.abspath).write_bytes(b"rotted")
    Path(store.root, "README").write_bytes(b"by hand")
    result = runner.invoke(args=["hashfs", "verify", "--json"])
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["ok"] is False
    assert document["lost"] == [rotten.id]
    assert {(f["key"], f["problem"], f["content_id"]) for f in document["findings"]} == {
        (rotten.relpath, "corrupted", hashlib.sha256(b"rotted").hexdigest()),
        ("README", "not an object", None),
    }
    assert store.exists(good.id)


def test_names_are_escaped_and_round_trip_in_json(runner: FlaskCliRunner, store: HashFS) -> None:
    store.put(io.BytesIO(b"the root exists"))
    name = os.fsencode(store.root) + b"/evil\x1b[2J\n\xff\x9b.txt"
    Path(os.fsdecode(name)).write_bytes(b"a hostile name")
    result = runner.invoke(args=["hashfs", "verify"])
    assert result.exit_code == 1
    assert "\x1b" not in result.output
    assert "\x9b" not in result.output
    assert "evil\\x1b[2J\\x0a\\xff\\x9b.txt" in result.output
    document = json.loads(runner.invoke(args=["hashfs", "verify", "--json"]).stdout)
    assert [os.fsencode(f["path"]) for f in document["findings"]] == [name]
    repaired = runner.invoke(args=["hashfs", "repair"])
    assert "\x1b" not in repaired.output
    assert "quarantined: " in repaired.output
    assert "evil\\x1b[2J\\x0a\\xff\\x9b.txt" in repaired.output


def test_verify_fails_on_a_missing_root(tmp_path: Path) -> None:
    app = Flask(__name__)
    app.config["HASHFS_ROOT_FOLDER"] = str(tmp_path / "never-made")
    FlaskHashFS(app)
    result = app.test_cli_runner().invoke(args=["hashfs", "verify"])
    assert result.exit_code == 1
    assert f"Error: cannot verify {tmp_path / 'never-made'}: " in result.output
    assert "No such file or directory" in result.output


def test_repair_prints_what_moved_where(runner: FlaskCliRunner, store: HashFS) -> None:
    stored = store.put(io.BytesIO(b"an object"), ".txt")
    Path(stored.abspath + "~").write_bytes(b"an object")
    Path(store.root, "README").write_bytes(b"by hand")
    result = runner.invoke(args=["hashfs", "repair", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert {(a["action"], a["source"], a["target"]) for a in document["actions"]} == {
        ("dropped", stored.relpath + "~", stored.relpath),
        ("quarantined", "README", ".hashfs/quarantine/README"),
    }
    assert document["lost"] == []
    again = runner.invoke(args=["hashfs", "repair"])
    assert again.exit_code == 0, again.output
    assert again.output == (
        "0 moved, 0 dropped as already stored, 0 quarantined, 0 lost,"
        " 0 stale temp file(s) removed.\n"
    )


def _run_in_terminal(args: list[str], cwd: Path) -> str:
    """Run a command with a terminal for stdout and stderr; everything it wrote."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(args, cwd=cwd, stdout=follower, stderr=follower)
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the other end closed
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    assert process.wait(120) == 0, output
    return output.decode()


def test_progress_shows_on_a_terminal_only(
    tmp_path: Path, runner: FlaskCliRunner, store: HashFS
) -> None:
    (tmp_path / "app.py").write_text(
        textwrap.dedent(
            f"""
            from flask import Flask
            from flask_hashfs import FlaskHashFS

            app = Flask(__name__)
            app.config["HASHFS_ROOT_FOLDER"] = {store.root!r}
            FlaskHashFS(app)
            """
        )
    )
    for n in range(5):
        store.put(io.BytesIO(b"%d" % n))
    flask = os.path.join(os.path.dirname(sys.executable), "flask")
    shown = _run_in_terminal([flask, "--app", "app", "hashfs", "verify"], tmp_path)
    assert "verifying" in shown
    assert "5/5" in shown or "100%" in shown
    assert "ok: 5 objects verified" in shown
    piped = runner.invoke(args=["hashfs", "verify"])
    assert "verifying" not in piped.output
