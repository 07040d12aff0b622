"""The demo app end to end, in a real headless Chromium (Debian's ``chromium`` package).

The app runs on a real server on a free 127.0.0.1 port; the browser fills in the upload
form, reads the gallery, loads the thumbnails through the extension's serving route,
downloads and deletes, and is refused where a form comes from another origin or is too
large. Playwright drives the system browser: never ``playwright install``.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from demo import create_app, fs
from flask import Flask
from playwright.sync_api import FilePayload, Page, expect, sync_playwright

from .serving_helpers import running

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium: apt-get install chromium",
)


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
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path / "chromium-profile",
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            yield context.new_page()
        finally:
            context.close()


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
            "red copy.png: duplicate, already stored as red.png.",
            "<b>notes</b>.txt: stored.",
            re.compile(r"page\.html: refused\. .*\.html.* not accepted"),
            re.compile(r"fake\.png: refused\. .*image/png"),
        ]
    )
    expect(page.locator(".messages .refused")).to_have_count(2)
    assert page.locator(".messages .duplicate").count() == 1
    names = page.locator(".gallery .name").all_inner_texts()
    assert sorted(names) == ["<b>notes</b>.txt", "blue.png", "red.png"]
    assert page.locator("b").count() == 0, "an uploaded name was rendered as HTML"
    assert fs.store_for(app).count() == 3, "the duplicate was stored twice"

    # Both thumbnails were fetched and decoded by the browser, at their real size.
    page.wait_for_function(
        "() => [...document.images].length === 2"
        " && [...document.images].every(img => img.complete && img.naturalWidth > 0)"
    )
    red = page.get_by_alt_text("red.png")
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


def test_delete(page: Page, base_url: str, app: Flask) -> None:
    page.goto(base_url + "/")
    upload(
        page,
        payload("red.png", "image/png", RED),
        payload("blue.png", "image/png", BLUE),
    )
    blue_url = page.get_by_alt_text("blue.png").get_attribute("src")
    assert blue_url is not None

    page.get_by_role("button", name="Delete blue.png").click()

    expect(page.locator(".messages li")).to_have_text(["blue.png: deleted."])
    expect(page.locator(".gallery .name")).to_have_text(["red.png"])
    assert fs.store_for(app).count() == 1
    # The browser may keep its copy (the response was immutable); the server has none.
    status = page.evaluate("url => fetch(url, {cache: 'no-store'}).then(r => r.status)", blue_url)
    assert status == 404

    page.goto(base_url + "/")
    page.get_by_role("button", name="Delete red.png").click()
    expect(page.locator(".messages li")).to_have_text(["red.png: deleted."])
    expect(page.locator(".empty")).to_be_visible()


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


def test_a_form_from_another_origin_changes_nothing(page: Page, base_url: str, app: Flask) -> None:
    page.goto(base_url + "/")
    upload(page, payload("red.png", "image/png", RED))
    expect(page.locator(".messages li")).to_have_text(["red.png: stored."])
    delete_url = page.locator("form:has(button[aria-label='Delete red.png'])").get_attribute(
        "action"
    )
    assert delete_url is not None

    with running(forged_form_site(base_url + delete_url)) as port:
        with page.expect_response(base_url + delete_url) as forged:
            page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_url(base_url + "/")

    # The session cookie went along (same site, other port): only the token was missing.
    assert forged.value.request.header_value("cookie")
    assert forged.value.status == 303
    expect(page.locator(".messages li")).to_have_text(
        [re.compile(r"Refused: The CSRF token is missing\. Nothing was changed")]
    )
    expect(page.locator(".gallery .name")).to_have_text(["red.png"])
    assert fs.store_for(app).count() == 1

    # The gallery's own form, with its token, still works.
    page.get_by_role("button", name="Delete red.png").click()
    expect(page.locator(".messages li")).to_have_text(["red.png: deleted."])
    assert fs.store_for(app).count() == 0


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
