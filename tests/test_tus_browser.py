"""tus-js-client (npm, from node_modules) in a real headless Chromium against the tus
blueprint on 127.0.0.1: an upload aborted halfway, then resumed at its URL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page

from flask_hashfs import HashAddress, HashFS
from flask_hashfs.resumable import Upload

from .browser import chromium_page, needs_chromium
from .serving_helpers import running
from .tus_app import NODE_MODULES, tus_app

pytestmark = needs_chromium

SIZE = 6 << 20
CHUNK = 1 << 20
#: The file the page builds, byte i being (i * 31 + 7) mod 256; the same here in Python.
CONTENT = bytes((i * 31 + 7) & 255 for i in range(256)) * (SIZE // 256)

CUT = """async ({size, chunk}) => {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + 7) & 255;
  window.testFile = new File([bytes], "clip.bin");
  return await new Promise((resolve, reject) => {
    let cut = false;
    const upload = new tus.Upload(window.testFile, {
      endpoint: "/files",
      chunkSize: chunk,
      metadata: {filename: "clip.bin"},
      onProgress: (sent, total) => {
        if (!cut && sent >= total / 2) {
          cut = true;
          upload.abort().then(() => resolve(upload.url));
        }
      },
      onError: reject,
      onSuccess: () => reject(new Error("finished before the cut")),
    });
    upload.start();
  });
}"""

RESUME = """async ({url, chunk}) => await new Promise((resolve, reject) => {
  const upload = new tus.Upload(window.testFile, {
    uploadUrl: url,
    chunkSize: chunk,
    retryDelays: [100, 200, 400, 800, 1600],
    onError: reject,
    onSuccess: () => resolve(upload.url),
  });
  upload.start();
})"""


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    assert (NODE_MODULES / "tus-js-client").is_dir(), "run make: it installs node_modules"
    with chromium_page(tmp_path / "chromium-profile") as page:
        yield page


def test_tus_js_client_cut_halfway_and_resumed(page: Page, root: Path) -> None:
    finished: list[tuple[Upload, HashAddress]] = []
    app, tus = tus_app(root, lambda upload, address: finished.append((upload, address)))
    with running(app) as port:
        page.goto(f"http://127.0.0.1:{port}/blank")
        url = page.evaluate(CUT, {"size": SIZE, "chunk": CHUNK})
        token = url.rpartition("/")[2]
        with app.app_context():
            stored = tus.uploads(app).get(token)
        assert 2 * CHUNK <= stored.offset < SIZE
        assert finished == []
        resumed = page.evaluate(RESUME, {"url": url, "chunk": CHUNK})
        assert resumed == url
    [(upload, address)] = finished
    assert upload.token == token
    assert upload.metadata["filename"] == "clip.bin"
    assert address.id == hashlib.sha256(CONTENT).hexdigest()
    with HashFS(root).open(address.id) as stored_file:
        assert stored_file.read() == CONTENT
