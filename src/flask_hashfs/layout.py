"""Ids, extensions and the sharded key layout: the one place that decides what is valid.

A *key* is an object's path relative to the root, always with ``/`` separators, for
example ``a/b/c/d/e5f6...9.jpg``. Every key the store ever touches is built here from a
validated id and a validated extension, so caller text never reaches a path unchecked.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Protocol

from .errors import ConfigurationError, InvalidExtension, InvalidId


class Hasher(Protocol):
    """What the store needs of a hash object: hashlib's and blake3's both fit."""

    def update(self, data: bytes, /) -> object: ...

    def hexdigest(self) -> str: ...


#: An extension is a dot and up to 3 dot-separated runs of safe characters,
#: e.g. ``.jpg`` or ``.tar.gz``: no separator, no ``..``, no glob character.
_EXTENSION = re.compile(r"\.[A-Za-z0-9_+-]{1,16}(?:\.[A-Za-z0-9_+-]{1,16}){0,2}")
MAX_EXTENSION_LENGTH = 32


def hasher_factory(algorithm: str) -> Callable[[], Hasher]:
    """Return a constructor for ``algorithm``, refusing ones without a fixed-size digest."""
    if algorithm == "blake3":
        try:
            from blake3 import blake3
        except ImportError:
            raise ConfigurationError(
                "algorithm", "'blake3' needs the blake3 package: pip install 'Flask-HashFS[blake3]'"
            ) from None

        def make_blake3() -> Hasher:
            return blake3(max_threads=blake3.AUTO)

        return make_blake3
    try:
        probe = hashlib.new(algorithm)
    except (ValueError, TypeError):
        raise ConfigurationError(
            "algorithm",
            f"must be one of {sorted(hashlib.algorithms_available)} or 'blake3', not {algorithm!r}",
        ) from None
    if probe.digest_size == 0:
        raise ConfigurationError(
            "algorithm", f"{algorithm!r} has no fixed digest size and cannot address content"
        )
    named = getattr(hashlib, algorithm, None)
    if callable(named):
        return named  # type: ignore[no-any-return]
    return lambda: hashlib.new(algorithm)


def _digest_length(make: Callable[[], Hasher]) -> int:
    return len(make().hexdigest())


def normalize_extension(extension: str | None) -> str:
    """Return ``""`` or ``.ext``; hashfs accepted ``jpg`` and ``.jpg`` alike, and so do we."""
    if extension is None or extension == "":
        return ""
    if not isinstance(extension, str):
        raise InvalidExtension(extension, "must be a string")
    ext = extension if extension.startswith(".") else "." + extension
    if len(ext) > MAX_EXTENSION_LENGTH:
        raise InvalidExtension(extension, f"longer than {MAX_EXTENSION_LENGTH} characters")
    if not _EXTENSION.fullmatch(ext):
        raise InvalidExtension(
            extension,
            "use letters, digits, '_', '+', '-' in up to three dot-separated parts",
        )
    return ext


def is_extension(text: str) -> bool:
    """True if ``text`` is a valid, normalized extension such as ``.jpg``."""
    return len(text) <= MAX_EXTENSION_LENGTH and _EXTENSION.fullmatch(text) is not None


@dataclass(frozen=True)
class Layout:
    """How ids map to keys for one store: ``depth`` folders of ``width`` characters each."""

    depth: int = 4
    width: int = 1
    algorithm: str = "sha256"
    new_hasher: Callable[[], Hasher] = field(init=False, repr=False, compare=False)
    id_length: int = field(init=False)
    _id_pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _stem_pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)
    #: Cuts a valid id into its folder names and file name stem (for depth >= 1).
    _cut: Callable[[str], tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.depth, int) or isinstance(self.depth, bool) or self.depth < 0:
            raise ConfigurationError("depth", f"must be a whole number >= 0, not {self.depth!r}")
        if not isinstance(self.width, int) or isinstance(self.width, bool) or self.width < 1:
            raise ConfigurationError("width", f"must be a whole number >= 1, not {self.width!r}")
        make = hasher_factory(self.algorithm)
        length = _digest_length(make)
        if self.depth * self.width >= length:
            raise ConfigurationError(
                "depth",
                f"{self.depth} times width {self.width} leaves no file name: "
                f"a {self.algorithm} id has only {length} characters",
            )
        object.__setattr__(self, "new_hasher", make)
        object.__setattr__(self, "id_length", length)
        object.__setattr__(self, "_id_pattern", re.compile(f"[0-9a-f]{{{length}}}"))
        folder = f"([0-9a-f]{{{self.width}}})"
        rest = f"([0-9a-f]{{{length - self.depth * self.width}}})"
        object.__setattr__(self, "_stem_pattern", re.compile(folder * self.depth + rest))
        end = self.depth * self.width
        parts = [slice(i, i + self.width) for i in range(0, end, self.width)]
        object.__setattr__(self, "_cut", itemgetter(*parts, slice(end, None)))

    def check_id(self, value: object) -> str:
        """Return ``value`` if it is a valid id, else raise :class:`InvalidId` saying why."""
        if isinstance(value, str) and self._id_pattern.fullmatch(value):
            return value
        if not isinstance(value, str):
            raise InvalidId(value, "must be a string")
        raise InvalidId(
            value, f"a {self.algorithm} id is {self.id_length} lowercase hex characters"
        )

    def id_matcher(self) -> Callable[[str], object]:
        """The id check as one regex call that is None for a non-id: for checking a
        million ids (a sweep's live set) faster than :meth:`check_id` can."""
        return self._id_pattern.fullmatch

    def shard(self, id: str) -> list[str]:
        """Split a valid id into ``depth`` folder names and the file name stem."""
        id = self.check_id(id)
        return list(self._cut(id)) if self.depth else [id]

    def stem(self, id: str) -> str:
        """The key of ``id`` without extension."""
        return self.digest_stem(self.check_id(id))

    def digest_stem(self, id: str) -> str:
        """The key without extension of an id that a hasher of this layout just made, which
        needs no check (a small put pays for every tenth of a microsecond)."""
        return "/".join(self._cut(id)) if self.depth else id

    def stem_of(self, value: object) -> str | None:
        """The stem of ``value`` if it is a valid id, else None.

        Lookups by id are the hot path of serving: one regex both checks the id and
        cuts it into folders.
        """
        if not isinstance(value, str):
            return None
        match = self._stem_pattern.fullmatch(value)
        return None if match is None else "/".join(match.groups())

    def key(self, id: str, extension: str | None = None) -> str:
        return self.stem(id) + normalize_extension(extension)

    def parse(self, key: str) -> tuple[str, str] | None:
        """Return ``(id, extension)`` if ``key`` is exactly a key this layout builds, else None.

        This is a pure string check: it is how a relative path or URL path is mapped back
        to an id without touching the disk.
        """
        found = self.parse_found(key)
        if found is None or (found[1] and not is_extension(found[1])):
            return None
        return found

    def parse_found(self, key: str) -> tuple[str, str] | None:
        """Return ``(id, suffix)`` if ``key`` is shaped like an object's key, whatever
        follows the id in its file name (``.jpg``, ``.jpeg~``, ``~``, ``.exe copy``), else
        None.

        This is how maintenance tells a misplaced or badly named object (moved to where its
        content belongs) from a file that is no object at all (quarantined). The suffix is
        whatever follows the id, unchecked: :func:`is_extension` says if it is one.
        """
        parts = key.split("/")
        if len(parts) != self.depth + 1:
            return None
        *folders, name = parts
        if any(len(folder) != self.width for folder in folders):
            return None
        rest = self.id_length - self.depth * self.width
        id = "".join(folders) + name[:rest]
        suffix = name[rest:]
        if not self._id_pattern.fullmatch(id):
            return None
        return id, suffix

    def split_name(self, name: str) -> tuple[str, str]:
        """Split a file name found on disk into its stem and its (unchecked) extension."""
        dot = name.find(".", 1)
        return (name, "") if dot < 0 else (name[:dot], name[dot:])
