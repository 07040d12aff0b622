"""``flask hashfs verify|repair|stats``, run through Flask's own CLI runner, and as an
operator meets them: JSON, progress on a terminal, hostile file names, a missing root."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner

from flask_hashfs import FlaskHashFS, HashFS
from flask_hashfs.backends.local import TEMP_PREFIX, LocalBackend
from flask_hashfs.backends.s3 import S3Backend
from flask_hashfs.cli import human_size

from .s3_server import S3Server
from .terminal import run_in_terminal


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


def _stale_temp_file(store: HashFS) -> str:
    """What a put killed by SIGKILL leaves: an unlocked temp file in the root."""
    path = os.path.join(store.root, TEMP_PREFIX + "0123456789abcdef")
    Path(path).write_bytes(b"half of an upload")
    return path


def _key_of(store: HashFS, data: bytes) -> str:
    """The key ``data`` is published under, as ``put`` would choose it."""
    return os.path.relpath(store.idpath(hashlib.sha256(data).hexdigest()), store.root)


def test_verify_passes_on_a_healthy_store(runner: FlaskCliRunner, store: HashFS) -> None:
    store.put(io.BytesIO(b"healthy"))
    result = runner.invoke(args=["hashfs", "verify"])
    assert result.exit_code == 0, result.output
    assert "ok: 1 objects verified" in result.output


def test_verify_reports_bit_rot_and_stale_temp_files(runner: FlaskCliRunner, store: HashFS) -> None:
    rotten = store.put(io.BytesIO(b"will rot"))
    Path(rotten.abspath).write_bytes(b"rotted")
    stale = _stale_temp_file(store)
    result = runner.invoke(args=["hashfs", "verify"])
    assert result.exit_code == 1
    assert f"corrupted: {rotten.abspath}" in result.output
    assert hashlib.sha256(b"rotted").hexdigest() in result.output
    assert f"lost: {rotten.id} (no intact copy anywhere: restore it from a backup)" in result.output
    assert f"stale temp file: {stale}" in result.output
    assert "3 problem(s) found" in result.output
    # verify only reads
    assert os.path.exists(stale)
    assert Path(rotten.abspath).read_bytes() == b"rotted"


def test_repair_fixes_what_verify_reports(runner: FlaskCliRunner, store: HashFS) -> None:
    rotten = store.put(io.BytesIO(b"will rot"), extension=".txt")
    Path(rotten.abspath).write_bytes(b"rotted")
    stale = _stale_temp_file(store)
    result = runner.invoke(args=["hashfs", "repair"])
    assert result.exit_code == 1, result.output  # the rotted content is lost
    moved_to = store.idpath(hashlib.sha256(b"rotted").hexdigest(), ".txt")
    assert f"moved: {rotten.abspath} -> {moved_to} (its bytes belong there)" in result.output
    assert f"lost: {rotten.id}" in result.output
    assert f"removed stale temp file: {stale}" in result.output
    assert (
        "1 moved, 0 dropped as already stored, 0 quarantined, 1 lost,"
        " 1 stale temp file(s) removed." in result.output
    )
    assert not os.path.exists(stale)
    assert store.exists(hashlib.sha256(b"rotted").hexdigest())
    again = runner.invoke(args=["hashfs", "verify"])
    assert again.exit_code == 0, again.output


def test_repair_leaves_a_live_writers_temp_file(runner: FlaskCliRunner, store: HashFS) -> None:
    """Where temp files have names (a file system without O_TMPFILE), a live put's is
    locked: repair sees it and leaves it alone, and the put completes."""
    assert isinstance(store.backend, LocalBackend)
    store.backend.anonymous = False
    with store.backend.writer() as writer:
        writer.write(b"a put in progress")
        live = [n for n in os.listdir(store.root) if n.startswith(TEMP_PREFIX)]
        assert len(live) == 1
        result = runner.invoke(args=["hashfs", "repair"])
        assert "0 stale temp file(s) removed" in result.output, result.output
        assert os.path.exists(os.path.join(store.root, live[0]))
        verify = runner.invoke(args=["hashfs", "verify"])
        assert verify.exit_code == 0, verify.output
        assert writer.publish(_key_of(store, b"a put in progress"))
    assert store.exists(hashlib.sha256(b"a put in progress").hexdigest())
    assert not [n for n in os.listdir(store.root) if n.startswith(TEMP_PREFIX)]


def test_a_live_put_has_no_temp_file_to_see(runner: FlaskCliRunner, store: HashFS) -> None:
    """A nameless temp file (O_TMPFILE): nothing in the root until the object is published."""
    store.put(io.BytesIO(b"the root exists"))
    before = sorted(os.listdir(store.root))
    with store.backend.writer() as writer:
        writer.write(b"a put in progress")
        assert sorted(os.listdir(store.root)) == before
        result = runner.invoke(args=["hashfs", "verify"])
        assert result.exit_code == 0, result.output
        assert "ok: 1 objects verified" in result.output
        assert writer.publish(_key_of(store, b"a put in progress"))
    assert store.count() == 2
    assert store.exists(hashlib.sha256(b"a put in progress").hexdigest())


def test_each_app_gets_its_own_store(tmp_path: Path) -> None:
    extension = FlaskHashFS()
    apps = []
    for name in ("one", "two"):
        app = Flask(name)
        app.config["HASHFS_ROOT_FOLDER"] = str(tmp_path / name)
        extension.init_app(app)
        apps.append(app)
    extension.store_for(apps[0]).put(io.BytesIO(b"only in one"))
    outputs = [app.test_cli_runner().invoke(args=["hashfs", "stats"]).output for app in apps]
    assert "objects: 1" in outputs[0]
    assert "objects: 0" in outputs[1]


def test_flask_command_line_runs_verify(tmp_path: Path) -> None:
    """The real ``flask`` entry point finds the group through init_app."""
    (tmp_path / "app.py").write_text(
        textwrap.dedent(
            f"""
            from flask import Flask
            from flask_hashfs import FlaskHashFS

            app = Flask(__name__)
            app.config["HASHFS_ROOT_FOLDER"] = {str(tmp_path / "store")!r}
            FlaskHashFS(app)
            """
        )
    )
    HashFS(tmp_path / "store").put(io.BytesIO(b"via the real CLI"))
    flask = os.path.join(os.path.dirname(sys.executable), "flask")
    result = subprocess.run(
        [flask, "--app", "app", "hashfs", "verify"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "ok: 1 objects verified" in result.stdout


def test_migrate_runs_under_flask_hashfs(
    runner: FlaskCliRunner, store: HashFS, tmp_path: Path
) -> None:
    address = store.put(io.BytesIO(b"moving house"), extension=".txt")
    target = tmp_path / "copy"
    result = runner.invoke(args=["hashfs", "migrate", store.root, str(target)])
    assert result.exit_code == 0, result.output
    assert "copied 1," in result.output
    assert HashFS(target).get(address.id) == address._replace(
        abspath=os.path.join(target, address.relpath)
    )


def _stray_files(store: HashFS) -> None:
    """Files that are no objects: a note dropped in a shard folder, a name that is no
    id, the store's own bookkeeping, and a temp file."""
    os.makedirs(os.path.join(store.root, "a", "b"), exist_ok=True)
    Path(store.root, "a", "b", "notes.txt").write_bytes(b"x" * 1000)
    Path(store.root, "README").write_bytes(b"x" * 1000)
    os.makedirs(os.path.join(store.root, ".hashfs", "quarantine"), exist_ok=True)
    Path(store.root, ".hashfs", "quarantine", "moved").write_bytes(b"x" * 1000)
    _stale_temp_file(store)


def test_stats_counts_only_objects(runner: FlaskCliRunner, store: HashFS) -> None:
    store.put(io.BytesIO(b"12345"), extension=".txt")
    store.put(io.BytesIO(b"1234567890"))
    _stray_files(store)
    result = runner.invoke(args=["hashfs", "stats"])
    assert result.exit_code == 0, result.output
    assert result.output == f"root: {store.root}\nobjects: 2\nsize: 15 bytes\n"


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 bytes"),
        (1, "1 byte"),
        (1023, "1023 bytes"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (int(1.2 * 1024 * 1024), "1.2 MiB"),
        (1024**2 - 1, "1.0 MiB"),
        (5 * 1024**3, "5.0 GiB"),
        (3 * 1024**4 + 1, "3.0 TiB"),
        (2048 * 1024**5, "2048.0 PiB"),
    ],
)
def test_human_size(size: int, shown: str) -> None:
    assert human_size(size) == shown


def test_stats_prints_a_human_size(runner: FlaskCliRunner, store: HashFS) -> None:
    store.put(io.BytesIO(b"\0" * int(1.2 * 1024 * 1024)))
    result = runner.invoke(args=["hashfs", "stats"])
    assert "size: 1.2 MiB\n" in result.output


def test_stats_json_has_the_raw_byte_count(runner: FlaskCliRunner, store: HashFS) -> None:
    store.put(io.BytesIO(b"\0" * int(1.2 * 1024 * 1024)))
    store.put(io.BytesIO(b"12345"))
    _stray_files(store)
    result = runner.invoke(args=["hashfs", "stats", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "root": store.root,
        "objects": 2,
        "bytes": int(1.2 * 1024 * 1024) + 5,
    }


def test_stats_of_a_bucket_counts_only_objects(tmp_path: Path, s3_server: S3Server) -> None:
    app = Flask(__name__)
    app.config.update(
        HASHFS_ROOT_FOLDER=s3_server.new_url(), HASHFS_STORAGE_OPTIONS=s3_server.options
    )
    extension = FlaskHashFS(app)
    store = extension.store_for(app)
    store.put(io.BytesIO(b"12345"), extension=".txt")
    backend = store.backend
    assert isinstance(backend, S3Backend)
    for key in ("a/b/notes.txt", "README", ".hashfs/quarantine/moved"):
        backend.client.put_object(Bucket=backend.bucket, Key=backend._name(key), Body=b"x" * 9)
    result = app.test_cli_runner().invoke(args=["hashfs", "stats", "--json"])
    assert json.loads(result.output) == {"root": store.root, "objects": 1, "bytes": 5}


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
    shown = run_in_terminal([flask, "--app", "app", "hashfs", "verify"], tmp_path)
    assert "verifying" in shown
    assert "5/5" in shown or "100%" in shown
    assert "ok: 5 objects verified" in shown
    piped = runner.invoke(args=["hashfs", "verify"])
    assert "verifying" not in piped.output
