"""``flask hashfs ...``: the operator's checks on the current app's store, and ``migrate``.

``verify`` is safe to run at any time, on a live store: it only reads. ``repair`` moves
or removes files, and removes temp files only when no live writer holds them.
"""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from .migrate import migrate_command
from .store import HashFS

hashfs_cli = AppGroup("hashfs", help="Check, repair and migrate the Flask-HashFS store.")
hashfs_cli.add_command(migrate_command)


def _store() -> HashFS:
    from .extension import EXTENSION_NAME, FlaskHashFS  # it registers this module's commands

    extension = current_app.extensions.get(EXTENSION_NAME)
    if not isinstance(extension, FlaskHashFS):
        raise click.ClickException("Flask-HashFS is not initialised on this app.")
    return extension.client


@hashfs_cli.command("verify")
def verify() -> None:
    """Rehash every object and look for stale temp files; exit with status 1 if any
    object is corrupted or any temp file was left by a crashed put."""
    store = _store()
    problems = 0
    for path, expected in store.corrupted():
        click.echo(f"corrupted: {path} (its content hashes to {expected.id})")
        problems += 1
    for path in store.stale_temp_files():
        click.echo(f"stale temp file: {path}")
        problems += 1
    if problems:
        click.echo(f"{problems} problem(s) found; 'flask hashfs repair' fixes them.", err=True)
        raise click.exceptions.Exit(1)
    click.echo(f"ok: {store.count()} objects verified in {store.root}")


@hashfs_cli.command("repair")
def repair() -> None:
    """Move corrupted objects to where their content belongs (or drop them if that content
    is already stored), and remove temp files left by crashed puts."""
    store = _store()
    repaired = store.repair()
    for path, address in repaired:
        click.echo(f"repaired: {path} -> {address.relpath}")
    removed = store.remove_stale_temp_files()
    for path in removed:
        click.echo(f"removed stale temp file: {path}")
    click.echo(f"{len(repaired)} object(s) repaired, {len(removed)} stale temp file(s) removed.")


@hashfs_cli.command("stats")
def stats() -> None:
    """Print how many objects the store holds and their total size."""
    store = _store()
    click.echo(f"root: {store.root}")
    click.echo(f"objects: {store.count()}")
    click.echo(f"bytes: {store.size()}")
