"""``flask hashfs nginx-config`` under real nginx: nginx must answer as the app does.

nginx runs the generated locations inside a server block that proxies everything else
to the app (on werkzeug's server), as docs/production.md sets it up. Each request goes
to nginx and to the app, and the two answers must be the same apart from Date, Server
and Connection, and apart from the differences docs/production.md lists, which are
asserted here exactly. Either side drifting fails a test.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.client import HTTPMessage
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.http import http_date

from flask_hashfs import FlaskHashFS, HashAddress
from flask_hashfs.headers import known_extensions

from . import test_serving
from .nginx_server import free_port, needs_nginx, running_nginx
from .serving_helpers import Reply, fetch, running, serving_app

pytestmark = needs_nginx

DOCS = Path(__file__).parent.parent / "docs" / "production.md"

#: What the two servers may differ in on every answer.
HOP_HEADERS = {"date", "server", "connection", "keep-alive"}

CONFIGS = {
    "defaults": {},
    "custom layout and inline types": {
        "HASHFS_ROOT_FOLDER": "the store's files",
        "HASHFS_DEPTH": 2,
        "HASHFS_WIDTH": 3,
        "HASHFS_ALGORITHM": "sha1",
        "HASHFS_PATH_PREFIX": "/media/files",
        "HASHFS_INLINE_TYPES": ["application/pdf", "application/octet-stream", "text/plain"],
    },
}


@dataclass
class Servers:
    app: Flask
    fs: FlaskHashFS
    nginx: int
    direct: int
    config: str

    @property
    def prefix(self) -> str:
        prefix: str = self.app.config["HASHFS_PATH_PREFIX"]
        return prefix

    def put(self, data: bytes, extension: str) -> HashAddress:
        with self.app.app_context():
            return self.fs.put(io.BytesIO(data), extension=extension)

    def url(self, address: HashAddress) -> str:
        return f"{self.prefix}/{address.relpath}"

    def both(
        self, path: str, method: str = "GET", headers: Mapping[str, str] | None = None
    ) -> tuple[Reply, Reply]:
        """The same request to nginx and to the app."""
        return fetch(self.nginx, path, method, headers), fetch(self.direct, path, method, headers)


def documented_server_block() -> str:
    """The server block of docs/production.md that includes the generated file."""
    blocks = re.findall(r"```nginx\n(.*?)```", DOCS.read_text(), re.DOTALL)
    found = [block for block in blocks if "include snippets/hashfs-uploads.conf" in block]
    assert found, "docs/production.md lost the server block that includes the config"
    return str(found[0])


def generated_config(app: Flask) -> str:
    result = app.test_cli_runner().invoke(args=["hashfs", "nginx-config"])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module", params=list(CONFIGS))
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Servers]:
    """The app and nginx in front of it, shared by a module's tests: objects are never
    deleted or changed, so each test's own objects are all it sees."""
    tmp_path = tmp_path_factory.mktemp("nginx-config")
    config = dict(CONFIGS[request.param])
    root = tmp_path / str(config.pop("HASHFS_ROOT_FOLDER", "store"))
    app, fs = serving_app(root, **config)
    # nginx's workers may run as another user: let them reach the store.
    tmp_path.chmod(0o755)
    generated = generated_config(app)
    include = tmp_path / "hashfs.conf"
    include.write_text(generated)
    port = free_port()
    with running(app) as app_port:
        server = (
            documented_server_block()
            .replace("listen 80;", f"listen 127.0.0.1:{port};")
            .replace("snippets/hashfs-uploads.conf", str(include))
            .replace("http://127.0.0.1:8000", f"http://127.0.0.1:{app_port}")
        )
        with running_nginx(tmp_path / "nginx", port, server):
            yield Servers(app, fs, port, app_port, generated)


def comparable(reply: Reply) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = sorted(
        (name.lower(), value)
        for name, value in reply.headers.items()
        if name.lower() not in HOP_HEADERS
    )
    return reply.status, headers, reply.body


def stored_mtime(address: HashAddress) -> int:
    return int(os.stat(address.abspath).st_mtime)


# -- every type ----------------------------------------------------------------------------


def extensions() -> list[str]:
    """Every extension of the type table, and the forms that test how its last part
    decides: upper case, several parts, compressed, unknown, none."""
    known = sorted(known_extensions())
    variants = [".JPG", ".Html", ".backup.png", ".png.gz", ".tar.gz", ".x.y.svg", ".unknown-ext"]
    return ["", *known, *variants]


def test_every_extension_is_served_as_the_app_serves_it(servers: Servers) -> None:
    for extension in extensions():
        address = servers.put(b"<svg onload=alert(1)> " + extension.encode(), extension)
        path = servers.url(address)
        for method in ("GET", "HEAD"):
            nginx, app = servers.both(path, method)
            assert comparable(nginx) == comparable(app), (extension, method)
        etag = f'"{address.id}"'
        nginx, app = servers.both(path, headers={"If-None-Match": etag})
        assert comparable(with_length(app, address)) == comparable(nginx), extension


def with_length(reply: Reply, address: HashAddress) -> Reply:
    """``reply`` (a 304) with the Content-Length of the object, which nginx adds."""
    headers = HTTPMessage()
    for name, value in reply.headers.items():
        headers[name] = value
    headers["Content-Length"] = str(os.stat(address.abspath).st_size)
    return Reply(reply.status, headers, reply.body)


# -- conditional requests, ranges, HEAD ------------------------------------------------------

#: How nginx's answer relates to the app's (docs/production.md, "Where nginx differs").
SAME = "same"
#: nginx's 304 also says the object's Content-Length (as RFC 9110 section 8.6 allows).
LENGTH_304 = "304 with Content-Length"
#: nginx's 304 to If-Modified-Since alone repeats Last-Modified and, for an attachment,
#: Content-Disposition and Content-Security-Policy: its own 304 passes add_header.
IMS_304 = "If-Modified-Since 304"
#: nginx sends Accept-Ranges on 200s only.
NO_ACCEPT_RANGES = "206 without Accept-Ranges"
#: nginx answers with the same status and its own error page.
ERROR_PAGE = "nginx's error page"

#: (method, request headers, relation). {etag}, {id}, {size}, and {earlier}, {date},
#: {later}: the object's mtime -60 s, exactly, +60 s. A (nginx, app) pair of statuses
#: is a semantic difference.
REQUESTS: list[tuple[str, dict[str, str], str | tuple[int, int]]] = [
    ("GET", {}, SAME),
    ("HEAD", {}, SAME),
    ("GET", {"If-None-Match": "{etag}"}, LENGTH_304),
    ("HEAD", {"If-None-Match": "{etag}"}, LENGTH_304),
    ("GET", {"If-None-Match": "W/{etag}"}, LENGTH_304),
    ("GET", {"If-None-Match": '"other", {etag}'}, LENGTH_304),
    ("GET", {"If-None-Match": '"other" ,W/{etag} , "more"'}, LENGTH_304),
    ("GET", {"If-None-Match": "*"}, LENGTH_304),
    ("GET", {"If-None-Match": "{id}"}, LENGTH_304),
    ("GET", {"If-None-Match": '"other"'}, SAME),
    ("GET", {"If-None-Match": '"other", *'}, SAME),
    ("GET", {"If-None-Match": '"{id}x"'}, SAME),
    ("GET", {"If-None-Match": '"other" {etag}'}, SAME),
    ("GET", {"If-None-Match": '"other"', "If-Modified-Since": "{later}"}, SAME),
    ("GET", {"If-None-Match": "{etag}", "If-Modified-Since": "{earlier}"}, LENGTH_304),
    ("GET", {"If-Modified-Since": "{earlier}"}, SAME),
    ("GET", {"If-Modified-Since": "{date}"}, IMS_304),
    ("GET", {"If-Modified-Since": "{later}"}, IMS_304),
    ("GET", {"If-Modified-Since": "not a date"}, SAME),
    ("GET", {"Range": "bytes=0-9"}, NO_ACCEPT_RANGES),
    ("GET", {"Range": "bytes=-10"}, NO_ACCEPT_RANGES),
    ("GET", {"Range": "bytes=10-"}, NO_ACCEPT_RANGES),
    ("GET", {"Range": "bytes=0-"}, NO_ACCEPT_RANGES),
    ("GET", {"Range": "bytes=0-99999"}, NO_ACCEPT_RANGES),
    ("HEAD", {"Range": "bytes=0-9"}, NO_ACCEPT_RANGES),
    ("GET", {"Range": "bytes=0-9", "If-Range": "{etag}"}, NO_ACCEPT_RANGES),
    ("GET", {"Range": "bytes=0-9", "If-Range": "{date}"}, NO_ACCEPT_RANGES),
    ("GET", {"Range": "bytes=0-9", "If-Range": '"other"'}, SAME),
    ("GET", {"Range": "bytes=0-9", "If-Range": "{earlier}"}, SAME),
    ("GET", {"Range": "bytes=0-9", "If-None-Match": "{etag}"}, LENGTH_304),
    ("GET", {"Range": "bytes={size}-"}, ERROR_PAGE),
    ("GET", {"If-Match": '"other"'}, ERROR_PAGE),
    ("GET", {"If-Unmodified-Since": "{earlier}"}, ERROR_PAGE),
    ("GET", {"If-Match": "*"}, SAME),
    ("GET", {"If-Unmodified-Since": "{later}"}, SAME),
    ("GET", {"If-Match": "{etag}", "If-None-Match": "{etag}"}, LENGTH_304),
    ("GET", {"Range": "bytes=0-9", "If-Range": "W/{etag}"}, SAME),
    ("GET", {"Range": "items=0-1"}, SAME),
    # nginx compares If-Match with its own ETag, which is off: nothing but * matches.
    ("GET", {"If-Match": "{etag}"}, (412, 200)),
    # RFC 9110 lets a server ignore a Range it cannot or will not answer: the app
    # ignores an invalid one and several; nginx refuses the first and sends the second
    # as multipart/byteranges.
    ("GET", {"Range": "bytes=5-3"}, (416, 200)),
    ("GET", {"Range": "bytes=0-1,4-5"}, (206, 200)),
    # Only GET and HEAD are object requests: nginx refuses the rest itself.
    ("POST", {}, (405, 404)),
    ("DELETE", {}, (405, 404)),
]


@pytest.mark.parametrize("extension", [".png", ".html"])
@pytest.mark.parametrize(("method", "headers", "relation"), REQUESTS)
def test_requests_are_answered_as_the_app_answers_them(
    servers: Servers,
    extension: str,
    method: str,
    headers: dict[str, str],
    relation: str | tuple[int, int],
) -> None:
    address = servers.put(bytes(range(256)) * 4 + extension.encode(), extension)
    mtime = stored_mtime(address)
    sent = {
        name: value.format(
            etag=f'"{address.id}"',
            id=address.id,
            size=os.stat(address.abspath).st_size,
            earlier=http_date(mtime - 60),
            date=http_date(mtime),
            later=http_date(mtime + 60),
        )
        for name, value in headers.items()
    }
    nginx, app = servers.both(servers.url(address), method, sent)
    if relation == SAME:
        assert comparable(nginx) == comparable(app)
    elif relation == LENGTH_304:
        assert app.status == 304
        assert comparable(nginx) == comparable(with_length(app, address))
    elif relation == IMS_304:
        full = fetch(servers.direct, servers.url(address))
        expected = HTTPMessage()
        for name, value in app.headers.items():
            expected[name] = value
        for name in ("Last-Modified", "Content-Disposition", "Content-Security-Policy"):
            if name in full.headers:
                expected[name] = full.headers[name]
        assert app.status == 304
        assert comparable(nginx) == comparable(Reply(304, expected, b""))
    elif relation == NO_ACCEPT_RANGES:
        assert app.status == 206
        del app.headers["Accept-Ranges"]
        assert comparable(nginx) == comparable(app)
    elif relation == ERROR_PAGE:
        assert nginx.status == app.status
        assert nginx.headers["Content-Type"] == "text/html"
        assert nginx.headers.get("Content-Range") == app.headers.get("Content-Range")
        assert "ETag" not in nginx.headers
    else:
        assert (nginx.status, app.status) == relation


# -- what is not an object -----------------------------------------------------------------


def hostile_paths(servers: Servers, address: HashAddress) -> list[str]:
    """The app's own list (tests/test_serving.py) under any prefix, and layout."""
    key, prefix = address.relpath, servers.prefix
    stem = key[: -len(".png")]
    paths = [
        prefix,
        prefix + "/",
        prefix + "//" + key,
        prefix + "/./" + key,
        f"{prefix}/{key}/",
        f"{prefix}/{key}/.",
        f"{prefix}/{key}.png",
        f"{prefix}/{key}%00.txt",
        f"{prefix}/{stem}%00.png",
        f"{prefix}/{key.upper()}",
        f"{prefix}/{stem}.PNG",
        f"{prefix}/{stem}.jpg",
        f"{prefix}/{stem}",
        f"{prefix}/{stem[:-1]}*",
        f"{prefix}/{stem[:-1]}%3f.png",
        f"{prefix}/{address.id}",
        f"{prefix}/{address.id}.png",
        f"{prefix}/{key[:7]}",
        f"{prefix}/{key}.{'x' * 40}",
        f"{prefix}/{stem}.a.b.c.d",
        f"{prefix}/" + "a/" * 2000 + "b",
        prefix.upper() + "/" + key,
    ]
    if servers.prefix == "/uploads":
        paths += test_serving.hostile_paths(address, servers.fs.store_for(servers.app).root)
    return paths


#: nginx refuses a path that climbs above "/" or holds a NUL with 400 itself, before
#: it looks at any location.
REFUSED_BY_NGINX = ("/../", "/%2e%2e/", "..%2f", "%00")


def test_hostile_paths_are_404(servers: Servers) -> None:
    address = servers.put(b"\x89PNG hostile", ".png")
    for path in hostile_paths(servers, address):
        nginx, app = servers.both(path)
        assert app.status == 404, path
        expected = 400 if any(part in path for part in REFUSED_BY_NGINX) else 404
        assert nginx.status in (app.status, expected), path
        assert "ETag" not in nginx.headers, path


def test_files_of_the_store_itself_are_never_served(servers: Servers) -> None:
    """Temp files, quarantine, claims and anything else in the root are no objects,
    even when their path looks like a key."""
    address = servers.put(b"\x89PNG internal", ".png")
    root = Path(servers.fs.store_for(servers.app).root)
    for name in [
        f".hashfs/quarantine/{address.relpath}",
        f".hashfs/claims/{address.id}",
        ".hashfs-tmp-0123456789abcdef",
        f"{Path(address.relpath).parent}/.hashfs-tmp-1",
        "index.html",
        f"{address.relpath}~",
    ]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"not an object")
        for method in ("GET", "HEAD"):
            nginx, app = servers.both(f"{servers.prefix}/{name}", method)
            assert (nginx.status, app.status) == (404, 404), name
            assert b"not an object" not in nginx.body


def test_symlinks_are_never_followed(servers: Servers, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG secret")
    address = servers.put(b"\x89PNG replaced by a symlink", ".png")
    os.unlink(address.abspath)
    os.symlink(secret, address.abspath)
    folder = servers.put(b"\x89PNG under a symlinked folder", ".png")
    shard = Path(folder.abspath).parent
    shard.rename(tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", shard)
    for linked in (address, folder):
        for headers in ({}, {"If-None-Match": f'"{linked.id}"'}):
            nginx, app = servers.both(servers.url(linked), headers=headers)
            assert (nginx.status, app.status) == (404, 404), headers
            assert b"secret" not in nginx.body


def test_a_deleted_object_is_404_even_when_revalidating(servers: Servers) -> None:
    address = servers.put(b"\x89PNG deleted", ".png")
    with servers.app.app_context():
        servers.fs.delete(address.id)
    for headers in ({}, {"If-None-Match": f'"{address.id}"'}, {"If-None-Match": "*"}):
        nginx, app = servers.both(servers.url(address), headers=headers)
        assert (nginx.status, app.status) == (404, 404), headers


def test_other_urls_under_the_prefix_reach_the_app(servers: Servers) -> None:
    nginx, app = servers.both(f"{servers.prefix}/new")
    assert comparable(nginx)[::2] == comparable(app)[::2]


def test_only_the_url_as_url_for_writes_it_is_served(servers: Servers) -> None:
    """The app decodes %xx before it looks a key up; nginx answers only the plain key."""
    address = servers.put(b"\x89PNG encoded", ".png")
    key = address.relpath
    for encoded in (f"%{ord(key[0]):02x}{key[1:]}", key.replace("/", "%2f")):
        nginx, app = servers.both(f"{servers.prefix}/{encoded}")
        assert (nginx.status, app.status) == (404, 200), encoded
