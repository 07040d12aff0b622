"""Taking a multipart form off the socket: each file goes into the store as it arrives.

werkzeug's ``request.files`` spools every file over 500 KB to a temp file, and a put
then reads that file again, hashes it and writes it once more. Here werkzeug's own
parser (:class:`~werkzeug.formparser.FormDataParser`) parses the body, and the
``stream_factory`` it calls for each file part gives it a store writer
(:meth:`HashFS.writer <flask_hashfs.store.HashFS.writer>`) instead of a temp file: each
byte is read from the socket once, then hashed and written once, into the store's own
temp file.

The checks of :func:`~flask_hashfs.uploads.put_upload` run while the bytes arrive: the
extension when a part's headers arrive, before its bytes are read; the signature once
its first bytes are in; the size limit at the first byte too many. Files are published
only once the whole body has been read and every file passed, so a refused, malformed or
cut-off request leaves nothing in the store.
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import ExitStack
from functools import partial
from typing import IO, Any, NamedTuple, cast

from flask import Request
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

from .address import HashAddress
from .errors import StorageError
from .http_errors import http_error
from .store import HEAD_SIZE, HashFS, ObjectWriter
from .streams import CHUNK_SIZE
from .uploads import BodyReader, accepted_extension, check_content, filename_extension

#: Bytes read from the request body at a time. werkzeug's parser asks for 64 KiB, the
#: size at which its boundary search is fastest, and gets slices of these reads: under
#: gunicorn each small read of the body costs copies of what gunicorn holds buffered.
READ_SIZE = 1 << 20


class StoredUpload(NamedTuple):
    """One file of a form, stored.

    :param address: where it is stored; keep ``address.id`` in the app's row.
    :param filename: the file name the client sent: show it, never use it as a path.
    :param content_type: the part's declared ``Content-Type``: the client's word only.
    :param size: in bytes.
    """

    address: HashAddress
    filename: str
    content_type: str | None
    size: int


class StreamedForm(NamedTuple):
    """A form taken off the socket by :meth:`FlaskHashFS.stream_uploads
    <flask_hashfs.FlaskHashFS.stream_uploads>`: its text fields and its stored files, by
    field name (a file input left empty is not among the files)."""

    form: MultiDict[str, str]
    files: MultiDict[str, StoredUpload]


class _Part:
    """A file part of the body: what werkzeug's parser writes into, in place of a temp
    file. The bytes go to a store writer, checked on their way; a part without a file
    name (a file input left empty) keeps nothing."""

    def __init__(self, writer: ObjectWriter | None, ext: str, max_size: int | None) -> None:
        self._writer = writer
        self._ext = ext
        self._max_size = max_size
        self._head = b""
        self._checked = False

    def write(self, data: bytes) -> int:
        writer = self._writer
        if writer is None:
            return len(data)
        if not self._checked:
            self._head += data[: HEAD_SIZE - len(self._head)]
            if len(self._head) == HEAD_SIZE:
                self._check()
        if self._max_size is not None and writer.size + len(data) > self._max_size:
            raise RequestEntityTooLarge(f"The upload is larger than {self._max_size} bytes.")
        writer.write(data)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        """werkzeug rewinds each file it parsed, for the view to read: this one is
        read by the store alone."""
        return 0

    def _check(self) -> None:
        check_content(self._ext, self._head)
        self._checked = True

    def finish(self) -> None:
        """The part's last byte is in: check a part shorter than a signature's reach,
        and end its hashing."""
        if self._writer is not None:
            if not self._checked:
                self._check()
            self._writer.hexdigest()

    def publish(self) -> HashAddress:
        assert self._writer is not None
        return self._writer.publish(self._ext)

    @property
    def stored(self) -> bool:
        return self._writer is not None

    @property
    def size(self) -> int:
        return 0 if self._writer is None else self._writer.size


class _Parts:
    """The ``stream_factory`` for one request, and the parts it gave out: each part is
    finished when the next one starts, and the ``with`` block discards every part not
    published."""

    def __init__(
        self, store: HashFS, allowed_extensions: Collection[str] | None, max_size: int | None
    ) -> None:
        self._store = store
        self._allowed = allowed_extensions
        self._max_size = max_size
        self._writers = ExitStack()
        self._last: _Part | None = None

    def open(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        self.finish()
        if filename:
            ext = accepted_extension(filename_extension(filename), self._allowed)
            writer = self._writers.enter_context(self._store.writer())
            self._last = _Part(writer, ext, self._max_size)
        else:
            self._last = _Part(None, "", None)
        return cast(IO[bytes], self._last)

    def copy(self, file: FileStorage) -> FileStorage:
        """A file werkzeug already spooled, through the same checks as a streamed part."""
        part = self.open(None, file.content_type, file.filename)
        file.stream.seek(0)
        for chunk in iter(partial(file.stream.read, CHUNK_SIZE), b""):
            part.write(chunk)
        return FileStorage(part, file.filename, file.name, headers=file.headers)

    def finish(self) -> None:
        if self._last is not None:
            self._last.finish()
            self._last = None

    def __enter__(self) -> _Parts:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._writers.close()


class _Slices:
    """The request body read :data:`READ_SIZE` bytes at a time, handed out in the
    slices the parser asks for."""

    def __init__(self, source: BodyReader) -> None:
        self._source = source
        self._view = memoryview(b"")

    def read(self, size: int = -1) -> Any:
        if size < 0:
            rest, self._view = bytes(self._view), memoryview(b"")
            return rest + self._source.read()
        if not self._view:
            self._view = memoryview(self._source.read(READ_SIZE))
        piece, self._view = self._view[:size], self._view[size:]
        return piece


def stream_uploads(
    store: HashFS,
    request: Request,
    *,
    allowed_extensions: Collection[str] | None = None,
    max_size: int | None = None,
) -> StreamedForm:
    """Parse ``request``'s form off the socket, storing each file as it arrives, or refuse
    it with the HTTP error a client can act on; nothing is stored unless every file passed.

    Afterwards ``request.form`` holds the fields and ``request.files`` is empty: the
    files are in the store. A form something already parsed (a CSRF check reading
    ``request.form`` before the view) is taken from werkzeug's temp files instead, with
    the same checks.

    :param allowed_extensions: refused otherwise (415), each file's before its bytes are
        read.
    :param max_size: bytes per file (413).
    :raises werkzeug.exceptions.BadRequest: a malformed body, a file name whose
        extension cannot be stored, or a body that ended early (the client went away).
    :raises werkzeug.exceptions.UnsupportedMediaType: an extension not allowed, or
        content that is not what its extension says.
    :raises werkzeug.exceptions.RequestEntityTooLarge: a file over ``max_size``, a body
        over ``MAX_CONTENT_LENGTH``, or too many parts (``MAX_FORM_PARTS``).
    :raises werkzeug.exceptions.HTTPException: the storage failed (507, 503 or 500, see
        :func:`flask_hashfs.http_errors.http_error`).
    """
    try:
        with _Parts(store, allowed_extensions, max_size) as parts:
            form, files = _read(request, parts)
            return StreamedForm(form, _publish(files))
    except StorageError as exc:
        raise http_error(exc) from exc


def _read(
    request: Request, parts: _Parts
) -> tuple[MultiDict[str, str], MultiDict[str, FileStorage]]:
    """The form's fields, and its files as werkzeug gives them, each over a finished part."""
    form: MultiDict[str, str]
    files: MultiDict[str, FileStorage]
    if "form" in request.__dict__:  # parsed already, as werkzeug itself checks
        form = request.form
        files = MultiDict(
            (name, parts.copy(file)) for name, file in request.files.items(multi=True)
        )
    else:
        form, files = _parse(request, parts)
        request.form = cast(Any, form)
        request.files = cast(Any, request.parameter_storage_class())
    parts.finish()
    return form, files


def _publish(files: MultiDict[str, FileStorage]) -> MultiDict[str, StoredUpload]:
    stored: MultiDict[str, StoredUpload] = MultiDict()
    for name, file in files.items(multi=True):
        part = cast(_Part, file.stream)
        if part.stored:
            address = part.publish()
            stored.add(
                name, StoredUpload(address, file.filename or "", file.content_type, part.size)
            )
    return stored


def _parse(
    request: Request, parts: _Parts
) -> tuple[MultiDict[str, str], MultiDict[str, FileStorage]]:
    parser = request.form_data_parser_class(
        parts.open,
        max_form_memory_size=request.max_form_memory_size,
        max_content_length=request.max_content_length,
        cls=request.parameter_storage_class,
        silent=False,
        max_form_parts=request.max_form_parts,
    )
    body = _Slices(BodyReader(request.stream, length=request.content_length))
    try:
        _, form, files = parser.parse(
            cast(IO[bytes], body),
            request.mimetype,
            request.content_length,
            request.mimetype_params,
        )
    except ValueError as exc:
        raise BadRequest(f"The form could not be read: {exc}.") from None
    return form, files
