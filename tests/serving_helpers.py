"""A real HTTP server on 127.0.0.1 for an app, and a raw client that sends paths verbatim."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from flask import Flask
from werkzeug.serving import make_server

from flask_hashfs import FlaskHashFS


def serving_app(root: Path, **config: object) -> tuple[Flask, FlaskHashFS]:
    """An app that serves the store at ``root`` under /uploads; ``config`` overrides."""
    app = Flask(__name__)
    app.config.update(
        HASHFS_ROOT_FOLDER=str(root), HASHFS_PATH_PREFIX="/uploads", HASHFS_SERVE=True
    )
    app.config.update(config)
    return app, FlaskHashFS(app)


class Reply(NamedTuple):
    status: int
    headers: http.client.HTTPMessage
    body: bytes


@contextmanager
def running(app: Flask) -> Iterator[int]:
    """Serve ``app`` with werkzeug's threaded server on a free loopback port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def fetch(
    port: int, path: str, method: str = "GET", headers: Mapping[str, str] | None = None
) -> Reply:
    """One request with ``path`` sent byte for byte (no client-side normalisation)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()
