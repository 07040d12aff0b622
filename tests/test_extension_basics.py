"""The Flask-HashFS 0.3 seed API, unchanged."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from flask import Flask

import flask_hashfs
from flask_hashfs import FlaskHashFS


def make_app(root: Path, **config: object) -> Flask:
    app = Flask(__name__)
    app.config.update({"HASHFS_ROOT_FOLDER": str(root), "HASHFS_PATH_PREFIX": "/uploads"})
    app.config.update(config)
    return app


def test_seed_api(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    fs = FlaskHashFS()
    fs.init_app(app)
    with app.app_context():
        address = fs.put(io.BytesIO(b"jpeg bytes"), extension=".jpg")
        assert fs.get(address.id) == address == fs.get(address.relpath)
        assert fs.get(address.abspath) == address
        assert fs.get("invalid") is None
        with fs.open(address.id) as f:
            assert f.read() == b"jpeg bytes"
        fs.delete(address.id)
        assert not fs.exists(address.id)
        assert isinstance(fs.client, flask_hashfs.HashFS)
    with app.test_request_context():
        assert fs.url_for("a/b/c.jpg") == "http://localhost/uploads/a/b/c.jpg"
        assert fs.url_for("a/b/c.jpg", external=False) == "/uploads/a/b/c.jpg"


def test_host_with_path_keeps_it(tmp_path: Path) -> None:
    app = make_app(tmp_path, HASHFS_HOST="https://cdn.example.com/media/")
    fs = FlaskHashFS(app)
    with app.test_request_context():
        assert fs.url_for("/a/b.png") == "https://cdn.example.com/media/uploads/a/b.png"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("HASHFS_ROOT_FOLDER", None, "HASHFS_ROOT_FOLDER"),
        ("HASHFS_PATH_PREFIX", None, "HASHFS_PATH_PREFIX"),
        ("HASHFS_PATH_PREFIX", "uploads", "HASHFS_PATH_PREFIX"),
        ("HASHFS_ALGORITHM", "nope", "HASHFS_ALGORITHM"),
        ("HASHFS_DEPTH", 64, "HASHFS_DEPTH"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, key: str, value: object, message: str) -> None:
    app = make_app(tmp_path, **{key: value})
    with pytest.raises(ValueError, match=message):
        FlaskHashFS(app)


def test_two_apps_one_extension(tmp_path: Path) -> None:
    fs = FlaskHashFS()
    one, two = make_app(tmp_path / "one"), make_app(tmp_path / "two")
    fs.init_app(one)
    fs.init_app(two)
    with one.app_context():
        fs.put(io.BytesIO(b"only in one"))
    with one.app_context():
        assert fs.count() == 1
    with two.app_context():
        assert fs.count() == 0
    assert one.extensions["hashfs"] is fs
    with pytest.raises(RuntimeError, match="already registered"):
        fs.init_app(one)
