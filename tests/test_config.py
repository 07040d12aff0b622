"""Strict configuration: a value that cannot work is a ValueError at init_app, whose
message names the one key at fault, rather than a surprise at the first request."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from flask import Flask

from flask_hashfs import FlaskHashFS
from flask_hashfs.backends.s3 import MAX_SIGNING_WINDOW

from .s3_server import S3Server


def make_app(root: object, **config: object) -> Flask:
    app = Flask(__name__)
    app.config.update({"HASHFS_ROOT_FOLDER": root, "HASHFS_PATH_PREFIX": "/uploads", **config})
    return app


def refused(app: Flask, key: str) -> str:
    """The message init_app refuses ``app`` with; it names ``key`` and no other key."""
    with pytest.raises(ValueError, match="configuration value for Flask-HashFS") as info:
        FlaskHashFS(app)
    message = str(info.value)
    assert message.startswith(f'Invalid configuration value for Flask-HashFS: "{key}" '), message
    assert re.findall(r'"(HASHFS_\w+)"', message) == [key], message
    return message


@pytest.mark.parametrize("key", ["HASHFS_FSYNC", "HASHFS_SERVE", "HASHFS_X_SENDFILE"])
@pytest.mark.parametrize("value", ["false", "False", "0", 0, 1, None])
def test_booleans_must_be_bool(tmp_path: Path, key: str, value: object) -> None:
    message = refused(make_app(str(tmp_path), **{key: value}), key)
    assert "True or False" in message


@pytest.mark.parametrize("key", ["HASHFS_FSYNC", "HASHFS_SERVE", "HASHFS_X_SENDFILE"])
@pytest.mark.parametrize("value", [True, False])
def test_booleans_are_accepted(tmp_path: Path, key: str, value: bool) -> None:
    FlaskHashFS(make_app(str(tmp_path), **{key: value}))


@pytest.mark.parametrize(
    "host",
    [
        "cdn.example.com",
        "cdn.example.com/media",
        "/media",
        "ftp://cdn.example.com",
        "https://",
        "https:///media",
        "https://cdn.example.com/media?token=1",
        "https://cdn.example.com/#top",
        42,
    ],
)
def test_host_must_be_an_absolute_or_protocol_relative_url(tmp_path: Path, host: object) -> None:
    refused(make_app(str(tmp_path), HASHFS_HOST=host), "HASHFS_HOST")


@pytest.mark.parametrize(
    ("host", "url"),
    [
        (None, "http://localhost/uploads/a/b.png"),
        ("https://cdn.example.com", "https://cdn.example.com/uploads/a/b.png"),
        ("https://cdn.example.com/media/", "https://cdn.example.com/media/uploads/a/b.png"),
        ("//cdn.example.com", "//cdn.example.com/uploads/a/b.png"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/uploads/a/b.png"),
    ],
)
def test_good_hosts(tmp_path: Path, host: str | None, url: str) -> None:
    app = make_app(str(tmp_path), HASHFS_HOST=host)
    fs = FlaskHashFS(app)
    with app.test_request_context():
        assert fs.url_for("a/b.png") == url


def test_signed_url_window_beyond_what_the_storage_signs_is_refused(
    s3_server: S3Server,
) -> None:
    bucket = {"HASHFS_STORAGE_OPTIONS": s3_server.options}
    app = make_app(s3_server.new_url(), HASHFS_SIGNED_URL_WINDOW=MAX_SIGNING_WINDOW + 1, **bucket)
    message = refused(app, "HASHFS_SIGNED_URL_WINDOW")
    assert str(MAX_SIGNING_WINDOW) in message
    FlaskHashFS(
        make_app(s3_server.new_url(), HASHFS_SIGNED_URL_WINDOW=MAX_SIGNING_WINDOW, **bucket)
    )


@pytest.mark.parametrize("window", [0, -5, 1.5, "3600", True])
def test_signed_url_window_must_be_whole_seconds(s3_server: S3Server, window: object) -> None:
    app = make_app(
        s3_server.new_url(),
        HASHFS_STORAGE_OPTIONS=s3_server.options,
        HASHFS_SIGNED_URL_WINDOW=window,
    )
    refused(app, "HASHFS_SIGNED_URL_WINDOW")


@pytest.mark.parametrize("root", ["uploads", "./data/uploads", "../uploads"])
def test_relative_root_folder_is_refused(root: str) -> None:
    message = refused(make_app(root), "HASHFS_ROOT_FOLDER")
    assert "instance_path" in message


def test_absolute_root_folder_is_kept(tmp_path: Path) -> None:
    app = make_app(tmp_path / "uploads")
    fs = FlaskHashFS(app)
    with app.app_context():
        assert fs.root == str(tmp_path / "uploads")


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"HASHFS_DEPTH": "4"}, "HASHFS_DEPTH"),
        ({"HASHFS_DEPTH": -1}, "HASHFS_DEPTH"),
        ({"HASHFS_DEPTH": 64}, "HASHFS_DEPTH"),
        ({"HASHFS_WIDTH": 0}, "HASHFS_WIDTH"),
        ({"HASHFS_WIDTH": 1.5}, "HASHFS_WIDTH"),
        ({"HASHFS_ALGORITHM": "nope"}, "HASHFS_ALGORITHM"),
        ({"HASHFS_ALGORITHM": "shake_128"}, "HASHFS_ALGORITHM"),
        ({"HASHFS_STORAGE_OPTIONS": {"endpoint_url": "http://x"}}, "HASHFS_STORAGE_OPTIONS"),
        ({"HASHFS_INLINE_TYPES": ["image/png", "text/html"]}, "HASHFS_INLINE_TYPES"),
        ({"HASHFS_INLINE_TYPES": "image/png"}, "HASHFS_INLINE_TYPES"),
        ({"HASHFS_X_ACCEL_REDIRECT": "_hashfs"}, "HASHFS_X_ACCEL_REDIRECT"),
        ({"HASHFS_X_ACCEL_REDIRECT": True}, "HASHFS_X_ACCEL_REDIRECT"),
        (
            {"HASHFS_X_ACCEL_REDIRECT": "/_hashfs/", "HASHFS_X_SENDFILE": True},
            "HASHFS_X_SENDFILE",
        ),
        ({"HASHFS_SERVE": True, "HASHFS_PATH_PREFIX": ""}, "HASHFS_SERVE"),
        ({"HASHFS_SERVE_MODE": "redirect"}, "HASHFS_SERVE_MODE"),
        ({"HASHFS_SERVE_MODE": "fast"}, "HASHFS_SERVE_MODE"),
        ({"HASHFS_SIGNED_URL_WINDOW": 3600}, "HASHFS_SIGNED_URL_WINDOW"),
        ({"HASHFS_PATH_PREFIX": "uploads"}, "HASHFS_PATH_PREFIX"),
    ],
)
def test_each_error_names_the_one_key_at_fault(
    tmp_path: Path, config: dict[str, object], key: str
) -> None:
    refused(make_app(str(tmp_path), **config), key)


@pytest.mark.parametrize(
    ("root", "config", "key"),
    [
        ("ftp://bucket", {}, "HASHFS_ROOT_FOLDER"),
        ("s3://", {}, "HASHFS_ROOT_FOLDER"),
        ("s3://bucket/a//b", {}, "HASHFS_ROOT_FOLDER"),
        ("s3://bucket", {"HASHFS_STORAGE_OPTIONS": {"colour": "blue"}}, "HASHFS_STORAGE_OPTIONS"),
        ("s3://bucket", {"HASHFS_STORAGE_OPTIONS": "endpoint"}, "HASHFS_STORAGE_OPTIONS"),
        ("s3://bucket", {"HASHFS_X_ACCEL_REDIRECT": "/_hashfs/"}, "HASHFS_X_ACCEL_REDIRECT"),
        ("s3://bucket", {"HASHFS_X_SENDFILE": True}, "HASHFS_X_SENDFILE"),
    ],
)
def test_storage_errors_name_the_one_key_at_fault(
    root: str, config: dict[str, object], key: str
) -> None:
    refused(make_app(root, **config), key)


def test_the_store_says_which_argument_is_wrong(tmp_path: Path) -> None:
    """Without Flask, the same errors name the HashFS argument instead."""
    from flask_hashfs import ConfigurationError, HashFS

    with pytest.raises(ConfigurationError) as info:
        HashFS(os.fspath(tmp_path), width=0)
    assert info.value.parameter == "width"
    assert str(info.value).startswith("width must be")
