"""A small gallery on Flask-HashFS: the demo that ``make demo`` runs.

It follows the documented pattern: the bytes go into the store, and a database row keeps
the content id next to what the app knows about the upload (original name, content
type). One row per content: uploading the same bytes again is recognised as a duplicate,
and neither stored nor listed twice; so deleting a row may delete its object at once.

Every form that changes state carries a CSRF token (Flask-WTF's ``CSRFProtect``), and
every refusal, a stale form or an upload over ``MAX_CONTENT_LENGTH``, comes back to the
gallery as a message instead of a bare error page.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from flask import Flask, abort, current_app, flash, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect
from jinja2.filters import do_filesizeformat
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Response

from flask_hashfs import FlaskHashFS
from flask_hashfs.headers import media_type
from flask_hashfs.uploads import filename_extension

fs = FlaskHashFS()
csrf = CSRFProtect()

#: Inside the repository (and git-ignored), so that a demo leaves nothing elsewhere.
DEFAULT_DATA_FOLDER = Path(__file__).resolve().parents[2] / ".demo-data"

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp"})
ALLOWED_EXTENSIONS = IMAGE_EXTENSIONS | {".txt", ".pdf"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS upload (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL
)
"""


def create_app(
    data_folder: str | os.PathLike[str] | None = None, config: Mapping[str, Any] | None = None
) -> Flask:
    """The demo app, keeping its objects and its database under ``data_folder``.

    :param config: settings that replace the demo's own (a test's smaller upload limit).
    """
    data = Path(data_folder) if data_folder is not None else DEFAULT_DATA_FOLDER
    data.mkdir(parents=True, exist_ok=True)
    app = Flask(__name__)
    app.config.update(
        # Flash messages live in the session cookie; a key per run is enough for a demo.
        SECRET_KEY=secrets.token_hex(),
        MAX_CONTENT_LENGTH=32 * 1024 * 1024,
        DEMO_DATABASE=str(data / "demo.sqlite3"),
        HASHFS_ROOT_FOLDER=str(data / "objects"),
        HASHFS_PATH_PREFIX="/uploads",
        HASHFS_SERVE=True,
        # A token for as long as the session lives: a gallery left open for an afternoon
        # still uploads.
        WTF_CSRF_TIME_LIMIT=None,
    )
    app.config.update(config or {})
    fs.init_app(app)
    csrf.init_app(app)
    with closing(sqlite3.connect(app.config["DEMO_DATABASE"])) as db:
        db.execute(SCHEMA)
    app.add_url_rule("/", view_func=gallery)
    app.add_url_rule("/upload", view_func=upload, methods=["POST"])
    app.add_url_rule("/files/<id>/delete", view_func=delete, methods=["POST"])
    app.add_url_rule("/files/<id>/download", view_func=download)
    app.register_error_handler(RequestEntityTooLarge, too_large)
    app.register_error_handler(CSRFError, stale_form)
    return app


@contextmanager
def database(*, write: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection; with ``write``, one transaction that holds SQLite's write lock.

    Holding that lock across the store call keeps rows and objects in step: a delete
    cannot remove an object between another request's put (which found it a duplicate)
    and that request's insert of its row.
    """
    path = current_app.config["DEMO_DATABASE"]
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.row_factory = sqlite3.Row
        if not write:
            yield db
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def gallery() -> str:
    with database() as db:
        rows = db.execute("SELECT * FROM upload ORDER BY rowid DESC").fetchall()
    items = []
    for row in rows:
        info = fs.info(row["id"])
        if info is None:
            continue
        items.append(
            {
                "id": row["id"],
                "name": row["name"],
                "content_type": row["content_type"],
                "is_image": row["content_type"].startswith("image/"),
                "size": info.size,
                "url": fs.url_for(info.key),
            }
        )
    return render_template(
        "gallery.html",
        items=items,
        accept=",".join(sorted(ALLOWED_EXTENSIONS)),
        limit=upload_limit(),
    )


def upload() -> Response:
    files = [file for file in request.files.getlist("files") if file.filename]
    if not files:
        flash("Choose one or more files first.", "refused")
    for file in files:
        name = file.filename or ""
        try:
            with database(write=True) as db:
                address = fs.put_upload(file, allowed_extensions=ALLOWED_EXTENSIONS)
                # The type the serving route sends: from the stored extension, never
                # from the client.
                content_type = media_type(filename_extension(address.relpath))
                db.execute(
                    "INSERT OR IGNORE INTO upload (id, name, content_type) VALUES (?, ?, ?)",
                    (address.id, name, content_type),
                )
                first = db.execute("SELECT name FROM upload WHERE id = ?", (address.id,))
                first_name = first.fetchone()["name"]
        except HTTPException as refusal:
            flash(f"{name}: refused. {refusal.description}", "refused")
        else:
            if address.is_duplicate:
                flash(f"{name}: duplicate, already stored as {first_name}.", "duplicate")
            else:
                flash(f"{name}: stored.", "stored")
    return redirect(url_for("gallery"), code=303)


def delete(id: str) -> Response:
    with database(write=True) as db:
        row = db.execute("SELECT name FROM upload WHERE id = ?", (id,)).fetchone()
        if row is None:
            abort(404)
        db.execute("DELETE FROM upload WHERE id = ?", (id,))
        fs.delete(id)
    flash(f"{row['name']}: deleted.", "deleted")
    return redirect(url_for("gallery"), code=303)


def download(id: str) -> Response:
    """The object under the name it was uploaded with, not its hash."""
    with database() as db:
        row = db.execute("SELECT name FROM upload WHERE id = ?", (id,)).fetchone()
    if row is None:
        abort(404)
    return fs.send(id, download_name=row["name"], as_attachment=True)


def upload_limit() -> str | None:
    """``MAX_CONTENT_LENGTH`` as a person reads it, or None without a limit."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    return None if limit is None else do_filesizeformat(limit, binary=True)


def too_large(error: RequestEntityTooLarge) -> Response:
    """Werkzeug refuses the whole request before any file is read: say so, with the limit."""
    flash(
        f"Refused: the files chosen at once may total {upload_limit()} at most."
        " Nothing was stored.",
        "refused",
    )
    return redirect(url_for("gallery"), code=303)


def stale_form(error: CSRFError) -> Response:
    """A form without a valid token changes nothing: one from another site, or one from
    before the server restarted (the demo draws a new secret key at each start)."""
    flash(f"Refused: {error.description} Nothing was changed; try again.", "refused")
    return redirect(url_for("gallery"), code=303)
