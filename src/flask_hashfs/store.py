"""HashFS: the content-addressed store. It knows no web framework.

Every public name and argument of hashfs 0.7.2 is here with the same meaning; what
changed is safety. Ids are validated, paths are confined to the root, nothing is
globbed, and a put is one pass that publishes atomically (see ``backends.local``).
"""

from __future__ import annotations

import errno
import io
import os
import re
import secrets
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from datetime import timedelta
from itertools import chain
from typing import IO, Any

from .address import DirectUpload, HashAddress, StoredObject
from .backends import Backend, Incoming, ObjectInfo, PresignedPut, Publisher, Writer, open_backend
from .backends.base import INCOMING
from .backends.partial import HeldUpload
from .errors import (
    ConfigurationError,
    InvalidExtension,
    InvalidId,
    InvalidUpload,
    ObjectNotFound,
    OutsideRoot,
    StorageError,
    UploadNotReceived,
)
from .hashing import BackgroundHasher
from .headers import DEFAULT_INLINE_TYPES
from .layout import Hasher, Layout, is_extension, normalize_extension
from .maintenance import Progress, RepairReport, VerifyReport
from .maintenance import repair as _repair
from .maintenance import verify as _verify
from .streams import CHUNK_SIZE, ByteChunks, PutInput
from .sweep import LiveIds, SweepReport, grace_seconds

FileRef = str | os.PathLike[str]
#: Rounds of publish-or-claim a put makes before it gives up (each lost round means a
#: concurrent delete or sweep removed the object between two of the put's own steps).
_SETTLE_ROUNDS = 16
#: The bytes read ahead to check a file signature (``uploads.SIGNATURES``; the longest
#: check looks at offset 8-12), and the first bytes of a direct upload its check gets.
HEAD_SIZE = 32
#: Seconds a client has to start the upload a presigned PUT authorizes.
UPLOAD_URL_EXPIRES = 3600
_INCOMING_KEY = re.compile(re.escape(INCOMING) + "[0-9a-f]{32}")


class HashFS:
    """Content-addressable file store.

    :param root: folder that holds the objects, created on the first put; or an object
        storage URL, ``s3://bucket`` or ``s3://bucket/prefix`` (the ``s3`` extra), whose
        objects have the same keys as in a folder.
    :param depth: number of shard folders above each object.
    :param width: characters of the id in each shard folder's name.
    :param algorithm: any fixed-size ``hashlib`` algorithm, or ``"blake3"`` with the
        ``blake3`` extra installed.
    :param fmode: permission bits of stored files (applied exactly, whatever the umask).
    :param dmode: permission bits of created folders (the umask applies, as with mkdir).
    :param fsync: when true, ``put`` returns only once the file and its folder entry are
        on disk. Turn it off only for data you can afford to lose on a power cut.
    :param storage_options: for an object storage root: the endpoint, region and
        credentials (see ``docs/object-storage.md``); what is not given comes from the
        standard AWS environment variables.
    :param inline_types: media types a browser may render inline; a bucket stores every
        other type's objects as attachments (``Content-Disposition``), as the app's
        route sends them. ``FlaskHashFS`` passes ``HASHFS_INLINE_TYPES``.
    :raises ValueError: an inline type that runs script or markup (HTML, XML, JavaScript).

    .. versionchanged:: 1.1
        ``inline_types``.

    .. versionchanged:: 1.0
        Invalid ids and paths outside the root are refused; ``fsync`` was added;
        ``root`` may be a bucket, with ``storage_options``.
    """

    def __init__(
        self,
        root: FileRef,
        depth: int = 4,
        width: int = 1,
        algorithm: str = "sha256",
        fmode: int = 0o664,
        dmode: int = 0o755,
        *,
        fsync: bool = True,
        storage_options: Mapping[str, Any] | None = None,
        inline_types: Collection[str] = DEFAULT_INLINE_TYPES,
    ) -> None:
        self._layout = Layout(depth, width, algorithm)
        self.backend: Backend = open_backend(
            root,
            fmode=fmode,
            dmode=dmode,
            fsync=fsync,
            storage_options=storage_options,
            inline_types=inline_types,
        )
        self.root = self.backend.location
        self.depth = depth
        self.width = width
        self.algorithm = algorithm
        self.fmode = fmode
        self.dmode = dmode
        self.fsync = fsync

    def __repr__(self) -> str:
        layout = f"depth={self.depth}, width={self.width}, algorithm={self.algorithm!r}"
        return f"HashFS({self.root!r}, {layout})"

    # -- writing -------------------------------------------------------------------------

    def put(self, file: PutInput, extension: str | None = None) -> HashAddress:
        """Store the content of ``file`` (a path or a readable object) under its hash.

        Content that is already stored is not written again: the address of the stored
        object is returned with ``is_duplicate=True``, whatever extension it was stored
        with. Such a put *claims* the object: it renews its claim time, so that no
        :meth:`sweep` that starts within its grace period of this put removes it, and it
        checks that the object is really there, storing it again if it is not. A put never
        returns the address of an object that is gone.

        :raises InvalidExtension: before anything is read.
        :raises UnreadableInput: ``file`` is neither an existing file nor readable.
        :raises StorageError: writing, fsync or publication failed; nothing was stored.

        .. versionchanged:: 1.1
            A duplicate put claims the object, and stores it again if it is gone.
        """
        ext = normalize_extension(extension)
        with ByteChunks(file) as chunks:
            first = next(chunks, b"")
            second = next(chunks, None)
            if second is None:
                return self._put_small(first, ext)
            with self.writer() as writer:
                for chunk in chain((first, second), chunks):
                    writer.write(chunk)
                return writer.publish(ext)

    def writer(self) -> ObjectWriter:
        """A put fed by the caller, chunk by chunk, as the bytes arrive (an upload parsed
        off the socket): ``with fs.writer() as w: w.write(...); address = w.publish(ext)``.

        It hashes and writes each chunk as :meth:`put` does, and publishes the same way.
        Leaving the ``with`` block without :meth:`ObjectWriter.publish` keeps nothing.

        .. versionadded:: 1.1
        """
        return ObjectWriter(self)

    def _put_small(self, data: bytes, ext: str) -> HashAddress:
        """One chunk: hash it first, so that a duplicate is never written at all."""
        hasher = self._layout.new_hasher()
        hasher.update(data)
        id = hasher.hexdigest()
        stem = self._layout.digest_stem(id)
        claimed = self._claim(id, stem)
        if claimed is not None:
            return claimed
        with self.backend.writer() as writer:
            writer.write(data)
            return self._publish(writer, id, stem, ext)

    def _claim(self, id: str, stem: str) -> HashAddress | None:
        """The duplicate's address if ``id`` is stored and this put's claim on it held;
        None if the put must publish its own copy."""
        existing = self.backend.claim(id, stem)
        if existing is None:
            return None
        return HashAddress(id, existing, self.backend.abspath(existing), True)

    def _publish(self, writer: Publisher, id: str, stem: str, ext: str) -> HashAddress:
        """Publish the writer's copy, or claim the object a racing put published first.
        Each round either ends the put or saw a sweep or delete remove the object between
        two of its steps, so a few rounds always settle it."""
        key = stem + ext
        for _ in range(_SETTLE_ROUNDS):
            if writer.publish(key):
                created = writer.published or key
                return HashAddress(id, created, self.backend.abspath(created), False)
            claimed = self._claim(id, stem)
            if claimed is not None:
                return claimed
        raise StorageError(
            errno.EAGAIN,
            f"could not store {id}: its object kept appearing and vanishing",
            self.backend.abspath(key),
        )

    def put_partial(
        self, upload: HeldUpload, extension: str | None = None, *, id: str | None = None
    ) -> HashAddress:
        """Store a finished resumable upload's bytes as one object, as :meth:`put` would.

        The upload's own copy is published (on disk: linked, never copied) or, if the
        content is stored, the object is claimed. The upload itself is left for the
        caller to drop.

        :param id: the bytes' id, from a :meth:`new_hasher` fed exactly the bytes the
            upload acknowledged, in order, as they were stored; None reads them back
            once to hash them.
        :raises InvalidExtension: before anything is read.
        :raises InvalidId: ``id`` is not an id of this store's algorithm.
        :raises StorageError: reading or publication failed; nothing was stored.

        .. versionadded:: 1.1
        """
        ext = normalize_extension(extension)
        if id is None:
            with upload.reader() as stream, BackgroundHasher(self.new_hasher()) as hasher:
                while chunk := stream.read(CHUNK_SIZE):
                    hasher.update(chunk)
                id = hasher.hexdigest()
        stem = self._layout.stem(id)
        with upload.writer() as writer:
            return self._claim(id, stem) or self._publish(writer, id, stem, ext)

    # -- direct uploads (docs/uploads.md) ------------------------------------------------

    @property
    def max_upload_size(self) -> int:
        """The largest direct upload the storage takes, in bytes (0: none, a folder)."""
        return self.backend.max_upload_size

    def presign_upload(
        self, id: str, size: int, extension: str | None = None
    ) -> tuple[DirectUpload, PresignedPut]:
        """Authorize a client to upload ``size`` bytes whose SHA-256 is ``id`` straight
        to the storage, for :meth:`publish_upload` to publish once they are there.

        The storage takes exactly those bytes and refuses any other. Nothing is looked
        up: whether the content is stored already is decided only once the client has
        sent it, so that the answer tells a client nothing about what others stored.

        :returns: the upload's terms, to keep (signed) until it is published, and the
            request the client sends, valid for :data:`UPLOAD_URL_EXPIRES` seconds.
        :raises ConfigurationError: the store is a folder, or hashes with another
            algorithm than sha256 (the one the storage checks).
        :raises InvalidId: ``id`` is no sha256 hex digest.
        :raises InvalidExtension: before anything is signed.
        :raises InvalidUpload: ``size`` is below 0 or above :attr:`max_upload_size`.

        .. versionadded:: 1.1
        """
        upload = self._checked(DirectUpload(id, size, extension or "", INCOMING))
        upload = upload._replace(key=INCOMING + secrets.token_hex(16))
        put = self.backend.presign_put(upload.key, size, bytes.fromhex(id), UPLOAD_URL_EXPIRES)
        assert put is not None, "a store with a max_upload_size presigns"
        return upload, put

    def publish_upload(
        self, upload: DirectUpload, check: Callable[[bytes], object] | None = None
    ) -> HashAddress:
        """Publish what a client uploaded under the terms :meth:`presign_upload` gave,
        as :meth:`put` publishes the same bytes: content already stored is claimed and
        returned with ``is_duplicate=True``; the bytes never pass through this process.

        First the upload is checked: its size and SHA-256 must be the authorized ones
        (the digest the storage verified on arrival; where it reports none, the bytes
        are read back and hashed), and ``check``, if given, is called with its first
        :data:`HEAD_SIZE` bytes (to refuse content its extension does not describe);
        whatever ``check`` raises is raised here. The incoming copy is removed in every
        case: published, refused or failed.

        :raises UploadNotReceived: nothing, or other bytes, arrived; nothing was published.
        :raises InvalidUpload: ``upload`` names no incoming key of this store.
        :raises StorageError: the storage failed; nothing was published.

        .. versionadded:: 1.1
        """
        upload = self._checked(upload)
        if _INCOMING_KEY.fullmatch(upload.key) is None:
            raise InvalidUpload(f"{upload.key!r} is not an incoming key of this store")
        incoming = self.backend.incoming(upload.key)
        if incoming is None:
            raise UploadNotReceived(upload.key, "no bytes arrived (or they expired)")
        with incoming:
            self._check_received(upload, incoming)
            if check is not None:
                check(incoming.head(HEAD_SIZE))
            stem = self._layout.digest_stem(upload.id)
            return self._claim(upload.id, stem) or self._publish(
                incoming, upload.id, stem, upload.extension
            )

    def check_direct_uploads(self) -> None:
        """Raise :class:`ConfigurationError` unless this store takes direct uploads: it
        needs object storage, and sha256 ids (the digest the storage checks).

        .. versionadded:: 1.1
        """
        if not self.max_upload_size:
            raise ConfigurationError(
                "root", f"must be object storage (s3://...) for direct uploads, not {self.root!r}"
            )
        if self.algorithm != "sha256":
            raise ConfigurationError(
                "algorithm",
                f"must be 'sha256' for direct uploads (the storage checks SHA-256 digests),"
                f" not {self.algorithm!r}",
            )

    def _checked(self, upload: DirectUpload) -> DirectUpload:
        """``upload`` with its id checked and its extension normalized."""
        self.check_direct_uploads()
        size = upload.size
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidUpload(f"a size is a number of bytes, not {size!r}")
        if size > self.max_upload_size:
            raise InvalidUpload(
                f"{size} bytes is more than the {self.max_upload_size} one upload may carry"
            )
        return upload._replace(
            id=self._layout.check_id(upload.id), extension=normalize_extension(upload.extension)
        )

    def _check_received(self, upload: DirectUpload, incoming: Incoming) -> None:
        """Raise :class:`UploadNotReceived` unless ``incoming`` holds the bytes of ``upload``."""
        if incoming.size != upload.size:
            raise UploadNotReceived(
                upload.key, f"{incoming.size} bytes arrived, not the {upload.size} authorized"
            )
        digest = incoming.sha256.hex() if incoming.sha256 is not None else None
        if digest is None:
            with self.backend.open(upload.key) as stream:
                digest = self.computehash(stream)
        if digest != upload.id:
            raise UploadNotReceived(upload.key, f"the bytes that arrived are {digest}")

    # -- finding -------------------------------------------------------------------------

    def _find_stem(self, stem: str) -> str | None:
        return self.backend.find(stem)

    def _key_of_path(self, file: object) -> str | None:
        """The key a root-relative, cwd-relative or absolute path names, if canonical."""
        if isinstance(file, os.PathLike):
            file = os.fspath(file)
        if not isinstance(file, str) or "\0" in file:
            return None
        if os.sep != "/" and not os.path.isabs(file):
            file = file.replace(os.sep, "/")
        if self._layout.parse(file) is not None:
            return file
        key = self.backend.key_of(file)
        return key if key is not None and self._layout.parse(key) is not None else None

    def _locate(self, file: object) -> str | None:
        """The key of the stored object ``file`` names (id or path), or None."""
        stem = self._layout.stem_of(file)
        if stem is not None:
            return self._find_stem(stem)
        key = self._key_of_path(file)
        if key is None or self.backend.info(key) is None:
            return None
        return key

    def get(self, file: FileRef) -> HashAddress | None:
        """The address of the object that an id, relative path or absolute path names."""
        stem = self._layout.stem_of(file)
        if stem is not None:
            key = self._find_stem(stem)
            id = stem.replace("/", "")
            return None if key is None else HashAddress(id, key, self.backend.abspath(key))
        key = self._locate(file)
        if key is None:
            return None
        parsed = self._layout.parse(key)
        assert parsed is not None
        return HashAddress(parsed[0], key, self.backend.abspath(key))

    def info(self, file: FileRef) -> ObjectInfo | None:
        """Key, size and modification time of a stored object, without opening it."""
        key = self._locate(file)
        return None if key is None else self.backend.info(key)

    def stat(self, key: str) -> StoredObject | None:
        """The object stored under exactly ``key`` (a relpath as ``put`` returns it), or None.

        This is the lookup for serving a URL: one string check against the layout, then
        one metadata lookup. An id, an absolute path or any other spelling of the key is
        None, so that each object has exactly one URL.
        """
        parsed = self._layout.parse(key) if isinstance(key, str) else None
        if parsed is None:
            return None
        info = self.backend.info(key)
        if info is None:
            return None
        return StoredObject(parsed[0], parsed[1], key, info.size, info.mtime)

    def open_stored(self, obj: StoredObject) -> IO[bytes]:
        """Open the object :meth:`stat` returned, without looking it up a second time.

        :raises ObjectNotFound: it was deleted since.
        """
        try:
            return self.backend.open(obj.key)
        except FileNotFoundError:
            raise ObjectNotFound(obj.key) from None

    def split_relpath(self, relpath: str) -> tuple[str, str]:
        """``(id, extension)`` of an object's relpath; a string check, nothing is looked up.

        :raises InvalidId: ``relpath`` is not a key of this store's layout.
        """
        parsed = self._layout.parse(relpath) if isinstance(relpath, str) else None
        if parsed is None:
            raise InvalidId(relpath, "not the relpath of an object in this store's layout")
        return parsed

    @property
    def signs_urls(self) -> bool:
        """Whether :meth:`signed_url` gives URLs: on object storage, not in a folder."""
        return self.backend.signs_urls

    @property
    def max_signing_window(self) -> int:
        """The longest ``window`` :meth:`signed_url` accepts, in seconds (0 for a folder)."""
        return self.backend.max_signing_window

    def signed_url(
        self,
        relpath: str,
        window: int,
        *,
        content_type: str | None = None,
        content_disposition: str | None = None,
    ) -> str | None:
        """A URL that fetches the object at ``relpath`` straight from its storage (a
        presigned bucket URL), or None for a folder. Every call within one period of
        ``window`` seconds gives the same URL, so that caches work; it stays valid for at
        least ``window`` seconds. Nothing is looked up: like ``url_for``, it only signs.

        :param content_type: the ``Content-Type`` the storage is to answer with.
        :param content_disposition: the ``Content-Disposition`` it is to answer with.
        :raises InvalidId: ``relpath`` is not a key of this store's layout.
        """
        self.split_relpath(relpath)
        return self.backend.signed_url(
            relpath,
            window,
            content_type=content_type,
            content_disposition=content_disposition,
        )

    def open(self, file: FileRef, mode: str = "rb") -> IO[Any]:
        """Open a stored object for reading (``"rb"``, or ``"r"`` for UTF-8 text).

        :raises ObjectNotFound: (an ``IOError``, as in hashfs) if nothing is stored.
        :raises ValueError: for a writing mode: stored objects never change.
        """
        if "r" not in mode or not set(mode) <= {"r", "b", "t"} or ("b" in mode and "t" in mode):
            raise ValueError(f"mode {mode!r}: stored objects are read-only, use 'rb' or 'r'")
        key = self._locate(file)
        if key is None:
            raise ObjectNotFound(file)
        try:
            stream = self.backend.open(key)
        except FileNotFoundError:
            raise ObjectNotFound(file) from None
        return stream if "b" in mode else io.TextIOWrapper(stream, encoding="utf-8")

    def exists(self, file: FileRef) -> bool:
        return self._locate(file) is not None

    def __contains__(self, file: object) -> bool:
        return self._locate(file) is not None

    def delete(self, file: FileRef) -> None:
        """Remove the content that an id, relative path or absolute path names, and the
        folders it leaves empty; nothing happens if absent.

        Every copy goes: the object under each extension it was stored with (hashfs 0.7
        kept ``<id>``, ``<id>.jpg`` and ``<id>.png`` side by side), and any stray file next
        to it whose bytes are that content (``<id>.jpg~``), so that no byte of it is left
        in the store. A path names its content: deleting ``<id>.png`` by path deletes
        ``<id>.jpg`` too. Other content under a stray name is left for ``repair``.

        .. versionchanged:: 1.1
            Every copy of the content is removed, not one file.
        """
        stem = self._layout.stem_of(file)
        if stem is None:
            key = self._key_of_path(file)
            if key is None:
                return
            parsed = self._layout.parse(key)
            assert parsed is not None
            stem = self._layout.digest_stem(parsed[0])
        id = stem.replace("/", "")
        deleted = False
        for key in self.backend.siblings(stem):
            if key == stem or is_extension(key[len(stem) :]) or self._holds(key, id):
                deleted = self.backend.delete(key) or deleted
        if deleted:
            self.backend.forget(id)

    def _holds(self, key: str, id: str) -> bool:
        """Whether the file at ``key`` holds the content ``id`` (read to the end)."""
        try:
            with self.backend.open(key) as stream:
                return self.computehash(stream) == id
        except OSError:
            return False

    # -- listing -------------------------------------------------------------------------

    def files(self) -> Iterator[str]:
        """Absolute paths of every stored file (temp files of running puts excluded)."""
        abspath = self.backend.abspath
        return (abspath(key) for key in self.backend.all_keys())

    def folders(self) -> Iterator[str]:
        """Absolute paths of the folders that directly hold files."""
        previous = None
        for key in self.backend.all_keys():
            folder = key.rpartition("/")[0]
            if folder != previous:
                previous = folder
                yield self.backend.abspath(folder) if folder else self.root

    def ids(self) -> Iterator[str]:
        """The id of every stored object, in no particular order (an id stored under two
        extensions, as hashfs 0.7 could, comes twice). Files that are not objects (the
        store's own bookkeeping, files dropped in by hand) are not listed.

        .. versionadded:: 1.1
        """
        parse = self._layout.parse
        for key in self.backend.all_keys():
            parsed = parse(key)
            if parsed is not None:
                yield parsed[0]

    def sweep(
        self,
        live: Iterable[str | None] | Callable[[], Iterable[str | None]],
        *,
        grace: float | timedelta,
        dry_run: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> SweepReport:
        """Remove every object whose id is not in ``live`` and that was neither stored nor
        claimed (put again) within the last ``grace`` seconds.

        An object that a put returned, new or duplicate, survives every sweep that starts
        within ``grace`` of that put, whatever runs concurrently: so an app that commits
        each row within ``grace`` of the put that produced its id never sees a row point
        at nothing. See ``docs/lifecycle.md``.

        :param live: every id the app still references, in any order, duplicates allowed;
            read once, before anything is removed, into about 32 bytes per id (a sha256
            id; 64 for sha512): a million ids take some 46 MB of resident memory.
            ``None`` items are skipped. Either the ids, read right away, or a function
            that returns them, called once the sweep has taken the time its grace counts
            back from: ids gathered earlier than that (a list built before the call)
            shorten the grace that the app's rows get by the time it took to build them.
        :param grace: seconds, or a :class:`~datetime.timedelta`.
        :param dry_run: remove nothing; report what a sweep would have removed.
        :param progress: called with the number of objects examined since its last call.
        :raises InvalidId: an item of ``live`` is not an id of this store; nothing was
            removed. (A typo such as relpaths instead of ids would otherwise make every
            object unreferenced.)
        :raises StorageError: the storage failed; what was removed so far stays removed,
            and nothing is left half-removed.

        .. versionadded:: 1.1
        """
        seconds = grace_seconds(grace)
        # The cutoff is taken before ``live`` is read: a row that commits after the read
        # belongs to a put less than ``grace`` before it, whose object is therefore recent.
        cutoff = time.time() - seconds
        live_ids = LiveIds(live() if callable(live) else live, self._layout)
        parse = self._layout.parse

        def judge(key: str) -> tuple[str, bool] | None:
            parsed = parse(key)
            return None if parsed is None else (parsed[0], parsed[0] in live_ids)

        return self.backend.sweep(judge, cutoff, dry_run=dry_run, progress=progress)

    def count(self) -> int:
        return self.backend.count()

    def size(self) -> int:
        """Total bytes of every stored file."""
        return self.backend.size()

    def usage(self) -> tuple[int, int]:
        """``(objects, bytes)``: how many objects the store holds and their total size.

        Only files whose key is an object key of this layout count: not temp files, not
        the store's own bookkeeping, not a stray file dropped into the root by hand
        (which :meth:`count` and :meth:`size` count, as hashfs did).
        """
        objects = total = 0
        for key, size in self.backend.sizes():
            if self._layout.parse(key) is not None:
                objects += 1
                total += size
        return objects, total

    def __iter__(self) -> Iterator[str]:
        return self.files()

    def __len__(self) -> int:
        return self.backend.count()

    # -- checking and repair -------------------------------------------------------------

    def corrupted(self, extensions: bool = True) -> Iterator[tuple[str, HashAddress]]:
        """Yield ``(path, expected_address)`` for each file whose content does not match
        its path: bit rot, or a file dropped into the root by hand.

        With ``extensions`` a file keeps its extension when it is valid; an invalid one
        (a space, say) is dropped from the expected address.
        """
        for key, address in self._misplaced(extensions):
            yield self.backend.abspath(key), address

    def _misplaced(self, extensions: bool) -> Iterator[tuple[str, HashAddress]]:
        for key in self.backend.all_keys():
            try:
                stream = self.backend.open(key)
            except FileNotFoundError:
                continue  # deleted since it was listed: a live store is checked as it is
            with stream:
                id = self.computehash(stream)
            ext = ""
            if extensions:
                ext = self._layout.split_name(key.rpartition("/")[2])[1]
                try:
                    ext = normalize_extension(ext)
                except InvalidExtension:
                    ext = ""
            expected = self._layout.key(id, ext)
            if expected != key:
                yield key, HashAddress(id, expected, self.backend.abspath(expected))

    def repair(self, extensions: bool = True) -> list[tuple[str, HashAddress]]:
        """Move each misplaced or corrupted file to where its content belongs, and never
        delete the last copy of any content (see :meth:`repair_report`).

        Returns ``(path, address)`` for each file moved (``address`` is where it went) or
        dropped (``address`` is the intact copy, ``is_duplicate=True``), as hashfs did; what
        went to the quarantine is only in :meth:`repair_report`'s report.

        .. versionchanged:: 1.1
            Never loses content; files that are no objects go to the quarantine.
        """
        abspath = self.backend.abspath
        repaired = []
        for done in self.repair_report(extensions).actions:
            if done.content_id is not None and done.action in ("moved", "dropped"):
                duplicate = done.action == "dropped"
                address = HashAddress(done.content_id, done.target, abspath(done.target), duplicate)
                repaired.append((abspath(done.source), address))
        return repaired

    def repair_report(
        self, extensions: bool = True, *, progress: Progress | None = None
    ) -> RepairReport:
        """Put every file where its content belongs, and say what moved where.

        - A file whose bytes do not match its name (bit rot, a swap, a copy made by hand)
          moves to the address of its content, keeping its extension if ``extensions``
          and the extension is valid; an extension 1.0 refuses (``.jpeg~``) is dropped.
          With ``extensions=False`` every object moves to its address without extension.
        - It is dropped instead only if a copy at that address has just been re-hashed
          and found intact. A corrupt copy in the way is moved aside and placed in turn.
        - A file that is no object (an unknown name, a symlink, a FIFO, a device, a
          folder named like an object) goes to ``.hashfs/quarantine/<its key>``, and so
          does a file whose address stays taken.
        - Ids whose every copy was corrupt and whose content is nowhere are ``lost``.

        Every move makes the new name before the old one goes, and what repair moved out
        of the way waits under ``.hashfs/repair/`` until the next run places it: a
        repair killed at any instant loses nothing; run it again.

        :param progress: called with the number of entries looked at so far.

        .. versionadded:: 1.1
        """
        return _repair(self, extensions, progress)

    def verify(self, *, progress: Progress | None = None) -> VerifyReport:
        """Re-hash every file and report what is wrong, without changing anything: corrupt
        or misplaced files, what is no object, the ids whose content is lost (to restore
        from a backup), and stale temp files.

        :param progress: called with the number of entries looked at so far.
        :raises StorageError: the root does not exist or cannot be listed.

        .. versionadded:: 1.1
        """
        return _verify(self, progress)

    def stale_temp_files(self) -> list[str]:
        """Temp files whose writer died (killed mid-put): safe to remove at any time."""
        return list(self.backend.temp_files())

    def remove_stale_temp_files(self) -> list[str]:
        """Remove the leftovers of crashed puts; a running put is never disturbed."""
        return [name for name in self.backend.temp_files() if self.backend.remove_temp(name)]

    # -- paths (hashfs 0.7 helpers) ------------------------------------------------------

    def new_hasher(self) -> Hasher:
        """A hasher of the store's algorithm: its ``hexdigest()`` is an id.

        .. versionadded:: 1.1
        """
        return self._layout.new_hasher()

    def computehash(self, stream: PutInput) -> str:
        """Hash a path or readable object the way ``put`` would, without storing it."""
        hasher = self._layout.new_hasher()
        with ByteChunks(stream) as chunks:
            for chunk in chunks:
                hasher.update(chunk)
        return hasher.hexdigest()

    def shard(self, id: str) -> list[str]:
        return self._layout.shard(id)

    def unshard(self, path: FileRef) -> str:
        """The id of the object path ``path``.

        :raises OutsideRoot: ``path`` is not under the root.
        :raises InvalidId: ``path`` is under the root but is not an object path.
        """
        key = self._key_of_path(path)
        if key is None:
            if self.backend.key_of(os.fspath(path)) is None and not self._layout.parse(
                os.fspath(path)
            ):
                raise OutsideRoot(path, self.root)
            raise InvalidId(path, "not the path of an object in this store's layout")
        parsed = self._layout.parse(key)
        assert parsed is not None
        return parsed[0]

    def idpath(self, id: str, extension: str | None = "") -> str:
        return self.backend.abspath(self._layout.key(id, extension))

    def realpath(self, file: FileRef) -> str | None:
        key = self._locate(file)
        return None if key is None else self.backend.abspath(key)

    def relpath(self, path: FileRef) -> str:
        key = self.backend.resolved_key(os.fspath(path))
        if key is None:
            raise OutsideRoot(path, self.root)
        return key.replace("/", os.sep)

    def haspath(self, path: FileRef) -> bool:
        """True if ``path`` lies under the root once ``..`` and symlinks are resolved."""
        return self.backend.resolved_key(os.fspath(path)) is not None

    def makepath(self, path: FileRef) -> None:
        self.backend.make_folder(os.fspath(path))

    def remove_empty(self, subpath: FileRef) -> None:
        self.backend.remove_empty(os.fspath(subpath))


class ObjectWriter:
    """One put whose bytes the caller hands over as they arrive (see :meth:`HashFS.writer`).

    Pieces are gathered to :data:`~flask_hashfs.streams.CHUNK_SIZE` before they are hashed
    and written: a multipart parser hands over 64 KiB at a time, and each chunk given to
    the hash thread may cost a thread wake-up. Content that never grows past one chunk
    is hashed without a thread, and written out once complete, unlike ``put``'s, which
    hashes it first and writes it only if it is not stored: a form of a thousand small
    files, which are published only once all of them passed, then holds one chunk in
    memory, not a thousand.
    """

    def __init__(self, store: HashFS) -> None:
        self._store = store
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._copy: Writer | None = None
        self._hasher: BackgroundHasher | None = None
        self._id: str | None = None
        #: Bytes written so far.
        self.size = 0

    def write(self, data: bytes) -> None:
        """Take the next bytes of the content.

        :raises StorageError: writing failed; nothing will be stored.
        """
        if self._id is not None:
            raise ValueError("the content was already hashed: nothing more can be written")
        if self._pending_size >= CHUNK_SIZE:
            self._flush()
        self._pending.append(data)
        self._pending_size += len(data)
        self.size += len(data)

    def _flush(self) -> None:
        pieces = self._pending
        self._pending = []
        self._pending_size = 0
        if self._copy is None:
            self._copy = self._store.backend.writer()
            self._hasher = BackgroundHasher(self._store._layout.new_hasher())
        assert self._hasher is not None
        # The pieces are never joined on this thread, which also parses and writes: the
        # hash thread joins them, and a folder's copy takes them in one writev().
        self._hasher.update(pieces)
        self._copy.writelines(pieces)

    def hexdigest(self) -> str:
        """The id of the content written: its end. Nothing more can be written.

        :raises StorageError: writing failed; nothing will be stored.
        """
        if self._id is None:
            if self._hasher is None:
                data = b"".join(self._pending)
                hasher = self._store._layout.new_hasher()
                hasher.update(data)
                self._id = hasher.hexdigest()
                self._pending.clear()
                self._copy = self._store.backend.writer()
                self._copy.write(data)
            else:
                if self._pending:
                    self._flush()
                self._id = self._hasher.hexdigest()
        return self._id

    def publish(self, extension: str | None = None) -> HashAddress:
        """Store the content written, or claim it if it is stored: what :meth:`HashFS.put`
        returns.

        :raises InvalidExtension: nothing is stored.
        :raises StorageError: fsync or publication failed; nothing was stored.
        """
        ext = normalize_extension(extension)
        id = self.hexdigest()
        assert self._copy is not None
        store = self._store
        stem = store._layout.digest_stem(id)
        # The copy is kept until the claim is settled: it is what the put stores if the
        # object it found is gone.
        return store._claim(id, stem) or store._publish(self._copy, id, stem, ext)

    def discard(self) -> None:
        """Drop what was written and not published; the writer is done."""
        if self._hasher is not None:
            self._hasher.close()
        if self._copy is not None:
            self._copy.discard()
        self._pending.clear()

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.discard()
