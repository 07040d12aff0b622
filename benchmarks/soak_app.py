"""The app ``soak.py`` runs under gunicorn: the extension with serving on, an upload view,
a delete view, and the soak's fault hook.

It is configured from the environment, because gunicorn imports it (``soak_app:create_app()``):
``HASHFS_SOAK_ROOT`` (a folder or an ``s3://`` URL), ``HASHFS_SOAK_STORAGE`` (JSON
storage options for a bucket) and ``HASHFS_SOAK_EVENTS`` (a file that every 5xx and every
stored upload is appended to, one JSON line each, so that what clients never see, such as
the answer to an upload whose client went away, is counted too).

The fault hook is for the soak only: ``POST /_soak/fsync-fault`` makes the next fsync of
a file in this worker fail with EIO, as a dying disk would. It swaps the local backend's
``os`` for a proxy until the fault has fired, and marks that response with
``X-Soak-Fault: fsync`` so that the soak counts its 5xx as injected.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from typing import Any

from flask import Flask, Response, jsonify, request

from flask_hashfs import FlaskHashFS
from flask_hashfs.backends import local
from flask_hashfs.uploads import filename_extension

ROOT_ENV = "HASHFS_SOAK_ROOT"
STORAGE_ENV = "HASHFS_SOAK_STORAGE"
EVENTS_ENV = "HASHFS_SOAK_EVENTS"
PREFIX = "/uploads"
#: What the upload view accepts; anything else is refused with 415 (the soak sends some).
ALLOWED = frozenset({".bin", ".txt", ".png", ".json"})
FAULT_HEADER = "X-Soak-Fault"


class _FailingFsync:
    """The real ``os`` module, except that the next fsync of a regular file fails."""

    def __init__(self, fired: list[int]) -> None:
        self._fired = fired

    def fsync(self, fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            local.os = os  # type: ignore[attr-defined]  # one fault, then the real disk again
            self._fired.append(os.getpid())
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        os.fsync(fd)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def _event(log: str, **fields: object) -> None:
    line = json.dumps({"pid": os.getpid(), "t": time.time(), **fields}) + "\n"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one write per line: lines of workers never interleave
    finally:
        os.close(fd)


def create_app() -> Flask:
    app = Flask(__name__)
    storage = os.environ.get(STORAGE_ENV)
    app.config.update(
        HASHFS_ROOT_FOLDER=os.environ[ROOT_ENV],
        HASHFS_PATH_PREFIX=PREFIX,
        HASHFS_SERVE=True,
        HASHFS_STORAGE_OPTIONS=json.loads(storage) if storage else None,
    )
    fs = FlaskHashFS(app)
    events = os.environ[EVENTS_ENV]
    fired: list[int] = []

    @app.post("/upload")
    def upload() -> tuple[Response, int]:
        name = request.args.get("name", "")
        address = fs.put_upload(
            request.stream, extension=filename_extension(name), allowed_extensions=ALLOWED
        )
        info = fs.info(address.relpath)
        size = None if info is None else info.size
        _event(events, stored=address.id, size=size, sent=request.content_length)
        body = {"id": address.id, "relpath": address.relpath, "dup": address.is_duplicate}
        return jsonify(body), 201

    @app.delete("/objects/<id>")
    def delete(id: str) -> tuple[str, int]:
        fs.delete(id)
        return "", 204

    @app.post("/_soak/fsync-fault")
    def arm_fsync_fault() -> Response:
        local.os = _FailingFsync(fired)  # type: ignore[attr-defined,assignment]
        return jsonify(pid=os.getpid())

    @app.get("/_soak/pid")
    def pid() -> Response:
        return jsonify(pid=os.getpid())

    @app.after_request
    def count_failures(response: Response) -> Response:
        fault = "fsync" if fired else None
        fired.clear()
        if fault:
            response.headers[FAULT_HEADER] = fault
        if response.status_code >= 500:
            _event(events, status=response.status_code, path=request.path, fault=fault)
        return response

    return app
