"""Moving a store from disk to a bucket and back, with the command an operator runs."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask

from flask_hashfs import ConfigurationError, FlaskHashFS, HashFS
from flask_hashfs.migrate import migrate, migrate_command

from .s3_server import S3Server
from .test_backend_conformance import LARGE, blob


def fill(store: HashFS, count: int) -> dict[str, bytes]:
    """``count`` small objects with assorted extensions, and one large one: key -> bytes."""
    contents = {}
    for i in range(count):
        data = f"object {i}".encode()
        contents[store.put(io.BytesIO(data), [".jpg", "", ".tar.gz"][i % 3]).relpath] = data
    data = blob(LARGE)
    contents[store.put(io.BytesIO(data), ".bin").relpath] = data
    return contents


def read_all(store: HashFS) -> dict[str, bytes]:
    out = {}
    for key in store.backend.all_keys():
        with store.open(key) as stream:
            out[key] = stream.read()
    return out


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(migrate_command, list(args))
    return result.exit_code, result.output


def test_disk_to_bucket_and_back_keeps_every_address(s3_server: S3Server, tmp_path: Path) -> None:
    disk = HashFS(tmp_path / "disk")
    contents = fill(disk, 12)
    url = s3_server.new_url()
    options = json.dumps(s3_server.options)

    code, output = run(str(tmp_path / "disk"), url, "--storage-options", options)
    assert code == 0, output
    assert "copied 13, already there 0" in output
    bucket = HashFS(url, storage_options=s3_server.options)
    assert read_all(bucket) == contents
    for key in contents:
        address = disk.get(key)
        assert address is not None
        assert bucket.get(address.id) == address._replace(abspath=f"{url}/{key}")

    code, output = run(str(tmp_path / "disk"), url, "--storage-options", options)
    assert code == 0, output
    assert "copied 0, already there 13" in output

    code, output = run(url, str(tmp_path / "back"), "--storage-options", options)
    assert code == 0, output
    assert read_all(HashFS(tmp_path / "back")) == contents


def test_corrupted_objects_are_reported_and_not_copied(s3_server: S3Server, tmp_path: Path) -> None:
    disk = HashFS(tmp_path / "disk")
    kept = disk.put(io.BytesIO(b"fine"))
    rotten = disk.put(io.BytesIO(b"will rot"), ".txt")
    Path(rotten.abspath).write_bytes(b"bit rot")
    (tmp_path / "disk" / "notes.txt").write_text("dropped in by hand")
    url = s3_server.new_url()

    code, output = run(
        str(tmp_path / "disk"), url, "--storage-options", json.dumps(s3_server.options)
    )
    assert code == 1
    assert "copied 1, already there 0, corrupted 1, not objects 1" in output
    assert rotten.relpath in output
    assert "notes.txt" in output
    assert list(HashFS(url, storage_options=s3_server.options)) == [f"{url}/{kept.relpath}"]


def test_different_layouts_are_refused(tmp_path: Path) -> None:
    HashFS(tmp_path / "a").put(io.BytesIO(b"x"))
    source, target = HashFS(tmp_path / "a"), HashFS(tmp_path / "b", depth=2)
    with pytest.raises(ConfigurationError, match="different layouts"):
        migrate(source, target)


def test_a_killed_run_resumes_where_it_stopped(s3_server: S3Server, tmp_path: Path) -> None:
    disk = HashFS(tmp_path / "disk")
    contents = {}
    for i in range(400):
        data = f"many small objects {i}".encode()
        contents[disk.put(io.BytesIO(data)).relpath] = data
    url = s3_server.new_url()
    bucket = HashFS(url, storage_options=s3_server.options)
    options = json.dumps(s3_server.options)
    command = [str(tmp_path / "disk"), url, "--storage-options", options, "--workers", "1"]
    process = subprocess.Popen(
        [sys.executable, "-m", "flask_hashfs.migrate", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while bucket.count() < 20 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    before = bucket.count()
    assert 20 <= before < 400

    code, output = run(*command)
    assert code == 0, output
    assert f"copied {400 - before}, already there {before}" in output
    assert read_all(bucket) == contents


# -- the commands' defaults ------------------------------------------------------------


def bucket_app(s3_server: S3Server, **config: object) -> tuple[Flask, HashFS]:
    """An app whose store is a bucket on the test server, with a layout of its own."""
    app = Flask(__name__)
    app.config.update(
        HASHFS_ROOT_FOLDER=s3_server.new_url(),
        HASHFS_STORAGE_OPTIONS=s3_server.options,
        HASHFS_DEPTH=2,
        HASHFS_WIDTH=2,
        HASHFS_ALGORITHM="sha1",
    )
    app.config.update(config)
    extension = FlaskHashFS(app)
    return app, extension.store_for(app)


def test_flask_migrate_copies_the_apps_store_with_its_layout(
    s3_server: S3Server, tmp_path: Path
) -> None:
    app, store = bucket_app(s3_server)
    address = store.put(io.BytesIO(b"from the app's own bucket"), extension=".txt")
    target = tmp_path / "copy"
    result = app.test_cli_runner().invoke(args=["hashfs", "migrate", str(target)])
    assert result.exit_code == 0, result.output
    assert "copied 1," in result.output
    copy = HashFS(target, depth=2, width=2, algorithm="sha1")
    assert copy.get(address.id) == address._replace(abspath=str(target / address.relpath))


def test_a_bucket_target_gets_the_apps_storage_options(s3_server: S3Server) -> None:
    """The app names its endpoint; a target bucket on no endpoint of its own would be
    AWS's: it gets the app's, and reaches the same server."""
    app, store = bucket_app(s3_server)
    address = store.put(io.BytesIO(b"bucket to bucket"))
    target = s3_server.new_url()
    result = app.test_cli_runner().invoke(args=["hashfs", "migrate", target])
    assert result.exit_code == 0, result.output
    copy = HashFS(target, 2, 2, "sha1", storage_options=s3_server.options)
    assert copy.get(address.id) is not None


def test_target_options_without_the_apps_endpoint_are_refused(s3_server: S3Server) -> None:
    app, _ = bucket_app(s3_server)
    runner = app.test_cli_runner()
    args = ["hashfs", "migrate", s3_server.new_url(), "--target-storage-options"]
    result = runner.invoke(args=[*args, json.dumps({"region_name": "us-east-1"})])
    assert result.exit_code == 2
    assert "would go to AWS's default endpoint" in result.output
    assert s3_server.options["endpoint_url"] in result.output
    result = runner.invoke(args=[*args, json.dumps(s3_server.options)])
    assert result.exit_code == 0, result.output


def test_python_m_migrate_runs_without_a_warning(tmp_path: Path) -> None:
    HashFS(tmp_path / "a").put(io.BytesIO(b"standalone"))
    done = subprocess.run(
        [sys.executable, "-W", "error", "-m", "flask_hashfs.migrate", "a", "b"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr
    assert "copied 1," in done.stdout
