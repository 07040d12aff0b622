"""Taking an upload from a request: its extension, a size limit, and a type check.

The client's declared Content-Type is never used. What decides how an object is served
is its stored extension, so that is what gets checked: when the extension names a type
a browser would show inline (an image, audio, video), the first bytes must carry that
type's signature, or the upload is refused with 415. A "photo.png" that is really HTML
is never stored. Every other type is served as a sandboxed attachment (see
``serving``), so its bytes are stored as they are.

The signatures are a short table rather than a dependency: only the inline types need
checking, and for those the magic numbers are fixed by their formats.
"""

from __future__ import annotations

import posixpath
from collections.abc import Collection
from typing import IO, Any

from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import (
    BadRequest,
    ClientDisconnected,
    RequestEntityTooLarge,
    UnsupportedMediaType,
)

from .address import HashAddress
from .errors import InvalidExtension, StorageError
from .headers import media_type
from .http_errors import http_error
from .layout import normalize_extension
from .store import HEAD_SIZE, HashFS


def _riff(kind: bytes) -> tuple[tuple[int, bytes], ...]:
    return ((0, b"RIFF"), (8, kind))


def _iso_brand(*brands: bytes) -> tuple[tuple[tuple[int, bytes], ...], ...]:
    return tuple(((4, b"ftyp" + brand),) for brand in brands)


#: For each type we would show inline: the alternatives, each a list of (offset, bytes)
#: that must all match. A type missing here cannot be verified (text/plain).
SIGNATURES: dict[str, tuple[tuple[tuple[int, bytes], ...], ...]] = {
    "image/png": (((0, b"\x89PNG\r\n\x1a\n"),),),
    "image/jpeg": (((0, b"\xff\xd8\xff"),),),
    "image/gif": (((0, b"GIF87a"),), ((0, b"GIF89a"),)),
    "image/webp": (_riff(b"WEBP"),),
    "image/avif": _iso_brand(b"avif", b"avis"),
    "image/bmp": (((0, b"BM"),),),
    "image/x-icon": (((0, b"\x00\x00\x01\x00"),),),
    "image/vnd.microsoft.icon": (((0, b"\x00\x00\x01\x00"),),),
    "audio/mpeg": (
        ((0, b"ID3"),),
        ((0, b"\xff\xfb"),),
        ((0, b"\xff\xf3"),),
        ((0, b"\xff\xf2"),),
    ),
    "audio/ogg": (((0, b"OggS"),),),
    "video/ogg": (((0, b"OggS"),),),
    "audio/wav": (_riff(b"WAVE"),),
    "audio/x-wav": (_riff(b"WAVE"),),
    "audio/flac": (((0, b"fLaC"),),),
    "audio/aac": (((0, b"\xff\xf1"),), ((0, b"\xff\xf9"),)),
    "audio/webm": (((0, b"\x1a\x45\xdf\xa3"),),),
    "video/webm": (((0, b"\x1a\x45\xdf\xa3"),),),
    "video/mp4": (((4, b"ftyp"),),),
    "audio/mp4": (((4, b"ftyp"),),),
}


def content_matches(mimetype: str, head: bytes) -> bool:
    """Whether ``head`` (the first bytes) can be a ``mimetype`` file; True if unknown."""
    alternatives = SIGNATURES.get(mimetype)
    if alternatives is None:
        return True
    return any(
        all(head[offset : offset + len(magic)] == magic for offset, magic in checks)
        for checks in alternatives
    )


def filename_extension(filename: str | None) -> str:
    """The last suffix of a client's file name, lowercased (``"A.B.JPG"`` -> ``".jpg"``).

    Only the base name counts, whichever separator the client used; the store validates
    the result like any extension.
    """
    if not filename:
        return ""
    base = posixpath.basename(filename.replace("\\", "/"))
    stem, dot, suffix = base.rpartition(".")
    return "." + suffix.lower() if dot and stem and suffix else ""


class BodyReader:
    """Reads an upload once: the peeked head first, then the rest, within a size limit,
    and only to the end the request declared.

    A body that ends before its ``Content-Length`` is a client that went away: gunicorn
    (which sets ``wsgi.input_terminated``, so werkzeug does not check the length) just
    ends the stream there. Storing what came would publish a truncated upload as an
    object of its own, so the read fails with
    :class:`~werkzeug.exceptions.ClientDisconnected` (400) instead, and nothing is stored.

    :param head: bytes already read from ``source``.
    :param limit: the most bytes accepted (413 beyond).
    :param length: the declared length of the body, if any.
    """

    def __init__(
        self, source: Any, head: bytes = b"", limit: int | None = None, length: int | None = None
    ) -> None:
        self._source = source
        self._head = head
        self._limit = limit
        self._length = length
        self._total = 0

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        read: bytes | str = self._source.read(size - len(self._head) if size > 0 else size)
        data = read.encode("utf-8") if isinstance(read, str) else read
        if self._head:
            data, self._head = self._head + data, b""
        self._total += len(data)
        if self._limit is not None and self._total > self._limit:
            raise RequestEntityTooLarge(f"The upload is larger than {self._limit} bytes.")
        if not data and size != 0 and self._length is not None and self._total < self._length:
            raise ClientDisconnected(
                f"The upload ended after {self._total} of its {self._length} bytes."
            )
        return data


def _read_head(source: Any) -> bytes:
    head = b""
    while len(head) < HEAD_SIZE:
        data = source.read(HEAD_SIZE - len(head))
        if not data:
            break
        head += data.encode("utf-8") if isinstance(data, str) else data
    return head


def accepted_extension(extension: str | None, allowed_extensions: Collection[str] | None) -> str:
    """The extension to store an upload with, lowercased, if the store and the app take it.

    :raises werkzeug.exceptions.BadRequest: an extension the store refuses.
    :raises werkzeug.exceptions.UnsupportedMediaType: one not in ``allowed_extensions``.
    """
    try:
        ext = normalize_extension(extension).lower()
    except InvalidExtension:
        raise BadRequest("The file name's extension cannot be stored.") from None
    if allowed_extensions is not None:
        allowed = {normalize_extension(item).lower() for item in allowed_extensions}
        if ext not in allowed:
            listed = ", ".join(sorted(allowed))
            raise UnsupportedMediaType(
                f"Files of type {ext or '(no extension)'} are not accepted; send one of: {listed}."
            )
    return ext


def check_content(ext: str, head: bytes) -> None:
    """Refuse content whose first bytes (:data:`HEAD_SIZE` of them) are not what ``ext``
    says, where a browser would show that type inline.

    :raises werkzeug.exceptions.UnsupportedMediaType: they are not.
    """
    mimetype = media_type(ext)
    if not content_matches(mimetype, head):
        raise UnsupportedMediaType(f"The content does not match its type ({mimetype}).")


def put_upload(
    store: HashFS,
    upload: FileStorage | IO[bytes] | None,
    *,
    extension: str | None = None,
    allowed_extensions: Collection[str] | None = None,
    max_size: int | None = None,
    length: int | None = None,
) -> HashAddress:
    """Store one upload, or refuse it with the HTTP error a client can act on.

    :param upload: ``request.files[...]`` or ``request.stream``.
    :param extension: the extension to store; by default the upload's file name's.
    :param allowed_extensions: e.g. ``{".jpg", ".png"}``; anything else is refused (415).
    :param max_size: bytes; a larger upload is refused (413) and nothing is kept.
    :param length: the body's declared ``Content-Length``, for a raw ``request.stream``:
        a body that ends sooner is refused (400) and nothing is kept.
    :raises werkzeug.exceptions.BadRequest: no file, an extension the store refuses, or a
        body that ended before ``length`` bytes (the client went away).
    :raises werkzeug.exceptions.UnsupportedMediaType: an extension not allowed, or
        content that is not what its extension says.
    :raises werkzeug.exceptions.RequestEntityTooLarge: more than ``max_size`` bytes.
    :raises werkzeug.exceptions.HTTPException: the storage failed and nothing was stored:
        507, 503 or 500, as :func:`flask_hashfs.http_errors.http_error` maps it (the
        :class:`StorageError` is the exception's ``__cause__``).
    """
    if upload is None or (isinstance(upload, FileStorage) and not upload.filename):
        raise BadRequest("No file was uploaded.")
    if extension is None and isinstance(upload, FileStorage):
        extension = filename_extension(upload.filename)
    ext = accepted_extension(extension, allowed_extensions)
    source: Any = upload.stream if isinstance(upload, FileStorage) else upload
    if callable(getattr(source, "seekable", None)) and source.seekable():
        source.seek(0)
    head = _read_head(source)
    check_content(ext, head)
    try:
        return store.put(BodyReader(source, head, max_size, length), ext)
    except StorageError as exc:
        raise http_error(exc) from exc
