"""Resumable uploads over HTTP: a blueprint that speaks tus 1.0 (https://tus.io/protocols/resumable-upload).

Supported: the core protocol, ``creation``, ``creation-with-upload``, ``termination``,
``expiration`` and ``checksum`` (sha1, sha256, sha512, md5). Not supported: deferred
lengths (``creation-defer-length``) and ``concatenation``: an upload says its size
when it is created, which is what lets the size limit refuse it before any byte.

The app decides who may upload: ``authorize`` runs on every request, before anything
is read or changed (once an upload's URL is found to name an upload), and ``identify``
binds each upload to whoever created it, so that no one else can even learn that it
exists (404). Upload URLs end in 32 random bytes
(``secrets.token_urlsafe``), never in anything the client sent.

What happens to the bytes is ``resumable``'s business; this module is only the
protocol, after the model of tusd's unrouted handler: parse and check headers, run
the app's hooks, and answer with the status codes the protocol names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from email.utils import formatdate
from typing import Any, Literal
from weakref import WeakKeyDictionary

from blinker import Namespace
from flask import Blueprint, Flask, current_app, request, url_for
from werkzeug.exceptions import (
    BadRequest,
    ClientDisconnected,
    Forbidden,
    HTTPException,
    NotFound,
    RequestEntityTooLarge,
    UnsupportedMediaType,
)
from werkzeug.wrappers import Response
from werkzeug.wsgi import get_input_stream

from .address import HashAddress
from .errors import (
    ChunkRefused,
    OffsetConflict,
    StorageError,
    UploadBusy,
    UploadExpired,
    UploadNotFound,
)
from .extension import FlaskHashFS
from .http_errors import http_error
from .resumable import ResumableUploads, Upload
from .uploads import accepted_extension, check_content, filename_extension

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,creation-with-upload,termination,expiration,checksum"
#: ``Upload-Checksum`` algorithms, by their tus names (sha1 is the one every server must
#: have; these are the ones hashlib has everywhere).
CHECKSUMS: Mapping[str, Callable[[], Any]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
    "md5": hashlib.md5,
}
OFFSET_STREAM = "application/offset+octet-stream"
#: Bytes read from the request per step: a chunk of the body is never held whole.
READ_SIZE = 1 << 20

#: Sent once an upload is stored, with ``sender`` the app and the keywords ``upload``
#: and ``address``, after the ``on_finished`` callback.
signals = Namespace()
upload_finished = signals.signal("hashfs-upload-finished")

Action = Literal["options", "create", "head", "patch", "delete"]
Authorize = Callable[[Action, Upload | None], bool]
Identify = Callable[[], str | None]
OnFinished = Callable[[Upload, HashAddress], None]


class TusUploads:
    """The tus endpoint of one or more apps: register :attr:`blueprint` under a prefix.

    ::

        tus = TusUploads(fs, max_size=2 << 30, allowed_extensions={".mp4", ".jpg"})

        @tus.on_finished
        def record(upload, address):
            db.add(Attachment(object_id=address.id, name=upload.metadata.get("filename")))
            db.commit()

        app.register_blueprint(tus.blueprint, url_prefix="/files")

    :param fs: the extension whose store receives the finished uploads.
    :param max_size: the largest upload, in bytes (``Tus-Max-Size``): a larger one is
        refused at creation (413).
    :param allowed_extensions: the extensions of the client's ``filename`` metadata that
        are accepted (415 at creation otherwise); None accepts any the store can store.
    :param lifetime: how long an upload lives after its last chunk (``Upload-Expires``).
    :param authorize: called on every request with the action and the upload (None when
        creating, or for OPTIONS), before anything is read or changed; False refuses it
        with 403. A request for an upload that does not exist (or is another
        ``identify``'s) gets 404 before it is asked. It may also raise any
        werkzeug ``HTTPException``, such as ``Unauthorized``.
    :param identify: who is asking (a user id), recorded when an upload is created;
        later requests for that upload by anyone else get 404.
    :param on_finished: called once per finished upload with the upload and the stored
        object's address, before the client hears that the upload is complete: write
        the row here. If it raises, the client's retry finishes the upload again.
    :param name: the blueprint's name.

    .. versionadded:: 1.1
    """

    def __init__(
        self,
        fs: FlaskHashFS,
        *,
        max_size: int,
        allowed_extensions: Collection[str] | None = None,
        lifetime: timedelta = timedelta(days=1),
        authorize: Authorize | None = None,
        identify: Identify | None = None,
        on_finished: OnFinished | None = None,
        name: str = "hashfs_tus",
    ) -> None:
        self._fs = fs
        self.max_size = max_size
        self.allowed_extensions = allowed_extensions
        self.lifetime = lifetime
        self._authorize = authorize
        self._identify = identify
        self._on_finished = on_finished
        self._uploads: WeakKeyDictionary[Flask, ResumableUploads] = WeakKeyDictionary()
        self.blueprint = Blueprint(name, __name__)
        self.blueprint.add_url_rule(
            "",
            "create",
            self._collection,
            methods=["POST", "OPTIONS"],
            provide_automatic_options=False,
        )
        self.blueprint.add_url_rule(
            "/<token>",
            "upload",
            self._upload,
            methods=["HEAD", "PATCH", "DELETE", "POST", "OPTIONS"],
            provide_automatic_options=False,
        )
        self.blueprint.after_request(_tus_headers)
        self.blueprint.register_error_handler(HTTPException, _plain_error)

    def authorizer(self, function: Authorize) -> Authorize:
        """Set ``authorize`` with a decorator."""
        self._authorize = function
        return function

    def identifier(self, function: Identify) -> Identify:
        """Set ``identify`` with a decorator."""
        self._identify = function
        return function

    def on_finished(self, function: OnFinished) -> OnFinished:
        """Set ``on_finished`` with a decorator."""
        self._on_finished = function
        return function

    def uploads(self, app: Flask) -> ResumableUploads:
        """The resumable uploads of ``app``'s store."""
        uploads = self._uploads.get(app)
        if uploads is None:
            uploads = ResumableUploads(
                self._fs.store_for(app),
                lifetime=self.lifetime.total_seconds(),
                check=_check_head,
                on_finished=self._finished,
            )
            self._uploads[app] = uploads
        return uploads

    # -- hooks ---------------------------------------------------------------------------

    def _allow(self, action: Action, upload: Upload | None) -> None:
        if self._authorize is not None and not self._authorize(action, upload):
            raise Forbidden("You may not upload here.")

    def _finished(self, upload: Upload, address: HashAddress) -> None:
        if self._on_finished is not None:
            self._on_finished(upload, address)
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        upload_finished.send(app, upload=upload, address=address)

    # -- views ---------------------------------------------------------------------------

    def _collection(self) -> Response:
        if request.method == "OPTIONS":
            return self._options()
        _check_version()
        self._allow("create", None)
        if request.headers.get("Upload-Defer-Length") is not None:
            raise BadRequest("Deferred lengths are not supported: send Upload-Length.")
        length = _offset_header("Upload-Length")
        if length > self.max_size:
            raise RequestEntityTooLarge(f"Uploads are limited to {self.max_size} bytes.")
        raw_metadata = request.headers.get("Upload-Metadata", "")
        metadata = parse_metadata(raw_metadata)
        name = metadata.get("filename") or metadata.get("name")
        extension = accepted_extension(filename_extension(name), self.allowed_extensions)
        has_body = bool(request.content_length or request.headers.get("Transfer-Encoding"))
        if has_body and request.headers.get("Content-Type") != OFFSET_STREAM:
            raise UnsupportedMediaType(f"A creation request's body is {OFFSET_STREAM}.")
        owner = self._identify() if self._identify is not None else None
        uploads = self.uploads(current_app._get_current_object())  # type: ignore[attr-defined]
        with _storage_errors():
            upload = uploads.create(length, extension=extension, metadata=metadata, owner=owner)
        response = Response(status=201)
        response.headers["Location"] = url_for(".upload", token=upload.token)
        if has_body:
            try:
                upload = self._append(uploads, upload, 0)
            except BaseException:
                # The client is not told the upload's URL, so nothing may stay of it.
                uploads.terminate(upload.token)
                raise
            response.headers["Upload-Offset"] = str(upload.offset)
        response.headers["Upload-Expires"] = _http_date(upload.expires)
        return response

    def _options(self) -> Response:
        self._allow("options", None)
        response = Response(status=204)
        response.headers["Tus-Version"] = TUS_VERSION
        response.headers["Tus-Extension"] = TUS_EXTENSIONS
        response.headers["Tus-Max-Size"] = str(self.max_size)
        response.headers["Tus-Checksum-Algorithm"] = ",".join(CHECKSUMS)
        return response

    def _upload(self, token: str) -> Response:
        method = request.headers.get("X-HTTP-Method-Override", request.method).upper()
        if method == "OPTIONS":
            return self._options()
        _check_version()
        uploads = self.uploads(current_app._get_current_object())  # type: ignore[attr-defined]
        upload = self._find(uploads, token)
        if method == "HEAD":
            self._allow("head", upload)
            if upload.finished is None and upload.offset == upload.length:
                upload = self._finish_pending(uploads, upload)
            response = Response(status=200)
            response.headers["Upload-Offset"] = str(upload.offset)
            response.headers["Upload-Length"] = str(upload.length)
            if upload.metadata:
                response.headers["Upload-Metadata"] = format_metadata(upload.metadata)
            response.headers["Upload-Expires"] = _http_date(upload.expires)
            response.headers["Cache-Control"] = "no-store"
            return response
        if method == "PATCH":
            self._allow("patch", upload)
            if request.headers.get("Content-Type") != OFFSET_STREAM:
                raise UnsupportedMediaType(f"PATCH bodies are {OFFSET_STREAM}.")
            upload = self._append(uploads, upload, _offset_header("Upload-Offset"))
            response = Response(status=204)
            response.headers["Upload-Offset"] = str(upload.offset)
            response.headers["Upload-Expires"] = _http_date(upload.expires)
            return response
        if method == "DELETE":
            self._allow("delete", upload)
            with _storage_errors():
                if not uploads.terminate(upload.token):
                    return _status(423, "The upload is receiving a chunk; try again.")
            return Response(status=204)
        return _status(405, f"{method} is not a tus method for an upload.")

    def _find(self, uploads: ResumableUploads, token: str) -> Upload:
        try:
            with _storage_errors():
                upload = uploads.get(token)
        except UploadExpired:
            raise _Gone() from None
        except UploadNotFound:
            raise NotFound("No such upload.") from None
        if self._identify is not None and upload.owner != self._identify():
            raise NotFound("No such upload.")
        return upload

    def _finish_pending(self, uploads: ResumableUploads, upload: Upload) -> Upload:
        """Publish an upload whose last chunk was acknowledged but whose publication
        failed (the storage, or ``on_finished``, raised). A client that lost that reply
        asks with HEAD where its upload stands, and takes an offset equal to the length
        for done: it must not hear that before the object is stored and the app has its
        row. Until then the HEAD fails too, and the client tries again later."""
        try:
            with _storage_errors():
                return uploads.append(upload, upload.length, ())
        except OffsetConflict:  # another request finished it meanwhile
            return self._find(uploads, upload.token)
        except UploadBusy:
            raise _Locked() from None
        except UploadNotFound:  # its bytes were refused by the checks, and removed
            raise NotFound("No such upload.") from None

    def _append(self, uploads: ResumableUploads, upload: Upload, offset: int) -> Upload:
        checksum = _checksum()
        remaining = upload.length - offset
        if request.content_length is not None and request.content_length > max(remaining, 0):
            raise RequestEntityTooLarge("The chunk goes past the upload's length.")
        body = _body(remaining, checksum[0] if checksum else None)
        accept = None
        if checksum is not None:
            hasher, expected = checksum

            def accept() -> bool:
                return bool(hasher.digest() == expected)

        try:
            with _storage_errors():
                return uploads.append(upload, offset, body, accept)
        except OffsetConflict as exc:
            raise _Conflict(exc.offset) from None
        except UploadBusy:
            raise _Locked() from None
        except ChunkRefused:
            raise _ChecksumMismatch() from None
        except UploadNotFound:
            raise NotFound("No such upload.") from None


class _StatusError(HTTPException):
    """A tus status werkzeug has no exception for, or one that carries a header."""

    headers: dict[str, str] = {}  # noqa: RUF012

    def get_headers(self, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
        return [("Content-Type", "text/plain; charset=utf-8"), *self.headers.items()]


class _Gone(_StatusError):
    code = 410
    description = "The upload expired."


class _Locked(_StatusError):
    code = 423
    description = "Another request is sending a chunk of this upload; try again."


class _ChecksumMismatch(_StatusError):
    code = 460
    description = "The chunk does not match its Upload-Checksum; it was dropped."


class _Conflict(_StatusError):
    code = 409

    def __init__(self, offset: int) -> None:
        super().__init__(f"The upload is at offset {offset}.")
        self.headers = {"Upload-Offset": str(offset)}


class _UnsupportedVersion(_StatusError):
    code = 412
    description = f"This server speaks tus {TUS_VERSION}."
    headers = {"Tus-Version": TUS_VERSION}  # noqa: RUF012


def _plain_error(exc: HTTPException) -> Response:
    """Errors as one line of text, with the headers the protocol asks for."""
    response = Response(f"{exc.description}\n", status=exc.code, mimetype="text/plain")
    if isinstance(exc, _StatusError):
        response.headers.update(exc.headers)
    if exc.code == 405:
        response.headers["Allow"] = "HEAD, PATCH, DELETE, POST, OPTIONS"
    return response


def _status(code: int, text: str) -> Response:
    return Response(text + "\n", status=code, mimetype="text/plain")


def _tus_headers(response: Response) -> Response:
    response.headers["Tus-Resumable"] = TUS_VERSION
    return response


def _check_version() -> None:
    if request.headers.get("Tus-Resumable") != TUS_VERSION:
        raise _UnsupportedVersion()


def _offset_header(name: str) -> int:
    value = request.headers.get(name, "")
    # int() alone takes "+1", " 1" and "1_0", and fails (500) on over 4300 digits; no
    # length or offset has more than 2**64's 20.
    if not value.isascii() or not value.isdigit() or len(value) > 20:
        raise BadRequest(f"{name} must be a non-negative integer.")
    return int(value)


def _checksum() -> tuple[Any, bytes] | None:
    """The hasher and the digest ``Upload-Checksum`` asks for, or None."""
    header = request.headers.get("Upload-Checksum")
    if header is None:
        return None
    name, _, encoded = header.strip().partition(" ")
    if name not in CHECKSUMS:
        raise BadRequest(f"Upload-Checksum: use one of {', '.join(CHECKSUMS)}.")
    try:
        expected = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise BadRequest("Upload-Checksum: the checksum is not Base64.") from None
    return CHECKSUMS[name](), expected


def _body(remaining: int, hasher: Any | None) -> Iterator[bytes]:
    """The request body in steps of :data:`READ_SIZE`, whatever ``MAX_CONTENT_LENGTH``
    says (the upload's own length bounds it). A client that goes away ends it early:
    what came is kept, unless a checksum then refuses it."""
    stream = get_input_stream(request.environ, max_content_length=None)
    while True:
        try:
            data = stream.read(READ_SIZE)
        except (ClientDisconnected, OSError):
            return
        if not data:
            return
        if len(data) > remaining:
            raise RequestEntityTooLarge("The chunk goes past the upload's length.")
        remaining -= len(data)
        if hasher is not None:
            hasher.update(data)
        yield data


def _check_head(upload: Upload, head: bytes) -> None:
    check_content(upload.extension, head)


@contextmanager
def _storage_errors() -> Iterator[None]:
    """A StorageError becomes the HTTP error that says what the client can do (507...)."""
    try:
        yield
    except StorageError as exc:
        raise http_error(exc) from exc


def _http_date(when: float) -> str:
    return formatdate(when, usegmt=True)


def parse_metadata(header: str) -> dict[str, str]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs, values optional.

    :raises werkzeug.exceptions.BadRequest: a malformed pair, a repeated key, or a value
        that is not Base64 of UTF-8 text.
    """
    metadata: dict[str, str] = {}
    for pair in (item.strip() for item in header.split(",")):
        if not pair:
            continue
        key, _, value = pair.partition(" ")
        if not key or " " in value.strip() or key in metadata or not key.isascii():
            raise BadRequest(f"Upload-Metadata: malformed pair {pair[:40]!r}.")
        try:
            metadata[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise BadRequest(f"Upload-Metadata: the value of {key!r} is not Base64 text.") from None
    return metadata


def format_metadata(metadata: Mapping[str, str]) -> str:
    return ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in metadata.items()
    )
