"""ObjectServer sends header-only answers (304, hand-offs, 416) itself, skipping
werkzeug's final header pass for speed. Whatever the request, a client must get
exactly what FlaskHashFS.send() in a view gives, which goes through werkzeug in full.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.http import http_date
from werkzeug.wrappers import Response

from flask_hashfs import FlaskHashFS, HashAddress

from .serving_helpers import Reply, fetch, running

DATA = bytes(range(256)) * 16

REQUESTS = [
    ("GET", {}),
    ("HEAD", {}),
    ("GET", {"If-None-Match": "{etag}"}),
    ("HEAD", {"If-None-Match": "{etag}"}),
    ("GET", {"If-None-Match": 'W/"other", {etag}'}),
    ("GET", {"If-None-Match": '"other"'}),
    ("GET", {"If-Modified-Since": "{later}"}),
    ("GET", {"Range": "bytes=0-9"}),
    ("GET", {"Range": "bytes=0-9", "If-Range": '"other"'}),
    ("GET", {"Range": f"bytes={len(DATA)}-"}),
    ("GET", {"If-Match": '"other"'}),
    ("HEAD", {"If-Match": '"other"'}),
    ("GET", {"If-Match": "*"}),
    ("GET", {"If-Match": "{etag}", "If-None-Match": "{etag}"}),
    ("GET", {"If-Unmodified-Since": "{earlier}"}),
    ("GET", {"If-Match": '"other"', "Range": "bytes=0-9"}),
    ("GET", {"Range": "bytes=0-9", "If-Range": "W/{etag}"}),
    ("HEAD", {"Range": "bytes=0-9"}),
    ("GET", {"Range": "items=0-9"}),
    ("GET", {"Range": "bytes=0-9,20-29"}),
    ("GET", {"Range": f"bytes=-{len(DATA) * 2}"}),
]


@pytest.fixture(
    params=[{}, {"HASHFS_X_ACCEL_REDIRECT": "/_hashfs/"}, {"HASHFS_X_SENDFILE": True}],
    ids=["body", "x-accel", "x-sendfile"],
)
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[int, HashAddress]]:
    app = Flask(__name__)
    app.config.update(
        HASHFS_ROOT_FOLDER=str(tmp_path),
        HASHFS_PATH_PREFIX="/uploads",
        HASHFS_SERVE=True,
        **request.param,
    )
    fs = FlaskHashFS(app)

    @app.get("/view/<id>")
    def view(id: str) -> Response:
        return fs.send(id, public=True)

    with app.app_context():
        address = fs.put(io.BytesIO(DATA), extension=".png")
    with running(app) as port:
        yield port, address


def _comparable(reply: Reply) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = sorted((k.lower(), v) for k, v in reply.headers.items() if k.lower() != "date")
    return reply.status, headers, reply.body


@pytest.mark.parametrize(("method", "headers"), REQUESTS)
def test_served_route_answers_as_a_view_does(
    served: tuple[int, HashAddress], method: str, headers: dict[str, str]
) -> None:
    port, address = served
    mtime = Path(address.abspath).stat().st_mtime
    later, earlier = http_date(mtime + 60), http_date(mtime - 60)
    etag = f'"{address.id}"'
    sent = {k: v.format(etag=etag, later=later, earlier=earlier) for k, v in headers.items()}
    route = fetch(port, "/uploads/" + address.relpath, method, sent)
    view = fetch(port, f"/view/{address.id}", method, sent)
    assert _comparable(route) == _comparable(view)


def test_304_has_no_representation_headers(served: tuple[int, HashAddress]) -> None:
    port, address = served
    etag = f'"{address.id}"'
    reply = fetch(port, "/uploads/" + address.relpath, headers={"If-None-Match": etag})
    assert reply.status == 304
    assert reply.headers["ETag"] == etag
    for name in ("Content-Type", "Content-Length", "Last-Modified", "Content-Disposition"):
        assert name not in reply.headers
