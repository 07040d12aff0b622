"""The demo app end to end, in a real headless Chromium (Debian's ``chromium`` package).

The app runs on a real server on a free 127.0.0.1 port; the browser fills in the upload
form, reads the gallery, loads the thumbnails through the extension's serving route,
downloads, deletes rows and collects garbage, and is refused where a form comes from
another origin or is too large. Playwright drives the system browser: never ``playwright install``.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import struct
import time
import uuid
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from demo import create_app, fs
from demo.s3 import BUCKET as DEMO_BUCKET
from demo.s3 import allow_origins, bucket_config
from flask import Flask
from playwright.sync_api import FilePayload, Page, Request, Route, expect

from .browser import chromium_page, needs_chromium
from .s3_server import S3Server
from .serving_helpers import running

pytestmark = needs_chromium


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid, solid-colour PNG: real image bytes without an imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = (b"\x00" + bytes(rgb) * width) * height
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(pixels))
        + chunk(b"IEND", b"")
    )


RED = png(40, 30, (220, 40, 40))
BLUE = png(20, 50, (40, 80, 220))


def payload(name: str, mime_type: str, data: bytes) -> FilePayload:
    return {"name": name, "mimeType": mime_type, "buffer": data}


@pytest.fixture
def app_config() -> Mapping[str, Any]:
    """Settings over the demo's own; a test parametrizes it to change them."""
    return {}


@pytest.fixture
def app(tmp_path: Path, app_config: Mapping[str, Any]) -> Flask:
    return create_app(tmp_path / "data", app_config)


@pytest.fixture
def base_url(app: Flask) -> Iterator[str]:
    with running(app) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    with chromium_page(tmp_path / "chromium-profile") as page:
        yield page


def upload(page: Page, *files: FilePayload) -> None:
    page.set_input_files("#files", list(files))
    page.get_by_role("button", name="Upload").click()


def test_upload_gallery_duplicate_and_image(page: Page, base_url: str, app: Flask) -> None:
    page.goto(base_url + "/")
    expect(page.locator(".empty")).to_have_text("No files yet: upload a few above.")

    upload(
        page,
        payload("red.png", "image/png", RED),
        payload("blue.png", "image/png", BLUE),
        payload("red copy.png", "image/png", RED),
        payload("<b>notes</b>.txt", "text/plain", b"hello\n"),
        payload("page.html", "text/html", b"<script>alert(1)</script>"),
        payload("fake.png", "image/png", b"<html><script>alert(1)</script></html>"),
    )

    expect(page.locator(".messages li")).to_have_text(
        [
            "red.png: stored.",
            "blue.png: stored.",
            "red copy.png: same bytes as red.png, stored once.",
            "<b>notes</b>.txt: stored.",
            re.compile(r"page\.html: refused\. .*\.html.* not accepted"),
            re.compile(r"fake\.png: refused\. .*image/png"),
        ]
    )
    expect(page.locator(".messages .refused")).to_have_count(2)
    assert page.locator(".messages .duplicate").count() == 1
    names = page.locator(".gallery .name").all_inner_texts()
    assert sorted(names) == ["<b>notes</b>.txt", "blue.png", "red copy.png", "red.png"]
    assert page.locator("b").count() == 0, "an uploaded name was rendered as HTML"
    assert fs.store_for(app).count() == 3, "the duplicate was stored twice"

    # The thumbnails were fetched and decoded by the browser, at their real size.
    page.wait_for_function(
        "() => [...document.images].length === 3"
        " && [...document.images].every(img => img.complete && img.naturalWidth > 0)"
    )
    red = page.get_by_alt_text("red.png", exact=True)
    assert red.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [40, 30]

    url = red.get_attribute("src")
    assert url is not None
    assert url.startswith(base_url + "/uploads/")
    response = page.goto(url)
    assert response is not None
    assert response.status == 200
    assert response.body() == RED
    headers = response.headers
    assert headers["content-type"] == "image/png"
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    assert headers["x-content-type-options"] == "nosniff"
    address = fs.store_for(app).get(url.removeprefix(base_url + "/uploads/"))
    assert address is not None
    assert address.id in headers["etag"]
    assert not headers["etag"].startswith("W/")


def fetch_status(page: Page, url: str) -> int:
    """The server's answer, not the browser cache's (served objects are immutable)."""
    status: int = page.evaluate("url => fetch(url, {cache: 'no-store'}).then(r => r.status)", url)
    return status


def age(app: Flask, data: bytes, seconds: float) -> None:
    """Make the object of ``data`` look stored (and last claimed) ``seconds`` ago."""
    path = fs.store_for(app).realpath(hashlib.sha256(data).hexdigest())
    assert path is not None
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.mark.parametrize("app_config", [{"DEMO_GC_GRACE": 3600}])
def test_rows_share_objects_and_collecting_frees_what_none_uses(
    page: Page, base_url: str, app: Flask
) -> None:
    store = fs.store_for(app)
    page.goto(base_url + "/")
    upload(
        page,
        payload("red.png", "image/png", RED),
        payload("red copy.png", "image/png", RED),
        payload("blue.png", "image/png", BLUE),
    )
    expect(page.locator(".gallery .name")).to_have_text(["blue.png", "red copy.png", "red.png"])
    expect(page.locator(".gallery .shared")).to_have_text(["Stored once with 1 other upload"] * 2)
    expect(page.locator(".usage")).to_have_text(
        f"3 uploads · 2 objects stored · {len(RED) + len(BLUE)} Bytes"
    )
    red_url = page.get_by_alt_text("red.png", exact=True).get_attribute("src")
    assert red_url is not None

    # Deleting one row leaves the object that another row uses.
    page.get_by_role("button", name="Delete red.png", exact=True).click()
    expect(page.locator(".messages li")).to_have_text(
        ["red.png: deleted. Its bytes stay: 1 other upload uses them."]
    )
    expect(page.locator(".gallery .name")).to_have_text(["blue.png", "red copy.png"])
    page.wait_for_function(
        "() => [...document.images].every(img => img.complete && img.naturalWidth > 0)"
    )
    copy = page.get_by_alt_text("red copy.png", exact=True)
    assert copy.evaluate("img => img.naturalWidth") == 40
    with page.expect_download() as info:
        page.get_by_role("link", name="Download red copy.png").click()
    assert Path(info.value.path()).read_bytes() == RED

    page.get_by_role("button", name="Collect garbage").click()
    expect(page.locator(".messages li")).to_have_text(
        [
            f"Garbage collected: 0 objects removed, 0 Bytes freed. Kept 2 objects in use"
            f" ({len(RED) + len(BLUE)} Bytes) and 0 objects (0 Bytes) stored or uploaded"
            " again in the last 3600 seconds."
        ]
    )
    assert store.count() == 2

    # With no row left, the objects stay until they are older than the grace.
    for name in ["red copy.png", "blue.png"]:
        page.get_by_role("button", name=f"Delete {name}").click()
    expect(page.locator(".messages li")).to_have_text(
        ["blue.png: deleted. Collect garbage to free its space."]
    )
    expect(page.locator(".empty")).to_be_visible()
    expect(page.locator(".usage")).to_have_text(
        f"0 uploads · 2 objects stored · {len(RED) + len(BLUE)} Bytes"
    )
    page.get_by_role("button", name="Collect garbage").click()
    expect(page.locator(".messages li")).to_contain_text(["0 objects removed, 0 Bytes freed."])
    assert store.count() == 2

    age(app, RED, 7200)
    page.get_by_role("button", name="Collect garbage").click()
    expect(page.locator(".messages li")).to_have_text(
        [
            f"Garbage collected: 1 object removed, {len(RED)} Bytes freed. Kept 0 objects in"
            f" use (0 Bytes) and 1 object ({len(BLUE)} Bytes) stored or uploaded again in the"
            " last 3600 seconds."
        ]
    )
    expect(page.locator(".usage")).to_have_text(f"0 uploads · 1 object stored · {len(BLUE)} Bytes")
    assert store.count() == 1
    assert fetch_status(page, red_url) == 404


@pytest.mark.parametrize("app_config", [{"DEMO_GC_GRACE": 3600}])
def test_an_upload_claims_an_object_waiting_for_collection(
    page: Page, base_url: str, app: Flask
) -> None:
    page.goto(base_url + "/")
    upload(page, payload("red.png", "image/png", RED))
    page.get_by_role("button", name="Delete red.png").click()
    age(app, RED, 7200)

    upload(page, payload("red again.png", "image/png", RED))
    expect(page.locator(".messages li")).to_have_text(
        ["red again.png: same bytes as a deleted upload not yet collected, stored once."]
    )
    # That put claimed the old object afresh: even with its row gone, a collection keeps it.
    page.get_by_role("button", name="Delete red again.png").click()
    page.get_by_role("button", name="Collect garbage").click()
    expect(page.locator(".messages li")).to_contain_text(["0 objects removed"])
    assert fs.store_for(app).count() == 1


def test_download_under_the_uploaded_name(page: Page, base_url: str) -> None:
    name = "Rôti d'été (1).png"
    page.goto(base_url + "/")
    upload(page, payload(name, "image/png", RED), payload("notes.txt", "text/plain", b"hi\n"))

    for label, data in [(name, RED), ("notes.txt", b"hi\n")]:
        with page.expect_download() as info:
            page.get_by_role("link", name=f"Download {label}").click()
        download = info.value
        assert download.suggested_filename == label
        assert Path(download.path()).read_bytes() == data


def forged_form_site(action: str) -> Flask:
    """Another origin (its own port) whose page posts a form to ``action`` on load."""
    site = Flask("forger")

    @site.get("/")
    def forged() -> str:
        return (
            f'<form method="post" action="{action}"><input name="x" value="1"></form>'
            "<script>document.forms[0].submit()</script>"
        )

    return site


@pytest.mark.parametrize("app_config", [{"DEMO_GC_GRACE": 3600}])
def test_a_form_from_another_origin_changes_nothing(page: Page, base_url: str, app: Flask) -> None:
    store = fs.store_for(app)
    page.goto(base_url + "/")
    upload(page, payload("red.png", "image/png", RED), payload("blue.png", "image/png", BLUE))
    page.get_by_role("button", name="Delete blue.png").click()
    # The delete is a post and a redirect: read the forms of the page it lands on, not of
    # the page it leaves (whose forms a loaded machine may catch half gone).
    expect(page.locator(".gallery .name")).to_have_text(["red.png"])
    age(app, BLUE, 7200)  # what a collection would remove
    actions = [
        form.get_attribute("action") or "" for form in page.locator("form[method=post]").all()
    ]
    assert sorted(actions) == ["/collect", "/files/1/delete", "/upload"]

    for action in actions:
        with running(forged_form_site(f"{base_url}{action}")) as port:
            with page.expect_response(f"{base_url}{action}") as forged:
                page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_url(base_url + "/")
        # The session cookie went along (same site, other port): only the token was missing.
        assert forged.value.request.header_value("cookie")
        assert forged.value.status == 303
        expect(page.locator(".messages li")).to_have_text(
            ["Refused: The CSRF token is missing. Nothing was changed; try again."]
        )
    expect(page.locator(".gallery .name")).to_have_text(["red.png"])
    assert store.count() == 2

    # The gallery's own forms, with their token, still work.
    page.get_by_role("button", name="Delete red.png").click()
    expect(page.locator(".empty")).to_be_visible()
    page.get_by_role("button", name="Collect garbage").click()
    expect(page.locator(".messages li")).to_contain_text(["1 object removed"])
    assert store.count() == 1


@pytest.mark.parametrize("app_config", [{"MAX_CONTENT_LENGTH": 100 * 1024}])
def test_a_too_large_upload_says_the_limit(page: Page, base_url: str, app: Flask) -> None:
    page.goto(base_url + "/")
    expect(page.locator(".upload small")).to_contain_text("100.0 KiB in all")
    upload(page, payload("big.txt", "text/plain", b"x" * (300 * 1024)))

    expect(page.locator(".messages li")).to_have_text(
        ["Refused: the files chosen at once may total 100.0 KiB at most. Nothing was stored."]
    )
    expect(page.locator(".empty")).to_be_visible()
    assert fs.store_for(app).count() == 0

    upload(page, payload("small.txt", "text/plain", b"x" * 1024))
    expect(page.locator(".messages li")).to_have_text(["small.txt: stored."])


def test_a_1_0_database_keeps_its_rows(tmp_path: Path) -> None:
    """The 1.0 demo kept one row per content, keyed by its id; its rows carry over."""
    data = tmp_path / "data"
    data.mkdir()
    red_id = hashlib.sha256(RED).hexdigest()
    with sqlite3.connect(data / "demo.sqlite3") as db:
        db.execute(
            "CREATE TABLE upload (id TEXT PRIMARY KEY, name TEXT NOT NULL,"
            " content_type TEXT NOT NULL)"
        )
        db.execute("INSERT INTO upload VALUES (?, 'red.png', 'image/png')", (red_id,))
    app = create_app(data)
    create_app(data)  # and a second start changes nothing
    with sqlite3.connect(app.config["DEMO_DATABASE"]) as db:
        rows = db.execute("SELECT id, object_id, name, content_type FROM upload").fetchall()
    assert rows == [(1, red_id, "red.png", "image/png")]


@pytest.mark.parametrize("app_config", [{"DEMO_TUS_CHUNK_SIZE": 1 << 20}])
def test_a_big_file_goes_through_tus_and_resumes_after_a_reload(
    page: Page, base_url: str, app: Flask, tmp_path: Path
) -> None:
    body = b"%PDF-1.7\n" + hashlib.shake_256(b"big").digest((5 << 20) - 9)
    big = tmp_path / "report.pdf"
    big.write_bytes(body)  # a file on disk keeps its date: tus-js-client's fingerprint
    page.goto(base_url + "/")

    # The third chunk never reaches the server: the connection "drops" from there on.
    offsets: list[int] = []

    def drop_after_two_chunks(route: Route) -> None:
        if route.request.method == "PATCH":
            offsets.append(int(route.request.headers["upload-offset"]))
            if len(offsets) > 2:
                route.abort()
                return
        route.continue_()

    page.route("**/resumable/*", drop_after_two_chunks)
    page.set_input_files("#big", big)
    page.get_by_role("button", name="Send in chunks").click()
    expect(page.locator("#resumable-status")).to_contain_text(
        "Choose the file again to resume", timeout=30_000
    )
    assert offsets[:3] == [0, 1 << 20, 2 << 20]
    assert page.locator("#progress").evaluate("bar => bar.value") == 2 << 20
    page.unroute("**/resumable/*")

    page.reload()
    resumed: list[int] = []

    def patch_offsets(request: Request) -> None:
        if request.method == "PATCH":
            resumed.append(int(request.headers["upload-offset"]))

    page.on("request", patch_offsets)
    page.set_input_files("#big", big)
    page.get_by_role("button", name="Send in chunks").click()
    expect(page.locator(".messages .stored")).to_have_text("report.pdf: stored.", timeout=30_000)
    assert resumed == [2 << 20, 3 << 20, 4 << 20]
    expect(page.locator(".item .name")).to_have_text(["report.pdf"])
    with sqlite3.connect(app.config["DEMO_DATABASE"]) as db:
        rows = db.execute("SELECT object_id, name, content_type FROM upload").fetchall()
    assert rows == [(hashlib.sha256(body).hexdigest(), "report.pdf", "application/pdf")]


@pytest.fixture
def bucket_app(tmp_path: Path, s3_server: S3Server) -> Flask:
    """The demo as ``make demo DEMO_S3=1`` sets it up, on a prefix of its own."""
    config = bucket_config(s3_server)
    config["HASHFS_ROOT_FOLDER"] = f"s3://{DEMO_BUCKET}/{uuid.uuid4().hex}"
    return create_app(tmp_path / "data", config)


def test_on_a_bucket_files_go_straight_to_it(
    page: Page, bucket_app: Flask, s3_server: S3Server
) -> None:
    store = fs.store_for(bucket_app)
    with running(bucket_app) as port:
        base_url = f"http://127.0.0.1:{port}"
        allow_origins(s3_server, [base_url])
        page.goto(base_url + "/")
        puts: list[str] = []
        page.on(
            "request", lambda request: puts.append(request.url) if request.method == "PUT" else None
        )

        def send(*files: FilePayload) -> None:
            page.set_input_files("#straight", list(files))
            page.get_by_role("button", name="Send to the bucket").click()

        send(payload("red.png", "image/png", RED), payload("blue.png", "image/png", BLUE))
        expect(page.locator(".messages li")).to_have_text(["red.png: stored.", "blue.png: stored."])
        assert len(puts) == 2
        assert all(url.startswith(s3_server.endpoint + f"/{DEMO_BUCKET}/") for url in puts)
        expect(page.locator(".gallery .name")).to_have_text(["blue.png", "red.png"])
        page.wait_for_function(
            "() => [...document.images].length === 2"
            " && [...document.images].every(img => img.complete && img.naturalWidth > 0)"
        )

        send(payload("red copy.png", "image/png", RED))
        expect(page.locator(".messages li")).to_have_text(
            ["red copy.png: same bytes as red.png, stored once."]
        )
        send(payload("fake.png", "image/png", b"<html><script>alert(1)</script></html>"))
        expect(page.locator("#direct-status")).to_have_text(
            "fake.png: refused. The content does not match its type (image/png)."
        )
        assert store.count() == 2
        assert list(store.backend.reserved_keys(".hashfs/incoming")) == []
    with sqlite3.connect(bucket_app.config["DEMO_DATABASE"]) as db:
        names = [name for (name,) in db.execute("SELECT name FROM upload ORDER BY id")]
    assert names == ["red.png", "blue.png", "red copy.png"]
