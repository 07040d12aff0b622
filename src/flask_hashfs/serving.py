"""HTTP responses for stored objects: the decisions, kept apart from Flask.

:func:`respond` is a function of (the stored object, the request's WSGI environ, the
serving options) that returns a werkzeug :class:`~werkzeug.wrappers.Response`.
:mod:`.conditional` decides preconditions and ranges; werkzeug parses the headers and
cuts a range out of the body; this module decides the headers. It never parses keys or
touches the disk layout: the caller asks the store for a :class:`StoredObject` and
passes a way to open its body.

Because an object's URL names its content hash, the response never changes: every
answer carries a strong ETag (the hash) and may be cached for a year as ``immutable``,
unless a view sends it as private (``FlaskHashFS.send``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import IO, TYPE_CHECKING

from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.http import http_date
from werkzeug.wrappers import Response
from werkzeug.wsgi import FileWrapper, wrap_file

from .address import StoredObject
from .conditional import NOT_MODIFIED, precondition_status, requested_range
from .errors import ConfigurationError, ObjectNotFound, StorageError
from .headers import (
    CACHE_CONTROL,
    DEFAULT_INLINE_TYPES,
    PRIVATE_CACHE_CONTROL,
    content_disposition,
    inline_types,
    object_headers,
    type_headers,
)
from .http_errors import http_error
from .store import HashFS

__all__ = [
    "DEFAULT_INLINE_TYPES",
    "ObjectServer",
    "ServeOptions",
    "content_disposition",
    "delegated_headers",
    "respond",
    "store_response",
]

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


@dataclass(frozen=True)
class ServeOptions:
    """How objects are served; built once per app from its config.

    :param inline_types: media types rendered inline; anything else is an attachment.
    :param x_accel_redirect: nginx internal location (e.g. ``"/_hashfs/"``) that aliases
        the store root: the body is handed to nginx with ``X-Accel-Redirect``.
    :param x_sendfile: hand the body to Apache or lighttpd with ``X-Sendfile``.
    """

    inline_types: frozenset[str] = DEFAULT_INLINE_TYPES
    x_accel_redirect: str | None = None
    x_sendfile: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "inline_types", inline_types(self.inline_types))
        location = self.x_accel_redirect
        if location is not None and not (
            isinstance(location, str) and location.startswith("/") and location.endswith("/")
        ):
            raise ConfigurationError(
                "x_accel_redirect", f"is a location that starts and ends with '/', not {location!r}"
            )
        if location is not None and self.x_sendfile:
            raise ConfigurationError(
                "x_sendfile", "must be off with an X-Accel-Redirect location: choose one hand-off"
            )


def delegated_headers(id: str, extension: str, options: ServeOptions) -> tuple[str, str | None]:
    """``Content-Type`` and ``Content-Disposition`` (None: inline) for a response that
    the storage sends itself, from a signed URL: the same decisions as :func:`respond`."""
    return object_headers(id, extension, options.inline_types)


def respond(
    obj: StoredObject,
    environ: WSGIEnvironment,
    options: ServeOptions,
    open_body: Callable[[], IO[bytes]],
    *,
    sendfile_path: str | None = None,
    download_name: str | None = None,
    as_attachment: bool = False,
    public: bool = True,
) -> Response:
    """The response to a GET or HEAD of ``obj``.

    Preconditions come first (:mod:`.conditional`): a failed ``If-Match`` or
    ``If-Unmodified-Since`` is a 412 and a matching ``If-None-Match`` or
    ``If-Modified-Since`` a 304, both before the body is opened; HEAD never opens it
    either. Then one byte range may be sent as a 206. With a hand-off configured the
    body is left to the front server, which also answers ranges from the file itself.

    :param open_body: opens the object's bytes; called only when a body is sent.
    :param sendfile_path: the file's absolute path, for ``X-Sendfile``.
    :param download_name: the name a browser saves the file under.
    :param as_attachment: download even a type that could be shown inline.
    :param public: shared caches may keep the object for a year (the URL names its
        content); otherwise only the browser may keep it, and it asks again each time.
    """
    etag = f'"{obj.id}"'
    mtime = int(obj.mtime)
    cache_control = CACHE_CONTROL if public else PRIVATE_CACHE_CONTROL
    status = precondition_status(environ, obj.id, mtime)
    if status is not None:
        return _bodiless(status, etag, cache_control)
    content_type, inline = type_headers(obj.extension, options.inline_types)
    headers = {
        "Content-Type": content_type,
        "ETag": etag,
        "Cache-Control": cache_control,
        "X-Content-Type-Options": "nosniff",
        "Last-Modified": _http_date(mtime),
    }
    if inline and not as_attachment:
        if download_name:
            headers["Content-Disposition"] = content_disposition("inline", download_name)
    else:
        headers["Content-Disposition"] = content_disposition(
            "attachment", download_name or obj.id + obj.extension
        )
        headers["Content-Security-Policy"] = "sandbox"

    if options.x_accel_redirect is not None:
        headers["X-Accel-Redirect"] = options.x_accel_redirect + obj.key
        headers["Content-Length"] = "0"
        return Response(headers=headers)
    if options.x_sendfile:
        if sendfile_path is None:
            raise ValueError("X-Sendfile needs the object's file path")
        headers["X-Sendfile"] = sendfile_path
        headers["Content-Length"] = "0"
        return Response(headers=headers)

    headers["Accept-Ranges"] = "bytes"
    headers["Content-Length"] = str(obj.size)
    span = None
    if "HTTP_RANGE" in environ:
        try:
            span = requested_range(environ, obj.id, mtime, obj.size)
        except RequestedRangeNotSatisfiable:
            headers["Content-Range"] = f"bytes */{obj.size}"
            headers["Content-Length"] = "0"
            return Response(status=416, headers=headers)
    # Headers first: anything that can fail does so before a file is open.
    response = Response((), headers=headers, direct_passthrough=True)
    if environ.get("REQUEST_METHOD") == "HEAD":
        pass
    elif span is None:
        response.response = wrap_file(environ, open_body())
    else:
        # werkzeug's own FileWrapper, not the server's, so that the range is cut by
        # seeking instead of reading up to its start.
        response.response = FileWrapper(open_body())
    if span is None:
        return response
    # werkzeug cuts the body to the range and sets Content-Range and Content-Length.
    start, stop = span
    only_the_range = {"REQUEST_METHOD": "GET", "HTTP_RANGE": f"bytes={start}-{stop - 1}"}
    return response.make_conditional(only_the_range, accept_ranges=True, complete_length=obj.size)


@lru_cache(maxsize=1024)
def _http_date(timestamp: int) -> str:
    """Formatting a date is a few microseconds of every response; hot objects repeat."""
    return http_date(timestamp)


def _bodiless(status: int, etag: str, cache_control: str) -> Response:
    """A 304 repeats what guides caches, not the representation's headers (RFC 9110
    15.4.5; werkzeug would strip those, but ObjectServer skips werkzeug's pass). A 412
    says nothing about the object but its tag."""
    if status == NOT_MODIFIED:
        headers = {
            "ETag": etag,
            "Cache-Control": cache_control,
            "X-Content-Type-Options": "nosniff",
        }
    else:
        headers = {"ETag": etag, "Content-Length": "0"}
    response = Response(status=status, headers=headers)
    del response.headers["Content-Type"]  # werkzeug's default text/plain
    return response


def store_response(
    store: HashFS,
    obj: StoredObject,
    environ: WSGIEnvironment,
    options: ServeOptions,
    *,
    download_name: str | None = None,
    as_attachment: bool = False,
    public: bool = True,
) -> Response:
    """:func:`respond` for an object of ``store``, which opens its body and names its file."""
    return respond(
        obj,
        environ,
        options,
        lambda: store.open_stored(obj),
        sendfile_path=store.backend.abspath(obj.key) if options.x_sendfile else None,
        download_name=download_name,
        as_attachment=as_attachment,
        public=public,
    )


class ObjectServer:
    """WSGI middleware that answers GET and HEAD for stored objects under ``prefix``.

    It sits in front of the Flask app, like a static file server: a request for a
    stored key is answered without building a request context, running hooks or
    routing, which is most of what a Flask view costs. Anything else, including every
    URL under ``prefix`` that names no stored object, goes on to the app untouched, so
    it gets the app's own 404 (which says nothing about the store) or the app's own
    view under that prefix.

    :param app: the WSGI app to pass other requests to.
    :param store: answers which object a key names (:meth:`HashFS.stat`).
    :param prefix: the URL path prefix, with a leading slash and no trailing one.
    :param redirect: when given, a found object is answered with a redirect to the URL
        it returns, cacheable for the seconds it returns, instead of its bytes.
    """

    def __init__(
        self,
        app: WSGIApplication,
        store: HashFS,
        prefix: str,
        options: ServeOptions,
        redirect: Callable[[StoredObject], tuple[str, int]] | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self.prefix = prefix.rstrip("/") + "/"
        self.options = options
        self.redirect = redirect

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if path.startswith(self.prefix) and environ["REQUEST_METHOD"] in ("GET", "HEAD"):
            key = path[len(self.prefix) :]
            try:
                served = self._serve(key, environ, start_response)
            except StorageError as exc:  # a bucket that is away, a disk that fails
                return http_error(exc, key)(environ, start_response)
            if served is not None:
                return served
        return self.app(environ, start_response)

    def _serve(
        self, key: str, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes] | None:
        """The response for the object stored under ``key``; None if there is none."""
        obj = self.store.stat(key)
        if obj is None:
            return None
        if self.redirect is not None:
            location, max_age = self.redirect(obj)
            headers = {"Location": location, "Cache-Control": f"public, max-age={max_age}"}
            return Response(status=302, headers=headers)(environ, start_response)
        try:
            response = store_response(self.store, obj, environ, self.options)
        except ObjectNotFound:  # deleted since stat: as if it never was
            return None
        if response.direct_passthrough and response.status_code != 200:
            return response(environ, start_response)
        # A 200 with its file, or a header-only 304, 412, hand-off or 416, is complete as
        # respond() built it: sending it straight skips werkzeug's copy and re-check of
        # every header, about half the time of a 304. A 206, cut by werkzeug's
        # make_conditional, still goes through it.
        start_response(response.status, response.headers.to_wsgi_list())
        return response.response  # type: ignore[return-value]
