"""Resumable uploads on a store: created, appended to in chunks, finished into one object.

This is the protocol-free half of ``tus``: what an upload is, when it expires, and
what happens when its last byte arrives. It imports no web framework. The bytes and
the record live in the backend's partial uploads (``backends.partial``), under the
store's reserved ``.hashfs/uploads/``, so an upload survives a restart of the server
and never shows up as an object before it is finished.

Finishing is: check the first bytes (the caller's ``check``, such as the type
signature of ``uploads``), hash and publish through the store (``HashFS.put_partial``),
hand the address to ``on_finished`` (where the app writes its row), and only then
mark the upload finished and drop its bytes. A crash or an ``on_finished`` that fails
at any step leaves an upload that holds every byte and is not marked finished: the
client's next request for its last offset finishes it again, and the store's
publication makes the second run a duplicate, not a second object.
"""

from __future__ import annotations

import errno
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .address import HashAddress
from .backends.partial import HeldUpload, PartialUploads
from .errors import OffsetConflict, StorageError, UploadBusy, UploadExpired, UploadNotFound
from .hashing import BackgroundHasher
from .layout import Hasher
from .store import HEAD_SIZE, HashFS

#: Uploads whose hashers a process keeps at most; the oldest beyond are read back instead.
_MAX_HASHERS = 1024


@dataclass(frozen=True)
class Upload:
    """What is known about one resumable upload."""

    #: The unguessable name of the upload (``secrets.token_urlsafe(32)``).
    token: str
    #: The size the client announced, in bytes.
    length: int
    #: The extension the object will be stored with (``".jpg"``, or ``""``).
    extension: str
    #: When the upload expires unless more bytes arrive (a Unix time).
    expires: float
    #: The client's metadata, decoded, as it sent it (file name, type...).
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: Who created it, as the app's identity function said; None if it has none.
    owner: str | None = None
    #: Bytes received so far.
    offset: int = 0
    #: The stored object's id once the upload is finished.
    finished: str | None = None


Check = Callable[[Upload, bytes], None]
Finished = Callable[[Upload, HashAddress], None]


class ResumableUploads:
    """The resumable uploads of ``store``.

    :param lifetime: seconds an upload lives after its last chunk.
    :param check: called with the upload's first :data:`HEAD_SIZE` bytes (fewer for a
        smaller upload) before it is stored, and as soon as a chunk from offset 0 brings
        them; it raises to refuse the upload, which is then removed.
    :param on_finished: called once per upload with the stored object's address.
    """

    def __init__(
        self, store: HashFS, *, lifetime: float, check: Check, on_finished: Finished
    ) -> None:
        self.store = store
        self.lifetime = lifetime
        self._partials: PartialUploads = store.backend.partial_uploads()
        self._check = check
        self._on_finished = on_finished
        #: token -> (acknowledged size, a hasher fed exactly those bytes), for uploads
        #: whose chunks this process received in order: their last chunk then needs no
        #: second read to hash them. Lost on restart, or when another process took a
        #: chunk; the upload is then read back once at the end.
        self._hashers: OrderedDict[str, tuple[int, Hasher]] = OrderedDict()

    def create(
        self,
        length: int,
        *,
        extension: str = "",
        metadata: Mapping[str, str] | None = None,
        owner: str | None = None,
    ) -> Upload:
        """A new, empty upload (an empty one is finished at once)."""
        upload = Upload(
            token=secrets.token_urlsafe(32),
            length=length,
            extension=extension,
            expires=time.time() + self.lifetime,
            metadata=dict(metadata or {}),
            owner=owner,
        )
        self._partials.create(upload.token, _record(upload))
        if length == 0:
            return self.append(upload, 0, ())
        return upload

    def get(self, token: str) -> Upload:
        """The upload named ``token``.

        :raises UploadExpired: it expired (and awaits :meth:`remove_expired`).
        :raises UploadNotFound: there is no such upload.
        """
        record = self._partials.load(token)
        if record is None:
            raise UploadNotFound(token)
        upload = Upload(token=token, **record)
        if upload.expires <= time.time():
            raise UploadExpired(token)
        return upload

    def append(
        self,
        upload: Upload,
        offset: int,
        chunks: Iterable[bytes],
        accept: Callable[[], bool] | None = None,
    ) -> Upload:
        """Append a chunk that starts at ``offset``, and finish the upload if it is whole.

        :param chunks: the chunk's bytes; the caller stops them at the upload's length.
        :param accept: says, after the last byte, whether to keep the chunk (a checksum).
        :raises OffsetConflict: the upload is not at ``offset``.
        :raises UploadBusy: another request is appending to it.
        :raises ChunkRefused: ``accept`` said no; the chunk was dropped.
        :raises UploadNotFound: it is gone, or its bytes were refused by ``check``.
        """
        if upload.finished is not None:
            if offset != upload.length:
                raise OffsetConflict(upload.length)
            return upload
        with self._partials.hold(upload.token) as held:
            upload = self.get(upload.token)  # what the last request acknowledged
            if upload.offset != offset or upload.finished is not None:
                raise OffsetConflict(upload.offset)
            if offset == 0 and upload.length > 0:
                chunks = self._checked_head(held, upload, chunks)
            hasher = self._hasher(upload.token, offset)
            if hasher is not None:
                chunks = _hashed(chunks, hasher)
            expires = time.time() + self.lifetime

            def acknowledged(size: int) -> dict[str, Any]:
                # Acknowledged before it is published: once the upload's bytes may be an
                # object's (a hard link on disk), no request may write them again.
                return _record(replace(upload, offset=size, expires=expires))

            size = held.append(offset, chunks, accept, acknowledged)
            upload = replace(upload, offset=size, expires=expires)
            if size == upload.length:
                return self._finish(held, upload, hasher)
            if hasher is not None:
                self._hashers[upload.token] = (size, hasher)
                while len(self._hashers) > _MAX_HASHERS:
                    self._hashers.popitem(last=False)
            return upload

    def _hasher(self, token: str, offset: int) -> Hasher | None:
        """The upload's hasher if it was fed the ``offset`` bytes acknowledged so far (a
        new one at 0); taken out, so that a chunk that fails leaves none behind."""
        if offset == 0:
            return self.store.new_hasher()
        known = self._hashers.pop(token, None)
        return known[1] if known is not None and known[0] == offset else None

    def _checked_head(
        self, held: HeldUpload, upload: Upload, chunks: Iterable[bytes]
    ) -> Iterator[bytes]:
        """Pass ``chunks`` on, checking the head as soon as it has arrived (or the chunk
        ended), before more is stored: a refused upload costs one chunk of storage."""
        head = b""
        checked = False
        for chunk in chunks:
            if not checked:
                head += chunk[: HEAD_SIZE - len(head)]
                if len(head) >= min(HEAD_SIZE, upload.length):
                    self._refuse_unless(held, upload, head)
                    checked = True
            yield chunk

    def _refuse_unless(self, held: HeldUpload, upload: Upload, head: bytes) -> None:
        try:
            self._check(upload, head)
        except BaseException:
            held.remove()
            raise

    def _finish(self, held: HeldUpload, upload: Upload, hasher: Hasher | None) -> Upload:
        with held.reader() as stream:
            head = stream.read(HEAD_SIZE)
        self._refuse_unless(held, upload, head)
        id = hasher.hexdigest() if hasher is not None else None
        address = self.store.put_partial(held, upload.extension, id=id)
        upload = replace(upload, finished=address.id)
        self._on_finished(upload, address)
        self._partials.save(upload.token, _record(upload))
        held.drop_bytes()
        return upload

    def terminate(self, token: str) -> bool:
        """Remove an upload; False if a request is appending to it right now."""
        self._hashers.pop(token, None)
        return self._partials.remove(token)


def _hashed(chunks: Iterable[bytes], hasher: Hasher) -> Iterator[bytes]:
    """Pass ``chunks`` on, hashing them on a second thread while they are stored."""
    with BackgroundHasher(hasher) as background:
        for chunk in chunks:
            background.update(chunk)
            yield chunk


def remove_expired(store: HashFS, now: float | None = None) -> int:
    """Remove every upload of ``store`` that expired by ``now``; how many were removed.
    One that a request is appending to right now is left for the next run.

    :raises StorageError: a record could not be read (or an upload removed). The run
        goes on past it first, so that one damaged record does not keep every other
        upload from expiring; the error names it and counts what was removed.
    """
    now = time.time() if now is None else now
    partials = store.backend.partial_uploads()
    removed = 0
    failed: list[StorageError] = []
    for token in partials.tokens():
        try:
            removed += _remove_if_expired(partials, token, now)
        except StorageError as exc:
            failed.append(exc)
    if failed:
        first = failed[0]
        raise type(first)(
            first.errno or errno.EIO,
            f"removed {removed} expired uploads; {len(failed)} could not be handled,"
            f" the first: {first.strerror}",
            first.filename,
        )
    return removed


def _remove_if_expired(partials: PartialUploads, token: str, now: float) -> int:
    if not _expired(partials.load(token), now):
        return 0
    try:
        with partials.hold(token) as held:
            # Read again, held: a chunk acknowledged since the first read renewed it.
            if _expired(partials.load(token), now):
                held.remove()
                return 1
    except UploadBusy:
        pass
    except UploadNotFound:  # no bytes to hold: finished, so no chunk can renew it
        return int(partials.remove(token))
    return 0


def _expired(record: Mapping[str, Any] | None, now: float) -> bool:
    return record is not None and bool(record["expires"] <= now)


def _record(upload: Upload) -> dict[str, Any]:
    """What is kept of an upload: everything but its token, which names it."""
    record = asdict(upload)
    del record["token"]
    record["metadata"] = dict(upload.metadata)
    return record
