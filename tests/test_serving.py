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
from urllib.parse import quote

import pytest
from flask import Flask, request
from werkzeug.http import http_date
from werkzeug.wrappers import Response

from flask_hashfs import FlaskHashFS, HashAddress
from flask_hashfs.headers import CACHE_CONTROL

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


def test_if_match_other_etag_is_412(get: Fetch, png: HashAddress) -> None:
    assert get(url(png), headers={"If-Match": '"other"'}).status == 412
    assert get(url(png), headers={"If-Match": f'"{png.id}"'}).status == 200


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
    assert reply.headers["Cache-Control"] == CACHE_CONTROL
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


def test_304_and_head_never_open_the_file(
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
    assert opened == []
    assert get(url(png)).body == PNG
    assert opened == [png.relpath]


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
