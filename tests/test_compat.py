"""Code written for Flask-HashFS 0.3 keeps running: every name of hashfs 0.7.2's HashFS
works on the extension, as do 0.3's own ``fs.app`` and ``fs.config``.

0.3 forwarded every attribute to the current app's store with ``__getattr__``. The
names below are the public names of ``hashfs.HashFS`` 0.7.2 (``dir(hashfs.HashFS)``
and the attributes its ``__init__`` sets), which 0.3 apps reached through the extension.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import IO, Any, assert_type
from unittest import mock

import pytest
from flask import Config, Flask

from flask_hashfs import FlaskHashFS, HashAddress, HashFS

#: hashfs 0.7.2: the attributes HashFS.__init__ sets, and every public method.
HASHFS_072_ATTRIBUTES = ["root", "depth", "width", "algorithm", "fmode", "dmode"]
HASHFS_072_METHODS = [
    "computehash",
    "corrupted",
    "count",
    "delete",
    "exists",
    "files",
    "folders",
    "get",
    "haspath",
    "idpath",
    "makepath",
    "open",
    "put",
    "realpath",
    "relpath",
    "remove_empty",
    "repair",
    "shard",
    "size",
    "unshard",
]


def make_app(root: Path, **config: object) -> Flask:
    app = Flask(__name__)
    app.config.update(HASHFS_ROOT_FOLDER=str(root), **config)
    return app


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return make_app(tmp_path / "store", HASHFS_DEPTH=3, HASHFS_WIDTH=2)


@pytest.fixture
def fs(app: Flask) -> FlaskHashFS:
    return FlaskHashFS(app)


@pytest.mark.parametrize("name", HASHFS_072_ATTRIBUTES)
def test_store_attributes_read_through_the_extension(
    app: Flask, fs: FlaskHashFS, name: str
) -> None:
    with app.app_context():
        assert getattr(fs, name) == getattr(fs.client, name)


def test_attributes_are_the_current_apps(tmp_path: Path) -> None:
    fs = FlaskHashFS()
    one = make_app(tmp_path / "one", HASHFS_DEPTH=2)
    two = make_app(tmp_path / "two", HASHFS_DEPTH=5, HASHFS_ALGORITHM="sha1")
    fs.init_app(one)
    fs.init_app(two)
    with one.app_context():
        assert (fs.root, fs.depth, fs.algorithm) == (str(tmp_path / "one"), 2, "sha256")
    with two.app_context():
        assert (fs.root, fs.depth, fs.algorithm) == (str(tmp_path / "two"), 5, "sha1")


@pytest.mark.parametrize("name", [n for n in HASHFS_072_METHODS if n != "put"])
def test_store_methods_are_the_current_stores(app: Flask, fs: FlaskHashFS, name: str) -> None:
    with app.app_context():
        assert getattr(fs, name) == getattr(fs.client, name)


def test_store_methods_behave_as_on_the_store(app: Flask, fs: FlaskHashFS) -> None:
    with app.app_context():
        store = fs.client
        address = fs.put(io.BytesIO(b"compatible"), extension=".txt")
        assert fs.computehash(io.BytesIO(b"compatible")) == address.id
        assert fs.haspath(address.abspath)
        assert not fs.haspath(os.path.dirname(store.root))
        assert fs.idpath(address.id, ".txt") == address.abspath
        assert fs.shard(address.id) == store.shard(address.id)
        assert fs.unshard(address.abspath) == address.id
        assert fs.relpath(address.abspath) == address.relpath
        assert list(fs.folders()) == [os.path.dirname(address.abspath)]
        assert (fs.count(), fs.size()) == (1, len(b"compatible"))
        folder = os.path.join(store.root, "ab", "cd")
        fs.makepath(folder)
        assert os.path.isdir(folder)
        fs.remove_empty(folder)
        assert not os.path.exists(folder)
        assert list(fs.corrupted()) == fs.repair() == []


def test_app_is_the_constructors_and_config_the_current_apps(tmp_path: Path) -> None:
    app = make_app(tmp_path / "store")
    assert FlaskHashFS(app).app is app
    later = FlaskHashFS()
    assert later.app is None
    other = make_app(tmp_path / "other", HASHFS_PATH_PREFIX="/files")
    later.init_app(other)
    assert later.app is None  # as in 0.3: only the constructor's app is kept
    with other.app_context():
        assert later.config is other.config
        assert later.config["HASHFS_PATH_PREFIX"] == "/files"


def test_no_code_path_relies_on_the_constructors_app(tmp_path: Path) -> None:
    """The extension always works on the current app, whichever app it was built with."""
    first = make_app(tmp_path / "first")
    second = make_app(tmp_path / "second")
    fs = FlaskHashFS(first)
    fs.init_app(second)
    with second.app_context():
        address = fs.put(io.BytesIO(b"in the second app"))
        assert fs.root == str(tmp_path / "second")
        assert fs.config is second.config
    with first.app_context():
        assert not fs.exists(address.id)


# -- calls keep the arguments 0.3 passed, so apps' mocks of HashFS keep passing ---------


@pytest.mark.parametrize("extension", [None, ".txt"])
def test_put_passes_extension_by_name(app: Flask, fs: FlaskHashFS, extension: str | None) -> None:
    with app.app_context(), mock.patch.object(HashFS, "put") as put:
        fs.put("file", extension=extension)
    put.assert_called_once_with("file", extension=extension)


def test_put_with_use_filename_passes_extension_by_name(app: Flask, fs: FlaskHashFS) -> None:
    upload = mock.Mock(filename="IMG_0001.JPEG")
    with app.app_context(), mock.patch.object(HashFS, "put") as put:
        fs.put(upload, use_filename=True)
    put.assert_called_once_with(upload, extension=".jpeg")


@pytest.mark.parametrize("mode", ["rb", "r"])
def test_open_passes_mode_by_name(app: Flask, fs: FlaskHashFS, mode: str) -> None:
    with app.app_context(), mock.patch.object(HashFS, "open") as opened:
        fs.open("file", mode=mode)
    opened.assert_called_once_with("file", mode=mode)


@pytest.mark.parametrize("name", ["get", "delete", "exists", "realpath"])
def test_one_argument_calls_pass_through(app: Flask, fs: FlaskHashFS, name: str) -> None:
    with app.app_context(), mock.patch.object(HashFS, name) as method:
        getattr(fs, name)("file")
    method.assert_called_once_with("file")


def test_forwarded_names_keep_their_types(app: Flask, fs: FlaskHashFS) -> None:
    """mypy checks these: each forwarded name has the store's type, not Any."""
    with app.app_context():
        assert_type(fs.root, str)
        assert_type(fs.depth, int)
        assert_type(fs.fmode, int)
        assert_type(fs.algorithm, str)
        assert_type(fs.config, Config)
        assert_type(fs.app, Flask | None)
        assert_type(fs.haspath(fs.root), bool)
        assert_type(fs.get("0" * 64), HashAddress | None)
        stored = assert_type(fs.put(io.BytesIO(b"typed")), HashAddress).id
        with fs.open(stored, mode="rb") as f:
            assert_type(f, IO[Any])
