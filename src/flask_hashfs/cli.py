"""``flask hashfs ...``: the operator's checks on the current app's store, ``gc``,
``migrate``, and ``nginx-config``, which prints the nginx config that serves the store.

``verify`` is safe to run at any time, on a live store: it only reads. ``repair`` moves
files and never deletes the last copy of any content; it removes temp files only when
no live writer holds them. ``gc`` removes objects that no row references and that no put
stored or claimed within the grace period; it is safe on a live store as long as rows
commit within that grace. Every file name these commands print has its control
characters escaped, so that a hostile name cannot drive the terminal.

``migrate`` is imported when it runs, not with this module: the package imports this
module, and ``python -m flask_hashfs.migrate`` must find the module not yet imported.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click
from flask import current_app
from flask.cli import AppGroup

from .errors import StorageError
from .layout import Layout
from .maintenance import Progress, VerifyReport, escape
from .nginx import nginx_config
from .resumable import remove_expired
from .store import HashFS

if TYPE_CHECKING:
    from .extension import FlaskHashFS

hashfs_cli = AppGroup("hashfs", help="Check, repair and migrate the Flask-HashFS store.")


def _extension() -> FlaskHashFS:
    from .extension import EXTENSION_NAME, FlaskHashFS  # it registers this module's commands

    extension = current_app.extensions.get(EXTENSION_NAME)
    if not isinstance(extension, FlaskHashFS):
        raise click.ClickException("Flask-HashFS is not initialised on this app.")
    return extension


def _store() -> HashFS:
    return _extension().client


@contextmanager
def _progress(store: HashFS, label: str) -> Iterator[Progress | None]:
    """A progress bar on stderr while stdout is a terminal; nothing in a pipe or cron."""
    if not sys.stdout.isatty():
        yield None
        return
    with click.progressbar(length=store.count(), label=label, file=sys.stderr) as bar:
        done = 0

        def advance(seen: int) -> None:
            nonlocal done
            bar.update(seen - done)
            done = seen

        yield advance


@hashfs_cli.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead.")
def verify(as_json: bool) -> None:
    """Rehash every file and look for stale temp files, changing nothing. Exit status 1 if
    anything is wrong: a corrupt or misplaced file, something that is no object, a lost
    id (its content is nowhere: restore it from a backup) or a crashed put's temp file."""
    store = _store()
    try:
        with _progress(store, "verifying") as progress:
            report = store.verify(progress=progress)
    except StorageError as exc:
        raise click.ClickException(f"cannot verify {escape(store.root)}: {exc}") from None
    if as_json:
        click.echo(json.dumps(_verify_json(store, report), indent=2))
    else:
        for finding in report.findings:
            about = f"{finding.problem}: {escape(store.backend.abspath(finding.key))}"
            hashes = f"; its content hashes to {finding.content_id}" if finding.content_id else ""
            click.echo(f"{about} ({escape(finding.detail)}{hashes})")
        for id in report.lost:
            click.echo(f"lost: {id} (no intact copy anywhere: restore it from a backup)")
        for path in report.stale_temp_files:
            click.echo(f"stale temp file: {escape(path)}")
    if not report.ok:
        problems = len(report.findings) + len(report.lost) + len(report.stale_temp_files)
        click.echo(f"{problems} problem(s) found; 'flask hashfs repair' fixes them.", err=True)
        raise click.exceptions.Exit(1)
    if not as_json:
        click.echo(f"ok: {report.checked} objects verified in {escape(store.root)}")


def _verify_json(store: HashFS, report: VerifyReport) -> dict[str, Any]:
    """Paths are JSON strings; a name that is not UTF-8 keeps its bytes as \\udcXX
    escapes, which ``os.fsencode(json.loads(...))`` turns back into the name."""
    return {
        "root": store.root,
        "ok": report.ok,
        "checked": report.checked,
        "findings": [
            {
                "path": store.backend.abspath(finding.key),
                "key": finding.key,
                "problem": finding.problem,
                "content_id": finding.content_id,
                "detail": finding.detail,
            }
            for finding in report.findings
        ],
        "lost": list(report.lost),
        "stale_temp_files": list(report.stale_temp_files),
    }


@hashfs_cli.command("repair")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead.")
def repair(as_json: bool) -> None:
    """Move every file to where its content belongs, never deleting the last copy of any
    content: a copy is dropped only when an intact one is stored, and what is no object
    goes to the quarantine folder .hashfs/quarantine/. Then remove temp files left by
    crashed puts. Exit status 1 if some id's content was found nowhere (lost): restore it
    from a backup."""
    store = _store()
    try:
        with _progress(store, "repairing") as progress:
            report = store.repair_report(progress=progress)
    except StorageError as exc:
        raise click.ClickException(f"cannot repair {escape(store.root)}: {exc}") from None
    removed = store.remove_stale_temp_files()
    if as_json:
        document = {
            "root": store.root,
            "actions": [
                {
                    "action": done.action,
                    "source": done.source,
                    "target": done.target,
                    "content_id": done.content_id,
                    "reason": done.reason,
                }
                for done in report.actions
            ],
            "lost": list(report.lost),
            "removed_temp_files": removed,
        }
        click.echo(json.dumps(document, indent=2))
    else:
        abspath = store.backend.abspath
        for done in report.actions:
            where = f"{escape(abspath(done.source))} -> {escape(abspath(done.target))}"
            click.echo(f"{done.action}: {where} ({done.reason})")
        for id in report.lost:
            click.echo(f"lost: {id} (no intact copy anywhere: restore it from a backup)")
        for path in removed:
            click.echo(f"removed stale temp file: {escape(path)}")
        click.echo(
            f"{len(report.moved)} moved, {len(report.dropped)} dropped as already stored,"
            f" {len(report.quarantined)} quarantined, {len(report.lost)} lost,"
            f" {len(removed)} stale temp file(s) removed."
        )
    if report.lost:
        raise click.exceptions.Exit(1)


@hashfs_cli.command("stats")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, with the size in bytes.")
def stats(as_json: bool) -> None:
    """Print how many objects the store holds and their total size (temp files, the
    store's own bookkeeping and stray files are not objects)."""
    store = _store()
    objects, size = store.usage()
    if as_json:
        click.echo(json.dumps({"root": store.root, "objects": objects, "bytes": size}))
        return
    click.echo(f"root: {store.root}")
    click.echo(f"objects: {objects}")
    click.echo(f"size: {human_size(size)}")


def human_size(size: int) -> str:
    """``1.2 MiB``: binary units with one decimal, as ``ls -lh`` and ``du -h`` count."""
    if size < 1024:
        return f"{size} byte" if size == 1 else f"{size} bytes"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if round(value, 1) < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} PiB"


#: Below this, ``gc`` asks for ``--allow-short-grace``: a row must commit within the grace
#: of the put that produced its id, and few apps can promise that in under a minute.
SHORT_GRACE = 60.0
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*")


def parse_duration(ctx: click.Context | None, param: click.Parameter | None, value: str) -> float:
    """Seconds, from ``90``, ``90s``, ``15m``, ``24h`` or ``7d`` (decimals allowed)."""
    match = _DURATION.fullmatch(value)
    if match is None:
        raise click.BadParameter(f"{value!r} is not a duration such as 90s, 15m, 24h or 7d")
    return float(match[1]) * _UNITS[match[2] or "s"]


@hashfs_cli.command("gc")
@click.option(
    "--grace",
    callback=parse_duration,
    default="24h",
    show_default=True,
    help="Keep objects stored or claimed within this long: 90s, 15m, 24h, 7d.",
)
@click.option("--dry-run", is_flag=True, help="Remove nothing; report what would be removed.")
@click.option(
    "--allow-short-grace",
    is_flag=True,
    help=f"Accept a grace under {SHORT_GRACE:.0f} seconds.",
)
def gc(grace: float, dry_run: bool, allow_short_grace: bool) -> None:
    """Remove the objects that no row references (the ids the app's
    @fs.live_ids_loader returns) and that no put stored or claimed within the grace.

    Safe on a live store if every row commits within the grace of the put that produced
    its id (docs/lifecycle.md)."""
    if grace < SHORT_GRACE and not allow_short_grace:
        raise click.UsageError(
            f"a grace under {SHORT_GRACE:.0f}s removes objects whose rows may not have"
            " committed yet; pass --allow-short-grace if every row commits that fast"
        )
    extension = _extension()
    try:
        extension.live_ids_loader_of(current_app._get_current_object())  # type: ignore[attr-defined]
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    if sys.stdout.isatty():
        with click.progressbar(length=extension.count(), label="Sweeping") as bar:
            report = extension.sweep(grace=grace, dry_run=dry_run, progress=bar.update)
    else:
        report = extension.sweep(grace=grace, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb}: {report.removed} objects, {report.removed_bytes} bytes")
    click.echo(f"kept as live: {report.kept_live} objects, {report.kept_live_bytes} bytes")
    click.echo(f"kept as recent: {report.kept_recent} objects, {report.kept_recent_bytes} bytes")


@hashfs_cli.command("expire-uploads")
def expire_uploads() -> None:
    """Remove the resumable (tus) uploads whose time ran out, unfinished or finished:
    their bytes and their records under .hashfs/uploads/. An upload receiving a chunk in
    this process, or on a folder root in any process, is left for the next run. A record
    that cannot be read is skipped and named, and the command fails. Run it from cron."""
    try:
        removed = remove_expired(_store())
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"removed {removed} expired uploads")


@hashfs_cli.command("migrate")
@click.argument("stores", nargs=-1, required=True, metavar="[SOURCE] TARGET")
@click.option("--depth", type=int, help="Shard folders above each object [the app's].")
@click.option("--width", type=int, help="Characters per shard folder [the app's].")
@click.option("--algorithm", help="The stores' hash [the app's].")
@click.option(
    "--storage-options",
    envvar="HASHFS_STORAGE_OPTIONS",
    help="JSON object for the s3:// side(s) [the app's HASHFS_STORAGE_OPTIONS].",
)
@click.option(
    "--target-storage-options",
    help="JSON object for an s3:// TARGET [the source's storage options].",
)
@click.option("--workers", default=4, show_default=True, help="Objects copied at once.")
def migrate(
    stores: tuple[str, ...],
    depth: int | None,
    width: int | None,
    algorithm: str | None,
    storage_options: str | None,
    target_storage_options: str | None,
    workers: int,
) -> None:
    """Copy the app's store (or SOURCE) to TARGET under the same keys, so every address
    stays valid.

    SOURCE and TARGET are folders or s3://bucket/prefix URLs. The layout and storage
    options default to the app's (HASHFS_DEPTH, HASHFS_WIDTH, HASHFS_ALGORITHM,
    HASHFS_STORAGE_OPTIONS); a bucket TARGET gets the source's storage options unless
    --target-storage-options says otherwise. Run it again after an interruption: what is
    already in TARGET is skipped. Exits with 1 if some object was not copied.
    """
    from .migrate import open_store, parse_options, run, target_options

    if len(stores) > 2:
        raise click.UsageError("give at most two stores: [SOURCE] TARGET")
    app_store = _store()
    config = current_app.config
    source, target = stores if len(stores) == 2 else (app_store.root, stores[0])
    depth = config["HASHFS_DEPTH"] if depth is None else depth
    width = config["HASHFS_WIDTH"] if width is None else width
    algorithm = config["HASHFS_ALGORITHM"] if algorithm is None else algorithm
    options = parse_options(storage_options, "--storage-options")
    if options is None:
        options = config["HASHFS_STORAGE_OPTIONS"]
    given = parse_options(target_storage_options, "--target-storage-options")
    inline = config["HASHFS_INLINE_TYPES"]
    run(
        open_store(source, depth, width, algorithm, options, inline),
        open_store(target, depth, width, algorithm, target_options(options, given, target), inline),
        workers,
    )


@hashfs_cli.command("nginx-config")
def nginx_config_command() -> None:
    """Print nginx locations that serve the store's objects under HASHFS_PATH_PREFIX
    straight from HASHFS_ROOT_FOLDER, with the headers the app sends. Include the output
    in a server block; regenerate it when the config changes (docs/production.md)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    store, serving = _extension()._state_for(app)
    if store.signs_urls:
        raise click.ClickException(
            "nginx can only serve a folder store; HASHFS_ROOT_FOLDER is a bucket"
            " (docs/object-storage.md says how a bucket serves its objects)."
        )
    layout = Layout(store.depth, store.width, store.algorithm)
    try:
        config = nginx_config(
            store.root, app.config["HASHFS_PATH_PREFIX"], layout, serving.inline_types
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(config, nl=False)
