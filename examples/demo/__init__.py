"""A small gallery on Flask-HashFS: the demo that ``make demo`` runs.

It follows the documented pattern: the bytes go into the store, and a database row keeps
the content id next to what the app knows about the upload (original name, content
type). One row per upload: the same bytes uploaded twice, under one name or two, are two
rows and one stored object. So deleting a row never deletes its object, which another
row may use; "Collect garbage" sweeps the store instead, keeping every object a row
references (the live ids) and every object stored or claimed within a short grace, and
says how much space came back. Each row commits right after its put, well within that
grace, which is the one rule the sweep asks of the app (docs/lifecycle.md).

Every form that changes state carries a CSRF token (Flask-WTF's ``CSRFProtect``), and
every refusal, a stale form or an upload over ``MAX_CONTENT_LENGTH``, comes back to the
gallery as a message instead of a bare error page.

Big files go through the tus blueprint instead (``static/resumable.js`` on
tus-js-client, which ``make`` installs from npm and the app serves from
``node_modules``): in chunks, with a progress bar, and on after a reload or a dropped
connection. Each upload belongs to the browser session that started it, its requests
carry the CSRF token in a header, and its row is written when its last byte is stored.

On a bucket (``make demo DEMO_S3=1``, see ``demo.s3``) a third form sends files
straight to the bucket (``static/direct.js`` on the direct-upload blueprint's script,
with hash-wasm from ``node_modules``): the app authorizes each one and records it once
it arrived, and no byte passes through the app.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from flask import (
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFError, CSRFProtect
from jinja2.filters import do_filesizeformat
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Response

from flask_hashfs import FlaskHashFS, HashAddress, SweepReport
from flask_hashfs.direct_uploads import Action as DirectAction
from flask_hashfs.direct_uploads import DirectUploads, UploadIntent
from flask_hashfs.headers import media_type
from flask_hashfs.resumable import Upload
from flask_hashfs.tus import Action, TusUploads
from flask_hashfs.uploads import filename_extension

fs = FlaskHashFS()
csrf = CSRFProtect()

#: Inside the repository (and git-ignored), so that a demo leaves nothing elsewhere.
DEFAULT_DATA_FOLDER = Path(__file__).resolve().parents[2] / ".demo-data"
NODE_MODULES = Path(__file__).resolve().parents[2] / "node_modules"
#: The browser builds of tus-js-client and of hash-wasm's SHA-256, installed by ``make``
#: (package.json): no CDN.
TUS_JS = NODE_MODULES / "tus-js-client/dist/tus.min.js"
HASH_WASM_JS = NODE_MODULES / "hash-wasm/dist/sha256.umd.min.js"

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp"})
ALLOWED_EXTENSIONS = IMAGE_EXTENSIONS | {".txt", ".pdf"}
#: What the resumable form takes: the same, plus videos and archives.
RESUMABLE_EXTENSIONS = ALLOWED_EXTENSIONS | {".mp4", ".webm", ".zip"}
RESUMABLE_MAX_SIZE = 4 << 30

#: ``AUTOINCREMENT`` never gives a deleted row's number to a new one, so a delete form
#: left open in another tab cannot delete a later upload.
SCHEMA = (
    """
    CREATE TABLE upload (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        object_id TEXT NOT NULL,
        name TEXT NOT NULL,
        content_type TEXT NOT NULL
    )
    """,
    "CREATE INDEX upload_object_id ON upload (object_id)",
)


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
        # Seconds an unreferenced object survives "Collect garbage" after its last put:
        # short, so that a visitor sees space come back; a real app keeps the CLI's 24 h.
        DEMO_GC_GRACE=5.0,
        HASHFS_ROOT_FOLDER=str(data / "objects"),
        HASHFS_PATH_PREFIX="/uploads",
        HASHFS_SERVE=True,
        # A token for as long as the session lives: a gallery left open for an afternoon
        # still uploads.
        WTF_CSRF_TIME_LIMIT=None,
        # Bytes per tus request of the resumable form.
        DEMO_TUS_CHUNK_SIZE=8 * 1024 * 1024,
    )
    app.config.update(config or {})
    fs.init_app(app)
    fs.live_ids_loader(app=app)(live_ids)
    csrf.init_app(app)
    with closing(sqlite3.connect(app.config["DEMO_DATABASE"], isolation_level=None)) as db:
        create_schema(db)
    app.add_url_rule("/", view_func=gallery)
    app.add_url_rule("/upload", view_func=upload, methods=["POST"])
    app.add_url_rule("/files/<int:row>/delete", view_func=delete, methods=["POST"])
    app.add_url_rule("/files/<int:row>/download", view_func=download)
    app.add_url_rule("/collect", view_func=collect, methods=["POST"])
    app.add_url_rule("/vendor/tus.min.js", view_func=tus_js)
    app.register_blueprint(tus.blueprint, url_prefix="/resumable")
    if fs.store_for(app).max_upload_size:  # a bucket: the browser may upload to it
        app.add_url_rule("/vendor/sha256.umd.min.js", view_func=hash_wasm_js)
        app.register_blueprint(direct.blueprint, url_prefix="/direct-uploads")
    app.register_error_handler(RequestEntityTooLarge, too_large)
    app.register_error_handler(CSRFError, stale_form)
    app.add_template_global(plural)
    return app


def create_schema(db: sqlite3.Connection) -> None:
    """Create the tables, once (``PRAGMA user_version`` says which schema is there).

    A database from the 1.0 demo (one row per content, keyed by its id) keeps its rows.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        if db.execute("PRAGMA user_version").fetchone()[0] == 0:
            old = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'upload'").fetchone()
            if old:
                db.execute("ALTER TABLE upload RENAME TO upload_1_0")
            for statement in SCHEMA:
                db.execute(statement)
            if old:
                db.execute(
                    "INSERT INTO upload (object_id, name, content_type)"
                    " SELECT id, name, content_type FROM upload_1_0 ORDER BY rowid"
                )
                db.execute("DROP TABLE upload_1_0")
            db.execute("PRAGMA user_version = 1")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


@contextmanager
def database() -> Iterator[sqlite3.Connection]:
    """A connection in autocommit mode: each statement commits on its own.

    No transaction spans a store call: a row commits right after the put that produced
    its id, and the sweep's grace covers the moment in between.
    """
    path = current_app.config["DEMO_DATABASE"]
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.row_factory = sqlite3.Row
        yield db


def live_ids() -> Iterator[str]:
    """Every object id a row references: what a sweep must keep, here and in ``flask
    --app examples/demo hashfs gc`` (the app's live ids loader)."""
    with database() as db:
        for row in db.execute("SELECT DISTINCT object_id FROM upload"):
            yield row["object_id"]


def gallery() -> str:
    with database() as db:
        rows = db.execute(
            "SELECT *, COUNT(*) OVER (PARTITION BY object_id) AS sharing"
            " FROM upload ORDER BY id DESC"
        ).fetchall()
    items = []
    for row in rows:
        info = fs.info(row["object_id"])
        if info is None:
            continue
        items.append(
            {
                "row": row["id"],
                "id": row["object_id"],
                "name": row["name"],
                "content_type": row["content_type"],
                "is_image": row["content_type"].startswith("image/"),
                "size": info.size,
                "shared_with": row["sharing"] - 1,
                "url": fs.url_for(info.key),
            }
        )
    visitor()
    return render_template(
        "gallery.html",
        items=items,
        objects=fs.count(),
        stored_bytes=fs.size(),
        accept=",".join(sorted(ALLOWED_EXTENSIONS)),
        limit=upload_limit(),
        grace=current_app.config["DEMO_GC_GRACE"],
        resumable_accept=",".join(sorted(RESUMABLE_EXTENSIONS)),
        resumable_limit=size(RESUMABLE_MAX_SIZE),
        chunk_size=current_app.config["DEMO_TUS_CHUNK_SIZE"],
        direct=direct.blueprint.name in current_app.blueprints,
    )


def upload() -> Response:
    files = [file for file in request.files.getlist("files") if file.filename]
    if not files:
        flash("Choose one or more files first.", "refused")
    for file in files:
        name = file.filename or ""
        try:
            address = fs.put_upload(file, allowed_extensions=ALLOWED_EXTENSIONS)
        except HTTPException as refusal:
            flash(f"{name}: refused. {refusal.description}", "refused")
            continue
        record(name, address)
    return redirect(url_for("gallery"), code=303)


def record(name: str, address: HashAddress) -> None:
    """The upload's row, and a message that says whether its bytes were new."""
    # The type the serving route sends: from the stored extension, never from the client.
    content_type = media_type(filename_extension(address.relpath))
    with database() as db:
        row = db.execute(
            "INSERT INTO upload (object_id, name, content_type) VALUES (?, ?, ?)",
            (address.id, name, content_type),
        ).lastrowid
        first = db.execute(
            "SELECT name FROM upload WHERE object_id = ? AND id != ? ORDER BY id LIMIT 1",
            (address.id, row),
        ).fetchone()
    if not address.is_duplicate:
        flash(f"{name}: stored.", "stored")
    elif first is not None:
        flash(f"{name}: same bytes as {first['name']}, stored once.", "duplicate")
    else:
        flash(
            f"{name}: same bytes as a deleted upload not yet collected, stored once.",
            "duplicate",
        )


def visitor() -> str:
    """Who the browser is: a random id in its session cookie, drawn on its first visit.
    Each resumable upload belongs to the visitor that created it."""
    if "visitor" not in session:
        session["visitor"] = secrets.token_urlsafe(16)
    return str(session["visitor"])


def may_upload(action: Action, upload: Upload | None) -> bool:
    """Any visitor with a session may upload; CSRFProtect has checked the token header
    of every request that changes something (POST, PATCH, DELETE) before this runs."""
    return action == "options" or "visitor" in session


def finished(upload: Upload, address: HashAddress) -> None:
    record(upload.metadata.get("filename") or "upload", address)


tus = TusUploads(
    fs,
    max_size=RESUMABLE_MAX_SIZE,
    allowed_extensions=RESUMABLE_EXTENSIONS,
    authorize=may_upload,
    identify=visitor,
    on_finished=finished,
)


def may_direct_upload(action: DirectAction, intent: UploadIntent) -> bool:
    """As for tus: any visitor with a session, whose POSTs CSRFProtect has checked."""
    return "visitor" in session


def direct_uploaded(intent: UploadIntent, address: HashAddress) -> None:
    """The row and the gallery's message; the browser's answer is only the id."""
    record(intent.name, address)


direct = DirectUploads(
    fs,
    max_size=RESUMABLE_MAX_SIZE,
    allowed_extensions=RESUMABLE_EXTENSIONS,
    authorize=may_direct_upload,
    identify=visitor,
    on_upload=direct_uploaded,
)


def tus_js() -> Response:
    return vendor(TUS_JS)


def hash_wasm_js() -> Response:
    return vendor(HASH_WASM_JS)


def vendor(path: Path) -> Response:
    if not path.exists():
        abort(404, f"{path.name} is missing: run make, which installs it from npm.")
    return send_file(path, max_age=3600)


def delete(row: int) -> Response:
    """Delete the row, never the object: another row may share it, and a put may be
    claiming it right now. The next sweep removes it once no row uses it."""
    with database() as db:
        deleted = db.execute(
            "DELETE FROM upload WHERE id = ? RETURNING name, object_id", (row,)
        ).fetchone()
        if deleted is None:
            abort(404)
        (others,) = db.execute(
            "SELECT COUNT(*) FROM upload WHERE object_id = ?", (deleted["object_id"],)
        ).fetchone()
    if others:
        flash(
            f"{deleted['name']}: deleted. Its bytes stay: {plural(others, 'other upload')}"
            f" {'uses' if others == 1 else 'use'} them.",
            "deleted",
        )
    else:
        flash(f"{deleted['name']}: deleted. Collect garbage to free its space.", "deleted")
    return redirect(url_for("gallery"), code=303)


def download(row: int) -> Response:
    """The object under the name it was uploaded with, not its hash."""
    with database() as db:
        found = db.execute("SELECT name, object_id FROM upload WHERE id = ?", (row,)).fetchone()
    if found is None:
        abort(404)
    return fs.send(found["object_id"], download_name=found["name"], as_attachment=True)


def collect() -> Response:
    """Sweep the store with the rows' ids as the live set, and say what came back."""
    grace = current_app.config["DEMO_GC_GRACE"]
    report = fs.sweep(grace=grace)
    flash(collected(report, grace), "collected")
    return redirect(url_for("gallery"), code=303)


def collected(report: SweepReport, grace: float) -> str:
    return (
        f"Garbage collected: {plural(report.removed, 'object')} removed,"
        f" {size(report.removed_bytes)} freed."
        f" Kept {plural(report.kept_live, 'object')} in use ({size(report.kept_live_bytes)})"
        f" and {plural(report.kept_recent, 'object')} ({size(report.kept_recent_bytes)})"
        f" stored or uploaded again in the last {grace:g} seconds."
    )


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def size(count: int) -> str:
    return do_filesizeformat(count, binary=True)


def upload_limit() -> str | None:
    """``MAX_CONTENT_LENGTH`` as a person reads it, or None without a limit."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    return None if limit is None else size(limit)


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
