"""The contract between the store and the place its bytes live.

The store decides *what* a key is (``layout``) and reads the caller's stream; a backend
only moves bytes to and from keys. Each backend publishes atomically and never
overwrites: that is what makes a content-addressed store safe under concurrency.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, NamedTuple, Self

from ..errors import ConfigurationError
from ..sweep import Judge, SweepReport

if TYPE_CHECKING:
    from .partial import PartialUploads

#: Top-level names that start with this are the store's own, never objects: temp files
#: (``.hashfs-tmp-*``) and the bookkeeping folder or key prefix ``.hashfs/`` (quarantine,
#: claims, objects set aside by a sweep). No key can start with it, because keys start
#: with hex; listings, counts and sizes skip it.
RESERVED_PREFIX = ".hashfs"
#: Where a sweep sets an object aside before it decides, in one step that no claim can
#: slip past, whether to remove it (see each backend's ``sweep``).
ASIDE_PREFIX = RESERVED_PREFIX + "/aside/"
#: Where maintenance puts what is no object (a README dropped in by hand, a FIFO, a file
#: whose address is taken): ``.hashfs/quarantine/<the key it had>``.
QUARANTINE = RESERVED_PREFIX + "/quarantine/"
#: Where repair keeps a file it had to move out of the way (a corrupt copy at the address
#: of content it is placing) until it is placed itself. Repair places whatever it finds
#: here first, so that a repair killed at any instant leaves nothing out of reach.
STAGING = RESERVED_PREFIX + "/repair/"
#: Where a client's direct upload lands (``.hashfs/incoming/<random token>``) until the
#: app has checked it and published it as an object, or refused it.
INCOMING = RESERVED_PREFIX + "/incoming/"
#: An incoming upload older than this is a leftover (the client never completed it):
#: the store lists it with its stale temp files. It is also how long the app accepts
#: the completion of an upload it authorized, so no upload that can still be completed
#: is ever taken for a leftover.
INCOMING_MAX_AGE = 24 * 3600


def aside_name(key: str, token: str) -> str:
    """The flat name an object at ``key`` takes while set aside: its key with ``,`` for
    ``/`` (no key holds a comma), and a token of the sweep's own."""
    return key.replace("/", ",") + "," + token


def key_set_aside(name: str) -> str:
    """The key an object set aside as ``name`` came from."""
    return name.rpartition(",")[0].replace(",", "/")


class ObjectInfo(NamedTuple):
    """What serving needs to answer a request without reading the body."""

    key: str
    size: int
    mtime: float


class PresignedPut(NamedTuple):
    """A request a client may send once, without credentials, to upload one object.

    :param url: the signed URL, to ``PUT`` the bytes to.
    :param headers: the headers the request must carry, with exactly these values (the
        signature covers them): the length and the checksum of the bytes authorized.
    """

    url: str
    headers: dict[str, str]


class Publisher(ABC):
    """A private, not yet visible copy of an object, to publish under its key.

    Used as a context manager: leaving it without :meth:`publish` discards the copy.
    """

    #: The key :meth:`publish` created, when the backend stored the id under another key
    #: than the one asked for (a bucket: the key a racing put chose for the id); None:
    #: the key asked for.
    published: str | None = None

    @abstractmethod
    def publish(self, key: str) -> bool:
        """Make the bytes visible under ``key`` unless its id is stored (under any extension):
        True if this call created it."""

    @abstractmethod
    def discard(self) -> None:
        """Drop the private copy (after publication, only what is left of it)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.discard()


class Writer(Publisher):
    """A copy the store writes itself, chunk by chunk, as it reads a put's input."""

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    def writelines(self, pieces: Sequence[bytes]) -> None:
        """Write ``pieces`` one after the other: a folder's copy does it in one system
        call, so that small pieces need not be joined into a new buffer first."""
        for piece in pieces:
            self.write(piece)


class Incoming(Publisher):
    """A client's direct upload, already in the storage under an incoming key: the store
    checks it, then publishes it without the bytes passing through the app.

    :param size: its length in bytes.
    :param sha256: the SHA-256 digest the storage verified on arrival, or None if it
        reports none (then only reading the bytes tells what they are).
    """

    size: int
    sha256: bytes | None

    @abstractmethod
    def head(self, size: int) -> bytes:
        """Its first ``size`` bytes (fewer if it is shorter)."""


class Backend(ABC):
    """Bytes at keys. Keys are ``/``-separated paths that ``layout`` built."""

    #: The root folder or bucket URL; ``abspath(key)`` is built from it.
    location: str
    #: Whether :meth:`signed_url` gives URLs: a bucket can, a folder cannot.
    signs_urls: bool = False
    #: The longest ``window`` :meth:`signed_url` accepts, in seconds (0: none).
    max_signing_window: int = 0
    #: The largest direct upload :meth:`presign_put` can authorize, in bytes (0: none).
    max_upload_size: int = 0

    @abstractmethod
    def abspath(self, key: str) -> str: ...

    @abstractmethod
    def key_of(self, path: str) -> str | None:
        """The key of an absolute path or URL under the root, else None (never raises)."""

    def resolved_key(self, path: str) -> str | None:
        """Like :meth:`key_of`, following symlinks: for helpers that act on folders, or
        that tell a caller a path is safe to use (``haspath``, ``relpath``)."""
        return self.key_of(path)

    @abstractmethod
    def writer(self) -> Writer:
        """A new private copy, to use in a ``with`` block."""

    @abstractmethod
    def find(self, stem: str) -> str | None:
        """The key stored as ``stem`` or ``stem.<ext>`` with a valid extension (a regular
        file; a stray ``stem.jpeg~`` never counts): one lookup, never a scan."""

    @abstractmethod
    def siblings(self, stem: str) -> list[str]:
        """The keys of every regular file in the stem's folder whose name starts with the
        stem (``stem``, ``stem.jpg``, ``stem.jpeg~``, ``stem~``), sorted: every file that
        may hold the id's content. Stems have one length, so no other id's files match."""

    @abstractmethod
    def info(self, key: str) -> ObjectInfo | None: ...

    @abstractmethod
    def claim(self, id: str, stem: str) -> str | None:
        """The key of the object stored as ``stem`` or ``stem.<ext>`` (as :meth:`find`
        finds it), claimed: its claim time renewed, so that no sweep that starts within
        its grace from now removes it. None if nothing is stored, or if it vanished before
        the claim held (the put then stores its own copy)."""

    @abstractmethod
    def sweep(
        self,
        judge: Judge,
        cutoff: float,
        *,
        dry_run: bool,
        progress: Callable[[int], None] | None,
    ) -> SweepReport:
        """Remove every object that ``judge`` says is not live and whose claim time is
        before ``cutoff`` (a Unix time), each in one step that a concurrent claim cannot
        slip past. ``progress`` gets the number of objects examined since its last call.
        """

    @abstractmethod
    def open(self, key: str) -> IO[bytes]:
        """Open for reading; raise FileNotFoundError if the key is absent."""

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Remove ``key``; True if it was there. Removes folders it leaves empty."""

    @abstractmethod
    def forget(self, id: str) -> None:
        """Drop what is kept about ``id`` beside its objects, once every copy of it was
        deleted (:meth:`HashFS.delete`). Deleting one copy (repair dropping a stray) keeps
        it: an intact copy may still stand on it."""

    @abstractmethod
    def move(self, source: str, target: str) -> bool:
        """Publish ``source``'s bytes at ``target`` unless its id is stored (under any
        extension other than ``source`` itself), and only then drop ``source``: False, with
        ``source`` left where it was, if ``target`` could not be published."""

    @abstractmethod
    def set_aside(self, key: str, reserved: str) -> str | None:
        """Move whatever is at ``key`` (on disk: a file, a symlink, a FIFO, a folder) to
        ``reserved`` (a key under ``.hashfs/``), or to ``reserved.1``, ``reserved.2``... if
        that is taken: never overwriting, never following a symlink. The key it got, or
        None if ``key`` was gone."""

    @abstractmethod
    def reserved_keys(self, folder: str) -> Iterator[str]:
        """The keys of the regular files under the reserved ``folder`` (``.hashfs/...``)."""

    @abstractmethod
    def all_keys(self) -> Iterator[str]:
        """Every stored key, misplaced files included, temp files never."""

    def sizes(self) -> Iterator[tuple[str, int]]:
        """``(key, size in bytes)`` of every key :meth:`all_keys` lists; one that vanishes
        meanwhile is left out."""
        for key in self.all_keys():
            info = self.info(key)
            if info is not None:
                yield key, info.size

    @abstractmethod
    def walk(self) -> Iterator[tuple[str, str | None]]:
        """Every entry :meth:`all_keys` would list, as ``(key, None)``, and every other
        entry that is not a folder, as ``(key, what it is)`` ("a symlink", "a FIFO",
        "an unreadable folder"...). Never recurses, never follows a symlink, never opens
        a file: a tree of any depth or oddity is walked to its end."""

    @abstractmethod
    def check_root(self) -> None:
        """Raise :class:`~flask_hashfs.errors.StorageError` if the root does not exist
        or cannot be listed: what a check of the whole store must refuse to call clean."""

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def size(self) -> int: ...

    @abstractmethod
    def make_folder(self, path: str) -> None: ...

    @abstractmethod
    def remove_empty(self, path: str) -> None: ...

    def signed_url(
        self,
        key: str,
        window: int,
        *,
        content_type: str | None = None,
        content_disposition: str | None = None,
    ) -> str | None:
        """A URL that fetches ``key`` straight from the storage, the same for every call
        within one period of ``window`` seconds; None where storage has no URLs.

        :param content_type: the ``Content-Type`` the storage answers with.
        :param content_disposition: the ``Content-Disposition`` it answers with.
        """
        return None

    def partial_uploads(self) -> PartialUploads:
        """Where resumable uploads keep what they received so far, under ``.hashfs/uploads/``
        (see ``backends.partial``)."""
        raise ConfigurationError("root", f"{self.location} cannot hold resumable uploads")

    def presign_put(self, key: str, size: int, sha256: bytes, expires: int) -> PresignedPut | None:
        """A request that uploads exactly ``size`` bytes whose SHA-256 is ``sha256`` to
        ``key`` (an incoming key), valid for ``expires`` seconds; the storage refuses
        any other bytes. None where storage has no URLs."""
        return None

    def incoming(self, key: str) -> Incoming | None:
        """The direct upload at the incoming ``key``, or None if nothing arrived there."""
        return None

    @abstractmethod
    def temp_files(self) -> Iterator[str]:
        """Leftovers of writers that died: each may be removed with :meth:`remove_temp`."""

    @abstractmethod
    def remove_temp(self, name: str) -> bool: ...
