"""``flask hashfs gc`` and the app's live ids loader, end to end with a real database
(sqlite3) and Flask's CLI runner; progress is checked on a real pseudo-terminal."""

from __future__ import annotations

import io
import os
import sqlite3
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from flask import Flask
from flask.testing import FlaskCliRunner

from flask_hashfs import FlaskHashFS, HashFS
from flask_hashfs.cli import parse_duration

from .terminal import run_in_terminal

OLD = time.time() - 2 * 24 * 3600


@pytest.fixture
def fs() -> FlaskHashFS:
    return FlaskHashFS()


@pytest.fixture
def app(tmp_path: Path, fs: FlaskHashFS) -> Flask:
    app = Flask(__name__)
    app.config["HASHFS_ROOT_FOLDER"] = str(tmp_path / "store")
    app.config["HASHFS_FSYNC"] = False
    fs.init_app(app)
    return app


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(tmp_path / "app.db")
    connection.execute("CREATE TABLE upload (id INTEGER PRIMARY KEY, file_id TEXT)")
    yield connection
    connection.close()


def _aged_put(store: HashFS, data: bytes) -> str:
    address = store.put(io.BytesIO(data))
    os.utime(address.abspath, (OLD, OLD))
    return address.id


def test_gc_removes_what_no_row_references(
    app: Flask, fs: FlaskHashFS, db: sqlite3.Connection
) -> None:
    store = fs.store_for(app)
    kept = _aged_put(store, b"in a row")
    gone = _aged_put(store, b"row deleted")
    db.execute("INSERT INTO upload (file_id) VALUES (?), (NULL)", (kept,))
    db.commit()

    @fs.live_ids_loader(app=app)
    def live_ids() -> Iterator[str | None]:
        return (file_id for (file_id,) in db.execute("SELECT file_id FROM upload"))

    runner = app.test_cli_runner()
    dry = runner.invoke(args=["hashfs", "gc", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would remove: 1 objects, 11 bytes\n" in dry.output
    assert store.exists(gone)
    result = runner.invoke(args=["hashfs", "gc"])
    assert result.exit_code == 0, result.output
    assert result.output == (
        "removed: 1 objects, 11 bytes\n"
        "kept as live: 1 objects, 8 bytes\n"
        "kept as recent: 0 objects, 0 bytes\n"
    )
    assert sorted(store.ids()) == [kept]


def test_gc_keeps_what_was_put_within_the_grace(app: Flask, fs: FlaskHashFS) -> None:
    store = fs.store_for(app)
    fresh = store.put(io.BytesIO(b"row not committed yet")).id
    _aged_put(store, b"released a day ago")
    fs.live_ids_loader(app=app)(list)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["hashfs", "gc", "--grace", "1d"])
    assert "kept as recent: 1 objects" in result.output
    assert sorted(store.ids()) == [fresh]
    result = runner.invoke(args=["hashfs", "gc", "--grace", "49h"])
    assert "removed: 0 objects" in result.output


def test_gc_without_a_loader_says_how_to_register_one(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["hashfs", "gc"])
    assert result.exit_code == 1
    assert "@fs.live_ids_loader" in result.output


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("15m", 900), ("24h", 86400), ("7d", 604800), ("1.5h", 5400)],
)
def test_grace_durations(text: str, seconds: float) -> None:
    assert parse_duration(None, None, text) == seconds


@pytest.mark.parametrize("text", ["", "h", "-5m", "5 minutes", "1e3", "5w"])
def test_grace_that_is_no_duration(text: str) -> None:
    with pytest.raises(click.BadParameter, match="duration"):
        parse_duration(None, None, text)


def test_a_grace_under_a_minute_needs_a_flag(app: Flask, fs: FlaskHashFS) -> None:
    store = fs.store_for(app)
    gone = _aged_put(store, b"old")
    fs.live_ids_loader(app=app)(list)
    runner: FlaskCliRunner = app.test_cli_runner()
    refused = runner.invoke(args=["hashfs", "gc", "--grace", "30s"])
    assert refused.exit_code == 2
    assert "--allow-short-grace" in refused.output
    assert store.exists(gone)
    bad = runner.invoke(args=["hashfs", "gc", "--grace", "soon"])
    assert bad.exit_code == 2
    assert "duration" in bad.output
    allowed = runner.invoke(args=["hashfs", "gc", "--grace", "0", "--allow-short-grace"])
    assert allowed.exit_code == 0, allowed.output
    assert not store.exists(gone)


def test_each_app_has_its_own_loader(tmp_path: Path, fs: FlaskHashFS) -> None:
    apps = []
    for name in ("one", "two"):
        app = Flask(name)
        app.config["HASHFS_ROOT_FOLDER"] = str(tmp_path / name)
        fs.init_app(app)
        apps.append(app)
    with apps[0].app_context():

        @fs.live_ids_loader
        def live_ids() -> list[str]:
            return []

        assert fs.sweep(grace=0).removed == 0
        assert list(fs.ids()) == []
    with apps[1].app_context(), pytest.raises(RuntimeError, match="live_ids_loader"):
        fs.sweep(grace=0)
    with pytest.raises(RuntimeError, match="app context"):
        fs.live_ids_loader(live_ids)
    with pytest.raises(RuntimeError, match="init_app"):
        fs.live_ids_loader(app=Flask("three"))(live_ids)


def test_the_api_takes_explicit_ids_and_any_grace(app: Flask, fs: FlaskHashFS) -> None:
    store = fs.store_for(app)
    kept = _aged_put(store, b"kept")
    _aged_put(store, b"gone")
    with app.app_context():
        assert fs.sweep([kept], grace=0.5).removed == 1
        assert list(fs.ids()) == [kept]


def test_gc_shows_progress_on_a_terminal(tmp_path: Path) -> None:
    (tmp_path / "gcapp.py").write_text(
        textwrap.dedent(
            f"""
            import io
            from flask import Flask
            from flask_hashfs import FlaskHashFS

            fs = FlaskHashFS()
            app = Flask(__name__)
            app.config["HASHFS_ROOT_FOLDER"] = {str(tmp_path / "store")!r}
            fs.init_app(app)
            for n in range(50):
                fs.store_for(app).put(io.BytesIO(b"%d" % n))
            fs.live_ids_loader(app=app)(list)
            """
        )
    )
    command = [sys.executable, "-m", "flask", "--app", "gcapp", "hashfs", "gc"]
    output = run_in_terminal(command, tmp_path)
    assert "Sweeping" in output
    assert "100%" in output
    assert "kept as recent: 50 objects" in output


def test_a_claim_keeps_revalidation_working(tmp_path: Path) -> None:
    app = Flask(__name__)
    app.config.update(
        HASHFS_ROOT_FOLDER=str(tmp_path / "served"), HASHFS_PATH_PREFIX="/u", HASHFS_SERVE=True
    )
    fs = FlaskHashFS(app)
    store = fs.store_for(app)
    id = _aged_put(store, b"a shared photo")
    relpath = os.path.relpath(store.idpath(id), store.root)
    first = app.test_client().get(f"/u/{relpath}")
    assert first.status_code == 200
    first.close()
    assert store.put(io.BytesIO(b"a shared photo")).is_duplicate  # the claim moves the mtime
    headers = {"If-None-Match": first.headers["ETag"]}
    headers["If-Modified-Since"] = first.headers["Last-Modified"]
    again = app.test_client().get(f"/u/{relpath}", headers=headers)
    assert again.status_code == 304
