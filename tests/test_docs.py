"""The code in the README and docs/production.md runs as written: each snippet is read
from the page and run, with only its example folder replaced by a temp folder."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_hashfs import FlaskHashFS

ROOT = Path(__file__).parent.parent
JPEG = b"\xff\xd8\xff\xe0" + bytes(100)
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(100)


def snippet(page: str, after: str, containing: str = "") -> str:
    """The first ```python block of ``page`` after the line ``after`` that contains
    ``containing``."""
    text = (ROOT / page).read_text()
    start = text.index(after)
    for block in re.findall(r"```python\n(.*?)```", text[start:], re.DOTALL):
        if containing in block:
            return str(block)
    raise AssertionError(f"{page} has no python block with {containing!r} after {after!r}")


def run(code: str, **names: Any) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "snippet", **names}
    exec(compile(code, "snippet", "exec"), namespace)
    return namespace


@pytest.mark.parametrize(
    ("name", "data"),
    [("IMG_0001.JPEG", JPEG), ("photo.jpg", JPEG), ("photo.webp", WEBP)],
)
def test_readme_quickstart_takes_camera_and_web_images(
    tmp_path: Path, name: str, data: bytes
) -> None:
    code = snippet("README.md", "## Quickstart: Flask").replace(
        "/var/www/data/uploads", str(tmp_path / "uploads")
    )
    app: Flask = run(code)["app"]
    reply = app.test_client().post("/photos", data={"photo": (io.BytesIO(data), name)})
    assert reply.status_code == 201, reply.get_data(as_text=True)
    assert reply.get_json()["url"].startswith("http://localhost/uploads/")


def test_production_proxy_fix_keeps_urls_https(tmp_path: Path) -> None:
    app = Flask(__name__)
    app.config.update(HASHFS_ROOT_FOLDER=str(tmp_path), HASHFS_PATH_PREFIX="/uploads")
    fs = FlaskHashFS(app)

    @app.get("/link")
    def link() -> str:
        return fs.url_for("a/b/c.png")

    run(snippet("docs/production.md", "## Behind a proxy", "ProxyFix"), app=app)
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    reply = app.test_client().get("/link", headers=forwarded)
    assert reply.get_data(as_text=True) == "https://localhost/uploads/a/b/c.png"
