"""The contract for uploads that arrive in pieces (resumable uploads).

A partial upload lives under ``.hashfs/uploads/``, apart from the objects: no listing,
count, verify or sweep looks there. Each backend keeps, per upload token, a small JSON
record (what the upload layer wants to remember, including how many bytes it has
acknowledged) and the bytes received so far, in order. A chunk is acknowledged with the
record that counts it, in one step after its bytes are stored: bytes stored beyond the
record's count (a chunk a crash cut short, or one a checksum refused) are overwritten
by the next chunk.

When every byte is there, :meth:`HeldUpload.reader` reads them back for hashing and
:meth:`HeldUpload.writer` hands them to the store's own publication, which
never overwrites and never shows a partial object (see ``store.put_partial``).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import IO, Any

from .base import RESERVED_PREFIX, Publisher

#: The reserved folder or key prefix of partial uploads.
UPLOADS = RESERVED_PREFIX + "/uploads/"
#: What a token looks like (``secrets.token_urlsafe(32)``): checked before any lookup, so
#: that no caller text ever becomes part of a path or key unchecked.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


def is_token(text: str) -> bool:
    return _TOKEN.fullmatch(text) is not None


class HeldUpload(ABC):
    """One partial upload, held by this request alone until the ``with`` block ends."""

    @abstractmethod
    def append(
        self,
        start: int,
        chunks: Iterable[bytes],
        accept: Callable[[], bool] | None,
        commit: Callable[[int], dict[str, Any]],
    ) -> int:
        """Store ``chunks`` from byte ``start`` on (the last acknowledged size), and
        acknowledge them with the record ``commit`` returns for the new size, which is
        returned: durable when it returns.

        Whatever a refused or crashed chunk stored after the acknowledged bytes does not
        count, and is overwritten. If iterating the chunks raises, or ``accept`` (called
        after the last one) says no, the exception (:class:`~flask_hashfs.errors.ChunkRefused`
        for a refusal) propagates and nothing is acknowledged.
        """

    @abstractmethod
    def reader(self) -> IO[bytes]:
        """The upload's bytes from the start, once all are there."""

    @abstractmethod
    def writer(self) -> Publisher:
        """A publisher whose private copy is the upload's bytes: ``publish`` makes them an
        object as a put's writer would."""

    @abstractmethod
    def drop_bytes(self) -> None:
        """Remove the upload's bytes, keeping its record (a finished upload)."""

    @abstractmethod
    def remove(self) -> None:
        """Remove the upload, bytes and record (a refused upload)."""


class PartialUploads(ABC):
    """Partial uploads of one store, by token (see :func:`is_token`)."""

    @abstractmethod
    def create(self, token: str, record: dict[str, Any]) -> None:
        """Start an empty upload with ``record``; durable before it returns."""

    @abstractmethod
    def load(self, token: str) -> dict[str, Any] | None:
        """The upload's record, or None if there is no such upload."""

    @abstractmethod
    def save(self, token: str, record: dict[str, Any]) -> None:
        """Replace the upload's record, atomically."""

    @abstractmethod
    def hold(self, token: str) -> AbstractContextManager[HeldUpload]:
        """Hold the upload's bytes for one request.

        :raises UploadBusy: another request holds them.
        :raises UploadNotFound: there are none (no upload, or its bytes were dropped).
        """

    @abstractmethod
    def remove(self, token: str) -> bool:
        """Remove the upload, record and bytes; False if a request holds it."""

    @abstractmethod
    def tokens(self) -> Iterator[str]:
        """Every upload's token."""
