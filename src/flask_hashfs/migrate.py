"""Copying a store between a folder and a bucket, keeping every address.

Objects keep their keys, so ids, relative paths and URLs stay valid after the switch.
A copy is resumable: it lists the target once and skips every key already there. That is
safe because a key only appears once its object was published whole (atomically, create
if absent). Every object is hashed on its way through and published only if its bytes
match its id, so bit rot in the source is reported, never spread.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import click

from .errors import ConfigurationError, HashFSError
from .headers import DEFAULT_INLINE_TYPES
from .store import HashFS
from .streams import CHUNK_SIZE

Outcome = Literal["copied", "present", "corrupted", "skipped"]


@dataclass
class Migration:
    """What a copy did, key by key (keys are relative paths, as on both sides)."""

    copied: list[str] = field(default_factory=list)
    #: Already in the target: left alone (an earlier, interrupted run, or a racing put).
    present: list[str] = field(default_factory=list)
    #: Bytes that do not hash to their key's id: not copied (``repair`` the source first).
    corrupted: list[str] = field(default_factory=list)
    #: Files that are not objects of the layout (dropped in by hand): not copied.
    skipped: list[str] = field(default_factory=list)

    def add(self, key: str, outcome: Outcome) -> None:
        getattr(self, outcome).append(key)


def migrate(
    source: HashFS,
    target: HashFS,
    *,
    workers: int = 4,
    done: Callable[[str, Outcome], None] | None = None,
) -> Migration:
    """Copy every object of ``source`` that ``target`` lacks, verifying each one.

    :param workers: objects in flight at once; object storage is latency bound, so a
        few parallel copies make small objects go several times faster.
    :param done: called in the caller's thread after each object, e.g. to show progress.
    :raises ConfigurationError: the two stores shard ids differently.
    """
    layout = source._layout
    if layout != target._layout:
        raise ConfigurationError(
            "target",
            f"{target!r} and the source {source!r} have different layouts: keys would not match",
        )
    present = set(target.backend.all_keys())
    result = Migration()
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="hashfs-migrate") as pool:
        pending: deque[tuple[str, Future[Outcome]]] = deque()

        def finish_one() -> None:
            key, future = pending.popleft()
            outcome = future.result()
            result.add(key, outcome)
            if done is not None:
                done(key, outcome)

        for key in source.backend.all_keys():
            if key in present:
                result.add(key, "present")
                if done is not None:
                    done(key, "present")
                continue
            pending.append((key, pool.submit(_copy, source, target, key)))
            if len(pending) >= 2 * workers:
                finish_one()
        while pending:
            finish_one()
    return result


def _copy(source: HashFS, target: HashFS, key: str) -> Outcome:
    parsed = source._layout.parse(key)
    if parsed is None:
        return "skipped"
    hasher = source._layout.new_hasher()
    with source.backend.open(key) as stream, target.backend.writer() as writer:
        while chunk := stream.read(CHUNK_SIZE):
            hasher.update(chunk)
            writer.write(chunk)
        if hasher.hexdigest() != parsed[0]:
            return "corrupted"
        return "copied" if writer.publish(key) else "present"


StorageOptions = dict[str, object]


def parse_options(text: str | None, hint: str) -> StorageOptions | None:
    """The JSON object given on the command line, or None if nothing was given."""
    if not text:
        return None
    try:
        options = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=hint) from None
    if not isinstance(options, dict):
        raise click.BadParameter("a JSON object, {...}", param_hint=hint)
    return options


def target_options(
    source: StorageOptions | None, target: StorageOptions | None, target_root: str
) -> StorageOptions | None:
    """The storage options of the target: those given for it, else the source's.

    A target given options of its own that name no ``endpoint_url`` while the source's
    do would silently go to AWS's endpoint instead of the provider the app uses: that is
    refused. ``"endpoint_url": null`` says AWS on purpose.
    """
    if target is None:
        return source
    if source and source.get("endpoint_url") and "endpoint_url" not in target:
        raise click.BadParameter(
            f"the source uses the endpoint {source['endpoint_url']!r}, and these options"
            f" name none for {target_root}, which would go to AWS's default endpoint:"
            ' add "endpoint_url" (null means AWS)',
            param_hint="--target-storage-options",
        )
    return target


def open_store(
    root: str,
    depth: int,
    width: int,
    algorithm: str,
    options: StorageOptions | None,
    inline_types: Collection[str] = DEFAULT_INLINE_TYPES,
) -> HashFS:
    """A store on ``root``; storage options only apply to object storage roots. A bucket
    stores each object it is given with the headers that ``inline_types`` decide."""
    try:
        return HashFS(
            root,
            depth,
            width,
            algorithm,
            storage_options=options if "://" in root else None,
            fsync=True,
            inline_types=inline_types,
        )
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from None


def run(source: HashFS, target: HashFS, workers: int) -> None:
    """Copy with a progress bar, print what happened, exit with 1 if something was left."""
    try:
        total = source.count()
        label = f"{source.root} -> {target.root}"
        with click.progressbar(length=total, label=label, show_pos=True) as bar:
            result = migrate(source, target, workers=workers, done=lambda *_: bar.update(1))
    except HashFSError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"copied {len(result.copied)}, already there {len(result.present)},"
        f" corrupted {len(result.corrupted)}, not objects {len(result.skipped)}"
    )
    _report("corrupted in the source, not copied (see repair)", result.corrupted)
    _report("not objects of this layout, not copied", result.skipped)
    if result.corrupted or result.skipped:
        raise SystemExit(1)


@click.command("migrate")
@click.argument("source")
@click.argument("target")
@click.option("--depth", default=4, show_default=True, help="Shard folders above each object.")
@click.option("--width", default=1, show_default=True, help="Characters per shard folder.")
@click.option("--algorithm", default="sha256", show_default=True, help="The stores' hash.")
@click.option(
    "--storage-options",
    envvar="HASHFS_STORAGE_OPTIONS",
    help="JSON object for the s3:// side(s): endpoint_url, region_name, credentials...",
)
@click.option(
    "--target-storage-options",
    help="JSON object for an s3:// TARGET, if it differs from the source's options.",
)
@click.option("--workers", default=4, show_default=True, help="Objects copied at once.")
def migrate_command(
    source: str,
    target: str,
    depth: int,
    width: int,
    algorithm: str,
    storage_options: str | None,
    target_storage_options: str | None,
    workers: int,
) -> None:
    """Copy the store at SOURCE to TARGET under the same keys, so every address stays valid.

    SOURCE and TARGET are folders or s3://bucket/prefix URLs. Run it again after an
    interruption: what is already in TARGET is skipped. Each object is hashed on the way
    and copied only if it matches its id. Exits with 1 if some object was not copied.
    """
    options = parse_options(storage_options, "--storage-options")
    given = parse_options(target_storage_options, "--target-storage-options")
    run(
        open_store(source, depth, width, algorithm, options),
        open_store(target, depth, width, algorithm, target_options(options, given, target)),
        workers,
    )


def _report(title: str, keys: Iterable[str]) -> None:
    keys = list(keys)
    if keys:
        click.echo(f"{title}:", err=True)
        for key in keys:
            click.echo(f"  {key}", err=True)


if __name__ == "__main__":
    migrate_command()
