"""Checking and repairing a store without ever losing content.

``verify`` only reads. ``repair`` only moves: a file is dropped only when another copy of
its content has just been re-hashed and found intact, and every other move is a new name
made before the old one goes (a hard link on disk, a conditional copy in a bucket), so a
repair killed at any instant leaves every content reachable, at worst twice. What is no
object goes to the quarantine folder ``.hashfs/quarantine/<the key it had>``, which no
listing, count or sweep sees, for a person to look at.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .backends.base import QUARANTINE, STAGING
from .layout import is_extension

if TYPE_CHECKING:
    from .store import HashFS

#: Called with the number of entries looked at so far.
Progress = Callable[[int], None]


@dataclass(frozen=True)
class Finding:
    """One thing ``verify`` found wrong.

    :param key: where it is, relative to the root (``/``-separated; on disk a name that
        is not UTF-8 keeps its bytes as ``surrogateescape`` characters, as ``os`` does).
    :param problem: ``"corrupted"`` (its bytes do not hash to the id its name says),
        ``"misplaced"`` (the right bytes under a name that is not an object's: a refused
        extension), ``"not an object"`` (an unknown name, a symlink, a FIFO, a device) or
        ``"unreadable"``.
    :param content_id: what its bytes hash to; None where they were not read.
    :param detail: a few words for a person.
    """

    key: str
    problem: Literal["corrupted", "misplaced", "not an object", "unreadable"]
    content_id: str | None
    detail: str


@dataclass(frozen=True)
class VerifyReport:
    """What :meth:`HashFS.verify` found.

    :param lost: ids whose every copy is corrupted and whose content is nowhere else in
        the store: restore them from a backup (``put`` the original bytes again).
    """

    root: str
    checked: int
    findings: tuple[Finding, ...]
    lost: tuple[str, ...]
    stale_temp_files: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not (self.findings or self.lost or self.stale_temp_files)


@dataclass(frozen=True)
class RepairAction:
    """One thing ``repair`` did.

    :param action: ``"moved"`` (to ``target``, the address of its content),
        ``"dropped"`` (a copy of what is intact at ``target``), ``"quarantined"`` (to
        ``target``, under ``.hashfs/quarantine/``) or ``"left"`` (unreadable: untouched).
    :param source: the key it had when repair found it.
    """

    action: Literal["moved", "dropped", "quarantined", "left"]
    source: str
    target: str
    content_id: str | None
    reason: str


@dataclass(frozen=True)
class RepairReport:
    """What :meth:`HashFS.repair_report` did, and what it could not save.

    :param lost: ids whose every copy was corrupted and whose content was found nowhere
        else: restore them from a backup.
    """

    root: str
    actions: tuple[RepairAction, ...]
    lost: tuple[str, ...]

    def _of(self, action: str) -> tuple[RepairAction, ...]:
        return tuple(done for done in self.actions if done.action == action)

    @property
    def moved(self) -> tuple[RepairAction, ...]:
        return self._of("moved")

    @property
    def dropped(self) -> tuple[RepairAction, ...]:
        return self._of("dropped")

    @property
    def quarantined(self) -> tuple[RepairAction, ...]:
        return self._of("quarantined")

    @property
    def left(self) -> tuple[RepairAction, ...]:
        return self._of("left")


class _Checker:
    """The reading half, shared by verify and repair."""

    def __init__(self, store: HashFS) -> None:
        self.store = store
        self.backend = store.backend
        self.layout = store._layout

    def content_id(self, key: str) -> str | None:
        """What the file at ``key`` hashes to, None if it is gone.

        :raises OSError: it could not be read.
        """
        try:
            stream = self.backend.open(key)
        except FileNotFoundError:
            return None
        with stream:
            return self.store.computehash(stream)

    def is_object_name(self, stem: str, key: str) -> bool:
        return key == stem or is_extension(key[len(stem) :])

    def intact_copy(self, id: str, *, besides: str = "") -> str | None:
        """A key with an object's name for ``id`` whose bytes hash to ``id`` right now."""
        stem = self.layout.digest_stem(id)
        for key in self.backend.siblings(stem):
            if key != besides and self.is_object_name(stem, key):
                try:
                    if self.content_id(key) == id:
                        return key
                except OSError:
                    continue
        return None


def verify(store: HashFS, progress: Progress | None = None) -> VerifyReport:
    checker = _Checker(store)
    store.backend.check_root()
    findings: list[Finding] = []
    claimed: set[str] = set()  # ids whose object-named files hold other bytes
    elsewhere: set[str] = set()  # contents found under a wrong name
    checked = 0
    for key, oddity in store.backend.walk():
        checked += 1
        if progress is not None:
            progress(checked)
        if oddity is not None:
            findings.append(Finding(key, "not an object", None, oddity))
            continue
        parsed = store._layout.parse_found(key)
        if parsed is None:
            findings.append(Finding(key, "not an object", None, "not an object's name"))
            continue
        try:
            content = checker.content_id(key)
        except OSError as exc:
            findings.append(Finding(key, "unreadable", None, exc.strerror or str(exc)))
            continue
        if content is None:
            continue  # deleted since it was listed: a live store is checked as it is
        name_id, suffix = parsed
        valid = not suffix or is_extension(suffix)
        if content == name_id and valid:
            continue
        elsewhere.add(content)
        if content != name_id:
            if valid:
                claimed.add(name_id)
            findings.append(Finding(key, "corrupted", content, "its bytes do not hash to its name"))
        else:
            findings.append(Finding(key, "misplaced", content, f"refused extension {suffix!r}"))
    lost = sorted(id for id in claimed - elsewhere if checker.intact_copy(id) is None)
    return VerifyReport(
        store.root, checked, tuple(findings), tuple(lost), tuple(store.stale_temp_files())
    )


class _Repair(_Checker):
    def __init__(self, store: HashFS, extensions: bool) -> None:
        super().__init__(store)
        self.extensions = extensions
        self.actions: list[RepairAction] = []
        #: Files to place, by the key they are at now: (content id, extension, origin).
        self.work: dict[str, tuple[str, str, str]] = {}
        self.claimed: set[str] = set()

    def run(self, progress: Progress | None) -> RepairReport:
        # First what a repair that was killed had set aside: it is out of every listing.
        for key in list(self.backend.reserved_keys(STAGING)):
            self.consider(key, key, self.suffix_of(key))
        seen = 0
        for key, oddity in self.backend.walk():
            seen += 1
            if progress is not None:
                progress(seen)
            if oddity is not None:
                self.quarantine(key, key, None, f"not an object: {oddity}")
                continue
            parsed = self.layout.parse_found(key)
            if parsed is None:
                self.quarantine(key, key, None, "not an object's name")
                continue
            name_id, suffix = parsed
            content = self.consider(key, key, suffix)
            if content not in (None, name_id) and (not suffix or is_extension(suffix)):
                self.claimed.add(name_id)
        while self.work:
            key = next(iter(self.work))
            content, extension, origin = self.work.pop(key)
            self.place(key, content, extension, origin)
        lost = sorted(id for id in self.claimed if self.intact_copy(id) is None)
        return RepairReport(self.store.root, tuple(self.actions), tuple(lost))

    def suffix_of(self, key: str) -> str:
        return self.layout.split_name(key.rpartition("/")[2])[1]

    def consider(self, key: str, origin: str, suffix: str) -> str | None:
        """Hash ``key`` and queue it if it is not where its content belongs."""
        try:
            content = self.content_id(key)
        except OSError as exc:
            reason = f"unreadable: {exc.strerror or exc}"
            self.actions.append(RepairAction("left", origin, key, None, reason))
            return None
        if content is None:
            return None
        extension = suffix if self.extensions and is_extension(suffix) else ""
        if key != self.layout.digest_stem(content) + extension:
            self.work[key] = (content, extension, origin)
        return content

    def quarantine(self, key: str, origin: str, content: str | None, reason: str) -> None:
        moved = self.backend.set_aside(key, QUARANTINE + origin)
        if moved is not None:
            self.actions.append(RepairAction("quarantined", origin, moved, content, reason))

    def place(self, key: str, content: str, extension: str, origin: str) -> None:
        """Move ``key`` to the address of its content, unless an intact copy is there."""
        if self.backend.info(key) is None:
            return  # gone since it was found
        stem = self.layout.digest_stem(content)
        corrupt: list[tuple[str, str]] = []
        for copy in self.backend.siblings(stem):
            if copy == key or not self.is_object_name(stem, copy):
                continue  # a stray sibling is queued on its own
            try:
                found = self.content_id(copy)
            except OSError:
                continue
            if found == content:
                self.drop(key, copy, content, origin)
                return
            if found is not None:
                corrupt.append((copy, found))
        # Every copy under the id's names holds other bytes: move them out of the way, to
        # be placed in turn (they are misplaced content, perhaps the only copy of it).
        for copy, found in corrupt:
            self.work.pop(copy, None)
            staged = self.backend.set_aside(copy, STAGING + copy)
            if staged is not None:
                self.work[staged] = (found, self.kept_extension(copy), copy)
        target = stem + extension
        if self.backend.move(key, target):
            reason = "its bytes belong there"
            self.actions.append(RepairAction("moved", origin, target, content, reason))
            return
        # A put stored the content meanwhile, or something that is no object could not
        # be moved off the address.
        intact = self.intact_copy(content, besides=key)
        if intact is not None:
            self.drop(key, intact, content, origin)
        elif self.layout.parse(key) == (content, self.suffix_of(key)):
            # An intact object under its own name that could not be renamed (a bucket's
            # id marker names it): it stays, reachable, rather than leave the store.
            reason = "an intact object that could not be renamed"
            self.actions.append(RepairAction("left", origin, key, content, reason))
        else:
            self.quarantine(key, origin, content, "its address is taken")

    def kept_extension(self, key: str) -> str:
        suffix = self.suffix_of(key)
        return suffix if self.extensions and is_extension(suffix) else ""

    def drop(self, key: str, intact: str, content: str, origin: str) -> None:
        self.backend.delete(key)
        reason = "an intact copy is stored"
        self.actions.append(RepairAction("dropped", origin, intact, content, reason))


def repair(store: HashFS, extensions: bool, progress: Progress | None = None) -> RepairReport:
    return _Repair(store, extensions).run(progress)


def escape(text: str) -> str:
    """``text`` with every character a terminal could act on (control characters, ESC,
    bytes that were not UTF-8) written as a backslash escape."""
    return "".join(_escaped(char) for char in text)


def _escaped(char: str) -> str:
    if char.isprintable() or char == " ":
        return char if char != "\\" else "\\\\"
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
