"""An app with the tus blueprint under /files, for the tus tests.

Run as ``python -m tests.tus_app ROOT PORT`` it serves on 127.0.0.1:PORT in a process of
its own, which a test can kill with SIGKILL and start again; each finished upload is then
appended to ``ROOT.finished`` as a line ``<id> <is_duplicate> <file name>``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flask import Flask, send_file
from werkzeug.serving import make_server

from flask_hashfs import FlaskHashFS, HashAddress
from flask_hashfs.resumable import Upload
from flask_hashfs.tus import TusUploads

NODE_MODULES = Path(__file__).resolve().parent.parent / "node_modules"
#: Larger than any chunk the tests send in one request: tus bodies are not bound by it.
MAX_CONTENT_LENGTH = 256 << 10


def tus_app(
    root: Path | str,
    on_finished: Callable[[Upload, HashAddress], None] | None = None,
    config: Mapping[str, Any] | None = None,
    **options: Any,
) -> tuple[Flask, TusUploads]:
    """The app, and its tus endpoint made with ``options``; ``config`` overrides."""
    app = Flask(__name__)
    app.config.update(HASHFS_ROOT_FOLDER=str(root), MAX_CONTENT_LENGTH=MAX_CONTENT_LENGTH)
    app.config.update(config or {})
    fs = FlaskHashFS(app)
    options.setdefault("max_size", 64 << 20)
    tus = TusUploads(fs, on_finished=on_finished, **options)
    app.register_blueprint(tus.blueprint, url_prefix="/files")

    @app.get("/tus.js")
    def tus_js() -> Any:
        """tus-js-client from node_modules (installed by make): no CDN."""
        return send_file(NODE_MODULES / "tus-js-client" / "dist" / "tus.min.js")

    @app.get("/blank")
    def blank() -> str:
        return "<!doctype html><title>tus</title><script src='/tus.js'></script>"

    return app, tus


def main(root: str, port: int) -> None:
    log = Path(root + ".finished")

    def finished(upload: Upload, address: HashAddress) -> None:
        with log.open("a") as file:
            name = upload.metadata.get("filename", "")
            file.write(f"{address.id} {address.is_duplicate} {name}\n")

    app, _ = tus_app(root, finished)
    make_server("127.0.0.1", port, app, threaded=True).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
