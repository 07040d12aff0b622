"""``flask hashfs nginx-config`` without nginx: what it prints, and what it refuses.

tests/test_nginx_config.py runs the output under nginx.
"""

from __future__ import annotations

from itertools import product
from pathlib import Path

import pytest
from flask import Flask

from flask_hashfs import FlaskHashFS
from flask_hashfs.headers import known_extensions, media_type
from flask_hashfs.layout import Layout
from flask_hashfs.nginx import nginx_config

from .s3_server import S3Server


def make_app(tmp_path: Path, **config: object) -> Flask:
    app = Flask(__name__)
    app.config.update(HASHFS_ROOT_FOLDER=str(tmp_path / "store"), HASHFS_PATH_PREFIX="/uploads")
    app.config.update(config)
    FlaskHashFS(app)
    return app


def run(app: Flask) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(args=["hashfs", "nginx-config"])
    return result.exit_code, result.output


def test_the_output_is_the_same_every_time(tmp_path: Path) -> None:
    first, second = run(make_app(tmp_path)), run(make_app(tmp_path))
    assert first == second
    assert first[0] == 0
    assert first[1].count("location ~") == 2


@pytest.mark.parametrize(
    "change",
    [
        {"HASHFS_PATH_PREFIX": "/media"},
        {"HASHFS_DEPTH": 3},
        {"HASHFS_WIDTH": 2},
        {"HASHFS_ALGORITHM": "sha512"},
        {"HASHFS_INLINE_TYPES": ["image/png"]},
    ],
)
def test_every_setting_it_depends_on_changes_it(tmp_path: Path, change: dict[str, object]) -> None:
    assert run(make_app(tmp_path, **change)) != run(make_app(tmp_path))


def test_a_bucket_root_is_refused(tmp_path: Path, s3_server: S3Server) -> None:
    app = make_app(
        tmp_path, HASHFS_ROOT_FOLDER=s3_server.new_url(), HASHFS_STORAGE_OPTIONS=s3_server.options
    )
    status, output = run(app)
    assert status == 1
    assert "bucket" in output


@pytest.mark.parametrize(
    ("root", "prefix"),
    [
        ("/srv/$store", "/uploads"),
        ('/srv/st"ore', "/uploads"),
        ("/srv/st\\ore", "/uploads"),
        ("/srv/st\nore", "/uploads"),
        ("srv/store", "/uploads"),
        ("/srv/store", "/up loads"),
        ("/srv/store", "/up(loads)"),
        ("/srv/store", "/uploads/$x"),
    ],
)
def test_what_cannot_go_into_a_config_is_refused(root: str, prefix: str) -> None:
    with pytest.raises(ValueError, match="nginx config"):
        nginx_config(root, prefix, Layout(), frozenset())


def test_an_empty_prefix_serves_from_the_top() -> None:
    config = nginx_config("/srv/store", "", Layout(), frozenset({"image/png"}))
    assert 'location ~ "^/(?<hashfs_key>' in config


def test_the_last_part_of_an_extension_decides_its_type() -> None:
    """nginx looks a type up by what follows the last dot, lowercased. The config is
    right only if the app decides the same way, for every extension it may store."""
    parts = [*sorted(known_extensions()), ".unknown"]
    for first, last in product(parts, repeat=2):
        for extension in (first + last, first.upper() + last.upper()):
            assert media_type(extension) == media_type(last), extension
    for extension in parts:
        assert media_type(extension.upper()) == media_type(extension)
