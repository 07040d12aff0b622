"""Serving stored objects: HASHFS_SERVE and FlaskHashFS.send.

Every behaviour is checked twice: through a real werkzeug server on 127.0.0.1 with
http.client (paths sent byte for byte), and through Flask's test client. The list
follows werkzeug's tests/test_send_file.py (x-sendfile, last-modified, etag, max-age,
attachment names, confinement, not-found), plus ranges, If-Range, HEAD and hostile paths.
"""

from __future__ import annotations

import gc
import io
import os
import weakref
from collections.abc import Callable, Iterator, Mapping
from http.client import HTTPMessage
from pathlib import Path
from typing import IO
from urllib.parse import quote

import pytest
from flask import Flask, request
from werkzeug.http import http_date
from werkzeug.wrappers import Response

from flask_hashfs import FlaskHashFS, HashAddress
from flask_hashfs.headers import CACHE_CONTROL, PRIVATE_CACHE_CONTROL

from .s3_server import S3Server
from .serving_helpers import Reply, fetch, running, serving_app

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 16
HTML = b"<!doctype html><script>alert(document.cookie)</script>"

Fetch = Callable[..., Reply]


def make_app(root: Path, **config: object) -> tuple[Flask, FlaskHashFS]:
    app, fs = serving_app(root, **config)

    @app.get("/uploads/new")
    def upload_form() -> str:
        return "the app's own view under the prefix"

    @app.get("/download/<id>")
    def download(id: str) -> Response:
        return fs.send(
            id,
            download_name=request.args.get("name"),
            as_attachment="attachment" in request.args,
            public="public" in request.args,
        )

    return app, fs


def client_fetch(app: Flask) -> Fetch:
    """``fetch`` through Flask's test client, giving the same Reply as the real server."""

    def get(path: str, method: str = "GET", headers: Mapping[str, str] | None = None) -> Reply:
        with app.test_client().open(path, method=method, headers=dict(headers or {})) as r:
            parsed = HTTPMessage()
            for name, value in r.headers.items():
                parsed[name] = value
            return Reply(r.status_code, parsed, r.get_data())

    return get


@pytest.fixture(params=["folder", "bucket"])
def app_fs(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Flask, FlaskHashFS]:
    """The same serving, whether the store is a folder or a bucket (streamed through)."""
    if request.param == "folder":
        return make_app(tmp_path / "store")
    server: S3Server = request.getfixturevalue("s3_server")
    return make_app(
        tmp_path, HASHFS_ROOT_FOLDER=server.new_url(), HASHFS_STORAGE_OPTIONS=server.options
    )


@pytest.fixture(params=["real server", "test client"])
def get(request: pytest.FixtureRequest, app_fs: tuple[Flask, FlaskHashFS]) -> Iterator[Fetch]:
    app = app_fs[0]
    if request.param == "test client":
        yield client_fetch(app)
        return
    with running(app) as port:

        def real(path: str, method: str = "GET", headers: Mapping[str, str] | None = None) -> Reply:
            return fetch(port, path, method, headers)

        yield real


def put(app_fs: tuple[Flask, FlaskHashFS], data: bytes, extension: str) -> HashAddress:
    app, fs = app_fs
    with app.app_context():
        return fs.put(io.BytesIO(data), extension=extension)


@pytest.fixture
def png(app_fs: tuple[Flask, FlaskHashFS]) -> HashAddress:
    return put(app_fs, PNG, ".png")


def url(address: HashAddress) -> str:
    return "/uploads/" + address.relpath


# -- a plain GET -------------------------------------------------------------------------


def test_get_sends_body_and_immutable_caching_headers(get: Fetch, png: HashAddress) -> None:
    reply = get(url(png), headers={"Accept": "text/html", "Content-Type": "text/html"})
    assert reply.status == 200
    assert reply.body == PNG
    assert reply.headers["Content-Type"] == "image/png"
    assert reply.headers["ETag"] == f'"{png.id}"'
    assert reply.headers["Cache-Control"] == CACHE_CONTROL == "public, max-age=31536000, immutable"
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert reply.headers["Content-Length"] == str(len(PNG))
    assert reply.headers["Accept-Ranges"] == "bytes"
    assert "Content-Disposition" not in reply.headers
    assert "Content-Security-Policy" not in reply.headers


def stored_mtime(app_fs: tuple[Flask, FlaskHashFS], address: HashAddress) -> int:
    app, fs = app_fs
    with app.app_context():
        info = fs.info(address.id)
    assert info is not None
    return int(info.mtime)


def test_last_modified_is_the_store_time(
    get: Fetch, app_fs: tuple[Flask, FlaskHashFS], png: HashAddress
) -> None:
    reply = get(url(png))
    assert reply.headers["Last-Modified"] == http_date(stored_mtime(app_fs, png))


def test_head_sends_headers_only(get: Fetch, png: HashAddress) -> None:
    reply = get(url(png), method="HEAD")
    assert reply.status == 200
    assert reply.body == b""
    assert reply.headers["Content-Length"] == str(len(PNG))
    assert reply.headers["ETag"] == f'"{png.id}"'


# -- conditional requests ----------------------------------------------------------------


@pytest.mark.parametrize(
    "if_none_match",
    ['"{id}"', 'W/"{id}"', '"other", "{id}"', "*"],
)
def test_if_none_match_gives_304_without_body(
    get: Fetch, png: HashAddress, if_none_match: str
) -> None:
    reply = get(url(png), headers={"If-None-Match": if_none_match.format(id=png.id)})
    assert reply.status == 304
    assert reply.body == b""
    assert reply.headers["ETag"] == f'"{png.id}"'
    assert reply.headers["Cache-Control"] == CACHE_CONTROL


def test_other_etag_gives_the_body(get: Fetch, png: HashAddress) -> None:
    assert get(url(png), headers={"If-None-Match": '"0123"'}).status == 200


def test_if_modified_since(get: Fetch, app_fs: tuple[Flask, FlaskHashFS], png: HashAddress) -> None:
    mtime = stored_mtime(app_fs, png)
    assert get(url(png), headers={"If-Modified-Since": http_date(mtime)}).status == 304
    assert get(url(png), headers={"If-Modified-Since": http_date(mtime - 60)}).status == 200


# -- ranges ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=8-15", 8, 15),
        ("bytes=4000-", 4000, len(PNG) - 1),
        ("bytes=-10", len(PNG) - 10, len(PNG) - 1),
    ],
)
def test_single_range_gives_206(
    get: Fetch, png: HashAddress, header: str, start: int, end: int
) -> None:
    reply = get(url(png), headers={"Range": header})
    assert reply.status == 206
    assert reply.body == PNG[start : end + 1]
    assert reply.headers["Content-Range"] == f"bytes {start}-{end}/{len(PNG)}"
    assert reply.headers["Content-Length"] == str(end + 1 - start)
    assert reply.headers["ETag"] == f'"{png.id}"'


def test_head_with_range(get: Fetch, png: HashAddress) -> None:
    reply = get(url(png), method="HEAD", headers={"Range": "bytes=0-9"})
    assert reply.status == 206
    assert reply.body == b""
    assert reply.headers["Content-Range"] == f"bytes 0-9/{len(PNG)}"


def test_unsatisfiable_range_is_416(get: Fetch, png: HashAddress) -> None:
    reply = get(url(png), headers={"Range": f"bytes={len(PNG)}-"})
    assert reply.status == 416
    assert reply.headers["Content-Range"] == f"bytes */{len(PNG)}"
    assert reply.body == b""


@pytest.mark.parametrize(
    ("if_range", "status"),
    [('"{id}"', 206), ('"stale"', 200), ("{date}", 206), ("{old}", 200)],
)
def test_if_range(
    get: Fetch, app_fs: tuple[Flask, FlaskHashFS], png: HashAddress, if_range: str, status: int
) -> None:
    mtime = stored_mtime(app_fs, png)
    value = if_range.format(id=png.id, date=http_date(mtime), old=http_date(mtime - 60))
    reply = get(url(png), headers={"Range": "bytes=0-9", "If-Range": value})
    assert reply.status == status
    assert reply.body == (PNG[:10] if status == 206 else PNG)


def test_range_of_a_bucket_object_from_its_middle(get: Fetch, png: HashAddress) -> None:
    reply = get(url(png), headers={"Range": "bytes=3000-3009"})
    assert (reply.status, reply.body) == (206, PNG[3000:3010])


# -- RFC 9110 section 13: werkzeug's conditional-request matrix, and more -------------------
#
# Each row: request headers ({etag}: the object's tag; {date}: its Last-Modified; {old}
# and {later}: a minute before and after), the status, and the body: "all", "none", or
# (start, stop) of a 206. Every row is sent as GET and HEAD, to the serving route and to
# a view that calls fs.send(), through the real server and the test client.

ALL, NONE = "all", "none"
END = len(PNG)
MATRIX: list[tuple[dict[str, str], int, str | tuple[int, int]]] = [
    # If-Match: strong comparison; "*" holds for any stored object (RFC 9110 13.1.1).
    ({"If-Match": "*"}, 200, ALL),
    ({"If-Match": "{etag}"}, 200, ALL),
    ({"If-Match": '"other", {etag}'}, 200, ALL),
    ({"If-Match": '"other"'}, 412, NONE),
    ({"If-Match": "W/{etag}"}, 412, NONE),
    # If-Unmodified-Since, ignored with If-Match and when it is no date (13.1.4).
    ({"If-Unmodified-Since": "{date}"}, 200, ALL),
    ({"If-Unmodified-Since": "{later}"}, 200, ALL),
    ({"If-Unmodified-Since": "{old}"}, 412, NONE),
    ({"If-Unmodified-Since": "yesterday"}, 200, ALL),
    ({"If-Match": "{etag}", "If-Unmodified-Since": "{old}"}, 200, ALL),
    # If-None-Match: weak comparison, "*" matches (13.1.2).
    ({"If-None-Match": "{etag}"}, 304, NONE),
    ({"If-None-Match": "W/{etag}"}, 304, NONE),
    ({"If-None-Match": '"other", {etag}'}, 304, NONE),
    ({"If-None-Match": "*"}, 304, NONE),
    ({"If-None-Match": '"other"'}, 200, ALL),
    # If-Modified-Since, ignored with If-None-Match and when it is no date (13.1.3).
    ({"If-Modified-Since": "{date}"}, 304, NONE),
    ({"If-Modified-Since": "{later}"}, 304, NONE),
    ({"If-Modified-Since": "{old}"}, 200, ALL),
    ({"If-Modified-Since": "yesterday"}, 200, ALL),
    ({"If-None-Match": '"other"', "If-Modified-Since": "{date}"}, 200, ALL),
    ({"If-None-Match": "{etag}", "If-Modified-Since": "{old}"}, 304, NONE),
    # The order of evaluation (13.2.2): 412 before 304, and both before Range.
    ({"If-Match": '"other"', "If-None-Match": "{etag}"}, 412, NONE),
    ({"If-Unmodified-Since": "{old}", "If-None-Match": "{etag}"}, 412, NONE),
    ({"If-Match": "{etag}", "If-None-Match": "{etag}"}, 304, NONE),
    ({"If-Match": '"other"', "Range": "bytes=0-9"}, 412, NONE),
    ({"If-Unmodified-Since": "{old}", "Range": "bytes=0-9"}, 412, NONE),
    ({"If-None-Match": "{etag}", "Range": "bytes=0-9"}, 304, NONE),
    ({"If-Match": "*", "Range": "bytes=0-9"}, 206, (0, 10)),
    # If-Range: strong comparison; a date must be Last-Modified exactly (13.1.5).
    ({"Range": "bytes=0-9", "If-Range": "{etag}"}, 206, (0, 10)),
    ({"Range": "bytes=0-9", "If-Range": "W/{etag}"}, 200, ALL),
    ({"Range": "bytes=0-9", "If-Range": '"stale"'}, 200, ALL),
    ({"Range": "bytes=0-9", "If-Range": "{date}"}, 206, (0, 10)),
    ({"Range": "bytes=0-9", "If-Range": "{old}"}, 200, ALL),
    ({"Range": "bytes=0-9", "If-Range": "{later}"}, 200, ALL),
    ({"Range": "bytes=0-9", "If-Range": "yesterday"}, 200, ALL),
    ({"If-Range": "{etag}"}, 200, ALL),
    # Range (14.2): satisfiable byte ranges are served; only unsatisfiable ones are 416.
    ({"Range": "bytes=0-0"}, 206, (0, 1)),
    ({"Range": "bytes=10-"}, 206, (10, END)),
    ({"Range": f"bytes={END - 1}-"}, 206, (END - 1, END)),
    ({"Range": f"bytes=100-{END * 2}"}, 206, (100, END)),
    ({"Range": f"bytes=-{END * 2}"}, 206, (0, END)),
    ({"Range": "bytes=-1"}, 206, (END - 1, END)),
    ({"Range": "items=0-9"}, 200, ALL),
    ({"Range": "bytes=9-5"}, 200, ALL),
    ({"Range": "bytes=abc"}, 200, ALL),
    ({"Range": "bytes=-"}, 200, ALL),
    ({"Range": "0-9"}, 200, ALL),
    ({"Range": "bytes=0-9,20-29"}, 200, ALL),
    ({"Range": "bytes=20-29,0-9"}, 200, ALL),
    ({"Range": f"bytes=0-9,{END}-"}, 200, ALL),
    ({"Range": f"bytes={END}-"}, 416, NONE),
    ({"Range": f"bytes={END}-{END + 10}"}, 416, NONE),
    ({"Range": f"bytes={END}-{END + 10},{END + 20}-"}, 416, NONE),
]


@pytest.fixture(params=["route", "send"])
def target(request: pytest.FixtureRequest, png: HashAddress) -> str:
    """The serving route (public) or a view that calls fs.send() (private)."""
    return url(png) if request.param == "route" else f"/download/{png.id}"


@pytest.mark.parametrize("app_fs", ["folder"], indirect=True)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_conditional_request_matrix(
    get: Fetch, app_fs: tuple[Flask, FlaskHashFS], png: HashAddress, target: str, method: str
) -> None:
    mtime = stored_mtime(app_fs, png)
    values = {
        "etag": f'"{png.id}"',
        "date": http_date(mtime),
        "old": http_date(mtime - 60),
        "later": http_date(mtime + 60),
    }
    for headers, status, body in MATRIX:
        sent = {k: v.format(**values) for k, v in headers.items()}
        reply = get(target, method, sent)
        assert_answer(reply, status, body, method, values["etag"], row=sent)


def assert_answer(
    reply: Reply, status: int, body: str | tuple[int, int], method: str, etag: str, row: object
) -> None:
    assert reply.status == status, row
    if status in (304, 412):
        assert reply.body == b"", row
        assert reply.headers["ETag"] == etag, row
        for name in ("Content-Type", "Content-Disposition", "Last-Modified", "Content-Range"):
            assert name not in reply.headers, row
        assert reply.headers.get("Content-Length", "0") == "0", row
        return
    if status == 416:
        assert reply.body == b"", row
        assert reply.headers["Content-Range"] == f"bytes */{END}", row
        return
    expected = PNG if isinstance(body, str) else PNG[body[0] : body[1]]
    assert reply.body == (b"" if method == "HEAD" else expected), row
    assert reply.headers["Content-Length"] == str(len(expected)), row
    assert reply.headers["ETag"] == etag, row
    if isinstance(body, tuple):
        assert reply.headers["Content-Range"] == f"bytes {body[0]}-{body[1] - 1}/{END}", row
    else:
        assert "Content-Range" not in reply.headers, row


def test_empty_object_ignores_ranges(get: Fetch, app_fs: tuple[Flask, FlaskHashFS]) -> None:
    """No byte range of an empty object can be written down (werkzeug's choice, kept)."""
    empty = put(app_fs, b"", ".txt")
    for header in ("bytes=0-", "bytes=-5", "bytes=0-0"):
        reply = get(url(empty), headers={"Range": header})
        assert (reply.status, reply.body) == (200, b""), header


# -- private and public ------------------------------------------------------------------


def test_send_is_private_by_default(get: Fetch, png: HashAddress) -> None:
    reply = get(f"/download/{png.id}")
    assert reply.status == 200
    assert reply.headers["Cache-Control"] == PRIVATE_CACHE_CONTROL == "private, no-cache"
    assert reply.headers["ETag"] == f'"{png.id}"'
    revalidated = get(f"/download/{png.id}", headers={"If-None-Match": f'"{png.id}"'})
    assert revalidated.status == 304
    assert revalidated.headers["Cache-Control"] == PRIVATE_CACHE_CONTROL


def test_send_public_opts_in_to_shared_caching(get: Fetch, png: HashAddress) -> None:
    reply = get(f"/download/{png.id}?public=1")
    assert reply.headers["Cache-Control"] == CACHE_CONTROL
    revalidated = get(f"/download/{png.id}?public=1", headers={"If-None-Match": f'"{png.id}"'})
    assert revalidated.headers["Cache-Control"] == CACHE_CONTROL


def test_send_is_private_with_a_hand_off(tmp_path: Path) -> None:
    app_fs = make_app(tmp_path, HASHFS_X_ACCEL_REDIRECT="/_hashfs/")
    png = put(app_fs, PNG, ".png")
    reply = client_fetch(app_fs[0])(f"/download/{png.id}")
    assert reply.headers["X-Accel-Redirect"] == "/_hashfs/" + png.relpath
    assert reply.headers["Cache-Control"] == PRIVATE_CACHE_CONTROL


# -- types and disposition ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("extension", "content_type"),
    [
        (".html", "text/html; charset=utf-8"),
        (".svg", "image/svg+xml; charset=utf-8"),
        (".xml", "text/xml; charset=utf-8"),
        (".js", "application/javascript; charset=utf-8"),
        (".exe", "application/octet-stream"),
        (".tar.gz", "application/octet-stream"),
        (".svgz", "application/octet-stream"),
        ("", "application/octet-stream"),
    ],
)
def test_active_or_unknown_content_is_a_sandboxed_attachment(
    get: Fetch, app_fs: tuple[Flask, FlaskHashFS], extension: str, content_type: str
) -> None:
    stored = put(app_fs, HTML + extension.encode(), extension)
    reply = get(url(stored))
    assert reply.status == 200
    assert reply.headers["Content-Type"] == content_type
    assert reply.headers["Content-Disposition"] == f'attachment; filename="{stored.id}{extension}"'
    assert reply.headers["Content-Security-Policy"] == "sandbox"
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Encoding" not in reply.headers


def test_inline_types_are_configurable(tmp_path: Path) -> None:
    app_fs = make_app(tmp_path, HASHFS_INLINE_TYPES=["application/pdf"])
    pdf, png = put(app_fs, b"%PDF-1.7 ...", ".pdf"), put(app_fs, PNG, ".png")
    get = client_fetch(app_fs[0])
    assert "Content-Disposition" not in get(url(pdf)).headers
    assert get(url(png)).headers["Content-Disposition"].startswith("attachment")


@pytest.mark.parametrize(
    "active",
    [
        "text/html",
        "image/svg+xml",
        "application/xml",
        "text/xml",
        "application/xhtml+xml",
        "application/rss+xml",
        "text/javascript",
        "application/javascript",
    ],
)
def test_active_types_cannot_be_allowed_inline(tmp_path: Path, active: str) -> None:
    with pytest.raises(ValueError, match="HASHFS_INLINE_TYPES"):
        make_app(tmp_path, HASHFS_INLINE_TYPES=["image/png", active])


@pytest.mark.parametrize(
    ("name", "disposition"),
    [
        ("holiday.png", 'attachment; filename="holiday.png"'),
        ('say "hi".png', 'attachment; filename="say \\"hi\\".png"'),
        (
            "Ñandú／pingüino.png",  # noqa: RUF001 - a non-ASCII slash must stay in the name
            "attachment; filename=\"Nandu/pinguino.png\"; filename*=UTF-8''"
            "%C3%91and%C3%BA%EF%BC%8Fping%C3%BCino.png",
        ),
        ("a\r\nSet-Cookie: x=1.png", 'attachment; filename="aSet-Cookie: x=1.png"'),
        (
            "те:/ст.png",
            "attachment; filename=\":/.png\"; filename*=UTF-8''%D1%82%D0%B5%3A%2F%D1%81%D1%82.png",
        ),
        (
            "Vögel ☃.png",
            "attachment; filename=\"Vogel .png\"; filename*=UTF-8''V%C3%B6gel%20%E2%98%83.png",
        ),
    ],
)
def test_send_attachment_names(get: Fetch, png: HashAddress, name: str, disposition: str) -> None:
    reply = get(f"/download/{png.id}?attachment=1&name={quote(name)}")
    assert reply.status == 200
    assert reply.body == PNG
    assert reply.headers["Content-Disposition"] == disposition
    assert "Set-Cookie" not in reply.headers


def test_send_inline_name_and_active_content_stays_attachment(
    get: Fetch, app_fs: tuple[Flask, FlaskHashFS], png: HashAddress
) -> None:
    reply = get(f"/download/{png.id}?name=cat.png")
    assert reply.headers["Content-Disposition"] == 'inline; filename="cat.png"'
    page = put(app_fs, HTML, ".html")
    reply = get(f"/download/{page.id}?name=page.html")
    assert reply.headers["Content-Disposition"] == 'attachment; filename="page.html"'
    assert reply.headers["Content-Security-Policy"] == "sandbox"


def test_send_missing_is_404(get: Fetch) -> None:
    assert get("/download/" + "0" * 64).status == 404
    assert get("/download/not-an-id").status == 404


# -- hand-off to the front server ----------------------------------------------------------


def test_x_sendfile(tmp_path: Path) -> None:
    app_fs = make_app(tmp_path, HASHFS_X_SENDFILE=True)
    png = put(app_fs, PNG, ".png")
    with running(app_fs[0]) as port:
        reply = fetch(port, url(png))
        revalidated = fetch(port, url(png), headers={"If-None-Match": f'"{png.id}"'})
    assert reply.status == 200
    assert reply.headers["X-Sendfile"] == png.abspath
    assert reply.body == b""
    assert reply.headers["ETag"] == f'"{png.id}"'
    assert revalidated.status == 304


def test_x_accel_redirect(tmp_path: Path) -> None:
    app_fs = make_app(tmp_path, HASHFS_X_ACCEL_REDIRECT="/_hashfs/")
    png = put(app_fs, PNG, ".png")
    with running(app_fs[0]) as port:
        reply = fetch(port, url(png))
    assert reply.status == 200
    assert reply.headers["X-Accel-Redirect"] == "/_hashfs/" + png.relpath
    assert reply.body == b""
    assert reply.headers["Cache-Control"] == CACHE_CONTROL


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"HASHFS_X_ACCEL_REDIRECT": "_hashfs"}, "HASHFS_X_ACCEL_REDIRECT"),
        ({"HASHFS_X_ACCEL_REDIRECT": "/_hashfs/", "HASHFS_X_SENDFILE": True}, "one hand-off"),
        ({"HASHFS_PATH_PREFIX": ""}, "HASHFS_SERVE"),
        ({"HASHFS_INLINE_TYPES": "image/png"}, "HASHFS_INLINE_TYPES"),
    ],
)
def test_bad_serving_config(tmp_path: Path, config: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_app(tmp_path, **config)


# -- what is not a stored object -----------------------------------------------------------


def hostile_paths(png: HashAddress, root: str) -> list[str]:
    rel, id = png.relpath, png.id
    stem = rel[: -len(".png")]
    names = os.listdir(root) if os.path.isdir(root) else []
    temp = next((n for n in names if n.startswith(".hashfs")), ".hashfs-tmp-0")
    return [
        "/uploads",
        "/uploads/",
        "/uploads//",
        "/uploads/../../../../etc/passwd",
        "/uploads/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/uploads/%252e%252e/%252e%252e/etc/passwd",
        "/uploads/..%2f..%2f..%2fetc%2fpasswd",
        "/uploads/..%5c..%5c..%5cetc%5cpasswd",
        "/uploads/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
        "/uploads/" + "../" * 8 + rel,
        "/uploads/./" + rel,
        "/uploads//" + rel,
        "/uploads/" + rel + "/",
        "/uploads/" + rel + "/.",
        "/uploads/" + rel.upper(),
        "/uploads/" + stem + ".PNG",
        "/uploads/" + stem + ".jpg",
        "/uploads/" + stem,
        "/uploads/" + rel + ".png",
        "/uploads/" + rel + "%00.txt",
        "/uploads/" + stem + "%00.png",
        "/uploads/" + id,
        "/uploads/" + id + ".png",
        "/uploads/" + rel[:7],
        "/uploads/*/*/*/*/*",
        "/uploads/" + stem[:-1] + "*",
        "/uploads/" + stem[:-1] + "%3f.png",
        "/uploads/" + rel.replace(rel[0], "[0-9a-f]", 1),
        "/uploads/" + "0/" * 4 + "0" * 60 + ".png",
        "/uploads/" + temp,
        "/uploads/%ff%fe/%80",
        "/uploads/" + "a/" * 2000 + "b",
        "/UPLOADS/" + rel,
        "/etc/passwd",
    ]


def test_hostile_paths_are_404_and_reveal_nothing(
    get: Fetch, app_fs: tuple[Flask, FlaskHashFS], png: HashAddress
) -> None:
    plain_404 = get("/no-such-page")
    assert plain_404.status == 404
    for path in hostile_paths(png, app_fs[0].config["HASHFS_ROOT_FOLDER"]):
        reply = get(path)
        assert (reply.status, reply.body) == (404, plain_404.body), path
        assert "ETag" not in reply.headers, path


@pytest.mark.parametrize("app_fs", ["folder"], indirect=True)
def test_symlinks_in_the_root_are_never_followed(
    get: Fetch, png: HashAddress, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG secret")
    os.unlink(png.abspath)
    os.symlink(secret, png.abspath)
    assert get(url(png)).status == 404
    shard = Path(png.abspath).parents[3]
    elsewhere = tmp_path / "elsewhere"
    os.rename(shard, elsewhere)
    os.symlink(elsewhere, shard)
    assert get(url(png)).status == 404


def test_deleted_object_is_404_even_when_revalidating(
    get: Fetch, app_fs: tuple[Flask, FlaskHashFS], png: HashAddress
) -> None:
    app, fs = app_fs
    with app.app_context():
        fs.delete(png.id)
    assert get(url(png)).status == 404
    assert get(url(png), headers={"If-None-Match": f'"{png.id}"'}).status == 404


def test_other_methods_and_app_views_under_the_prefix_go_to_the_app(
    get: Fetch, png: HashAddress
) -> None:
    assert get(url(png), method="POST").status in (404, 405)
    assert get(url(png), method="DELETE").status in (404, 405)
    reply = get("/uploads/new")
    assert (reply.status, reply.body) == (200, b"the app's own view under the prefix")


def test_serving_is_off_by_default(tmp_path: Path) -> None:
    app_fs = make_app(tmp_path, HASHFS_SERVE=False)
    png = put(app_fs, PNG, ".png")
    assert client_fetch(app_fs[0])(url(png)).status == 404


# -- work per request --------------------------------------------------------------------


def test_304_412_416_and_head_never_open_the_file(
    app_fs: tuple[Flask, FlaskHashFS], png: HashAddress, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, fs = app_fs
    backend = fs.store_for(app).backend
    opened: list[str] = []
    real_open = backend.open

    def counting_open(key: str) -> io.BufferedReader:
        opened.append(key)
        return real_open(key)  # type: ignore[return-value]

    monkeypatch.setattr(backend, "open", counting_open)
    get = client_fetch(app)
    assert get(url(png), headers={"If-None-Match": f'"{png.id}"'}).status == 304
    assert get(url(png), method="HEAD").status == 200
    assert get(url(png), headers={"If-Match": '"other"', "Range": "bytes=0-9"}).status == 412
    assert get(url(png), headers={"Range": f"bytes={len(PNG)}-"}).status == 416
    assert get(url(png), method="HEAD", headers={"Range": "bytes=0-9"}).status == 206
    assert opened == []
    assert get(url(png)).body == PNG
    assert opened == [png.relpath]


class ServerFileWrapper:
    """A WSGI server's wsgi.file_wrapper (gunicorn's, say): iterable, and not seekable."""

    def __init__(self, file: IO[bytes], block_size: int = 8192) -> None:
        self.file, self.block_size = file, block_size

    def __iter__(self) -> Iterator[bytes]:
        return iter(lambda: self.file.read(self.block_size), b"")

    def close(self) -> None:
        self.file.close()


@pytest.mark.parametrize("app_fs", ["folder"], indirect=True)
def test_a_range_seeks_to_its_start_whatever_the_servers_file_wrapper(
    app_fs: tuple[Flask, FlaskHashFS], png: HashAddress, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, fs = app_fs
    backend = fs.store_for(app).backend
    read: list[int] = []
    real_open = backend.open

    def counting_open(key: str) -> IO[bytes]:
        file = real_open(key)
        real_read = file.read

        def counting_read(size: int = -1) -> bytes:
            data = real_read(size)
            read.append(len(data))
            return data

        file.read = counting_read  # type: ignore[method-assign]
        return file

    monkeypatch.setattr(backend, "open", counting_open)
    environ = {"wsgi.file_wrapper": ServerFileWrapper}
    with app.test_client().get(
        url(png), headers={"Range": "bytes=4000-4009"}, environ_base=environ
    ) as reply:
        assert (reply.status_code, reply.get_data()) == (206, PNG[4000:4010])
    assert sum(read) <= len(PNG) - 4000  # nothing before the range was read


def test_the_extension_does_not_keep_apps_alive(tmp_path: Path) -> None:
    fs = FlaskHashFS()
    app = Flask(__name__)
    app.config.update(
        HASHFS_ROOT_FOLDER=str(tmp_path), HASHFS_PATH_PREFIX="/uploads", HASHFS_SERVE=True
    )
    fs.init_app(app)
    collected = weakref.ref(app)
    del app
    gc.collect()
    assert collected() is None


def test_object_deleted_between_lookup_and_open_is_404(
    get: Fetch, app_fs: tuple[Flask, FlaskHashFS], png: HashAddress, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, fs = app_fs
    store = fs.store_for(app)
    real_stat = store.stat

    def stat_then_delete(key: str) -> object:
        found = real_stat(key)
        store.delete(png.id)  # a concurrent delete, at the worst instant
        return found

    monkeypatch.setattr(store, "stat", stat_then_delete)
    assert get(url(png)).status == 404
    assert not store.put(io.BytesIO(PNG), extension=".png").is_duplicate
    assert get(f"/download/{png.id}").status == 404
