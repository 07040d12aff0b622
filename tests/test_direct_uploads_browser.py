"""Direct uploads in a real headless Chromium (Debian's ``chromium``), to SeaweedFS.

The page loads hash-wasm from node_modules (``make`` installs it with npm) and the
blueprint's ``direct-upload.js``; the bucket allows the app's origin by CORS, as a
deployment's must. The app counts the bytes it receives, to show that the file's own
never pass through it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Route

from flask_hashfs import HashFS

from .browser import chromium_page, needs_chromium
from .direct_app import NODE_MODULES, DirectApp, allow_origin, create_bucket, direct_app
from .s3_server import S3Server
from .serving_helpers import running

pytestmark = needs_chromium

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64

#: Runs the page's own flow on the chosen file; the outcome, refusals included.
UPLOAD = """async () => {
  const file = document.querySelector("#file").files[0];
  const phases = new Set();
  try {
    const answer = await directUpload(file, {
      endpoint: "/direct",
      onProgress: (phase) => phases.add(phase),
    });
    return { ok: true, answer, phases: [...phases] };
  } catch (error) {
    return { ok: false, status: error.status, message: error.message };
  }
}"""


class ByteCounter:
    """WSGI middleware: the request bodies' bytes the app was sent."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.received = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.received += int(environ.get("CONTENT_LENGTH") or 0)
        return self.app(environ, start_response)  # type: ignore[no-any-return]


@pytest.fixture
def direct(s3_server: S3Server) -> DirectApp:
    assert (NODE_MODULES / "hash-wasm").is_dir(), "run `make` first: npm installs hash-wasm"
    create_bucket(s3_server)
    return direct_app(s3_server)


@pytest.fixture
def store(direct: DirectApp) -> HashFS:
    return direct.fs.store_for(direct.app)


@pytest.fixture
def counter(direct: DirectApp) -> ByteCounter:
    counter = ByteCounter(direct.app.wsgi_app)
    direct.app.wsgi_app = counter  # type: ignore[method-assign]
    return counter


@pytest.fixture
def base_url(direct: DirectApp, counter: ByteCounter, s3_server: S3Server) -> Iterator[str]:
    with running(direct.app) as port:
        origin = f"http://127.0.0.1:{port}"
        allow_origin(s3_server, origin)
        yield origin


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    with chromium_page(tmp_path / "chromium-profile") as page:
        yield page


def open_page(page: Page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready=yes]", state="attached")


def incoming(store: HashFS) -> list[str]:
    return list(store.backend.reserved_keys(".hashfs/incoming"))


def test_uploads_go_straight_to_the_bucket(
    page: Page,
    base_url: str,
    direct: DirectApp,
    store: HashFS,
    counter: ByteCounter,
    tmp_path: Path,
) -> None:
    open_page(page, base_url + "/login/alice")
    # Small files are hashed by Web Crypto, large ones in chunks by hash-wasm.
    large = tmp_path / "large.bin"
    large.write_bytes(bytes(range(256)) * (40 << 12))
    for file in ({"name": "photo.png", "mimeType": "image/png", "buffer": PNG}, large):
        page.set_input_files("#file", file)  # type: ignore[arg-type]
        outcome = page.evaluate(UPLOAD)
        assert outcome["ok"], outcome
        assert outcome["phases"] == ["hash", "upload"]
    assert [row.intent.name for row in direct.rows] == ["photo.png", "large.bin"]
    assert [row.user for row in direct.rows] == ["alice", "alice"]
    for row, data in zip(direct.rows, (PNG, large.read_bytes()), strict=True):
        assert row.address.id == hashlib.sha256(data).hexdigest()
        with store.open(row.address.id) as stream:
            assert stream.read() == data
    assert counter.received < 4096, "the files' bytes went through the app"
    assert incoming(store) == []
    # The app's answer: the object's URL, which the browser can load.
    url = outcome["answer"]["url"]
    status = page.evaluate("url => fetch(url).then(r => r.status)", url)
    assert status == 200


def test_bytes_changed_on_the_way_are_refused_and_nothing_is_published(
    page: Page, base_url: str, direct: DirectApp, store: HashFS, s3_server: S3Server
) -> None:
    open_page(page, base_url + "/login/alice")
    tampered = PNG[:-1] + b"!"

    def change_body(route: Route) -> None:
        if route.request.method == "PUT":
            route.continue_(post_data=tampered)
        else:
            route.continue_()

    page.route(s3_server.endpoint + "/**", change_body)
    page.set_input_files("#file", {"name": "photo.png", "mimeType": "image/png", "buffer": PNG})
    outcome = page.evaluate(UPLOAD)
    assert outcome == {"ok": False, "status": 400, "message": "The storage refused the file."}
    page.unroute(s3_server.endpoint + "/**")

    # A hostile page, with the app's own ticket: other bytes, then no checksum header.
    statuses = page.evaluate(
        """async ([good, bad]) => {
          const sha256 = await crypto.subtle.digest("SHA-256", new Uint8Array(good));
          const hex = [...new Uint8Array(sha256)].map(b => b.toString(16).padStart(2, "0"));
          const post = (path, data) => fetch(path, {
            method: "POST", headers: {"Content-Type": "application/json"},
            body: JSON.stringify(data),
          });
          const authorized = await (await post("/direct/authorize",
            {name: "photo.png", size: good.length, sha256: hex.join("")})).json();
          const checksum = authorized.headers["x-amz-checksum-sha256"];
          const put = (headers) => fetch(authorized.url,
            {method: "PUT", headers, body: new Uint8Array(bad)}).then(r => r.status);
          return [
            await put({"x-amz-checksum-sha256": checksum}),
            await put({}),
            (await post("/direct/complete", {ticket: authorized.ticket})).status,
          ];
        }""",
        [list(PNG), list(tampered)],
    )
    assert statuses == [400, 403, 409]
    assert direct.rows == []
    assert store.count() == 0
    assert incoming(store) == []


def test_a_visitor_the_app_does_not_authorize_is_refused(
    page: Page, base_url: str, direct: DirectApp, store: HashFS
) -> None:
    open_page(page, base_url + "/")
    page.set_input_files("#file", {"name": "photo.png", "mimeType": "image/png", "buffer": PNG})
    outcome = page.evaluate(UPLOAD)
    assert outcome == {"ok": False, "status": 403, "message": "You may not upload this file."}
    assert direct.rows == []
    assert store.count() == 0
    assert incoming(store) == []
