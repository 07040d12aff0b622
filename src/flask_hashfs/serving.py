"""HTTP responses for stored objects: the decisions, kept apart from Flask.

:func:`respond` is a function of (the stored object, the request's WSGI environ, the
serving options) that returns a werkzeug :class:`~werkzeug.wrappers.Response`. werkzeug
does the HTTP parsing and semantics (conditional requests, ranges, HEAD); this module
only decides the headers. It never parses keys or touches the disk layout: the caller
asks the store for a :class:`StoredObject` and passes a way to open its body.

Because an object's URL names its content hash, the response never changes: every
answer carries a strong ETag (the hash) and may be cached for a year as ``immutable``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import IO, TYPE_CHECKING
from urllib.parse import quote

from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.http import http_date, is_resource_modified
from werkzeug.utils import get_content_type
from werkzeug.wrappers import Response
from werkzeug.wsgi import wrap_file

from .address import StoredObject
from .errors import ObjectNotFound, StorageError
from .headers import CACHE_CONTROL, is_active, media_type
from .http_errors import http_error
from .store import HashFS

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

#: Types a browser may render inline on the app's origin: media that runs no script.
DEFAULT_INLINE_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/bmp",
        "image/x-icon",
        "image/vnd.microsoft.icon",
        "audio/mpeg",
        "audio/ogg",
        "audio/wav",
        "audio/x-wav",
        "audio/webm",
        "audio/flac",
        "audio/aac",
        "audio/mp4",
        "video/mp4",
        "video/webm",
        "video/ogg",
        "text/plain",
    }
)


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
        active = sorted(t for t in self.inline_types if is_active(t))
        if active:
            raise ValueError(f"active content can never be served inline: {active}")
        if self.x_accel_redirect is not None and self.x_sendfile:
            raise ValueError("choose one hand-off: X-Accel-Redirect or X-Sendfile")
        if self.x_accel_redirect is not None and not (
            self.x_accel_redirect.startswith("/") and self.x_accel_redirect.endswith("/")
        ):
            raise ValueError(
                f"the X-Accel-Redirect location must start and end with '/':"
                f" {self.x_accel_redirect!r}"
            )


@lru_cache(maxsize=256)
def _type_headers(extension: str, inline_types: frozenset[str]) -> tuple[str, bool]:
    mimetype = media_type(extension)
    return get_content_type(mimetype, "utf-8"), mimetype in inline_types


def content_disposition(disposition: str, download_name: str | None) -> str:
    """``attachment`` or ``inline``, with a download name that survives non-ASCII.

    The RFC 6266 ``filename*`` carries the exact name; ``filename`` an ASCII fallback
    for old clients (the same encoding werkzeug's ``send_file`` uses).
    """
    if not download_name:
        return disposition
    # A name from a database row must not end the header line or add another one.
    download_name = "".join(c for c in download_name if unicodedata.category(c) != "Cc")
    try:
        download_name.encode("ascii")
    except UnicodeEncodeError:
        simple = unicodedata.normalize("NFKD", download_name)
        simple = simple.encode("ascii", "ignore").decode("ascii")
        quoted = quote(download_name, safe="!#$&+-.^_`|~")
        return f"{disposition}; filename={_quote(simple)}; filename*=UTF-8''{quoted}"
    return f"{disposition}; filename={_quote(download_name)}"


def delegated_headers(id: str, extension: str, options: ServeOptions) -> tuple[str, str | None]:
    """``Content-Type`` and ``Content-Disposition`` (None: inline) for a response that
    the storage sends itself, from a signed URL: the same decisions as :func:`respond`."""
    content_type, inline = _type_headers(extension, options.inline_types)
    if inline:
        return content_type, None
    return content_type, content_disposition("attachment", id + extension)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def respond(
    obj: StoredObject,
    environ: WSGIEnvironment,
    options: ServeOptions,
    open_body: Callable[[], IO[bytes]],
    *,
    sendfile_path: str | None = None,
    download_name: str | None = None,
    as_attachment: bool = False,
) -> Response:
    """The response to a GET or HEAD of ``obj``.

    A matching ``If-None-Match`` (or ``If-Modified-Since``) is answered 304 before the
    body is opened; HEAD never opens it either. Ranges, ``If-Range`` and 416 are
    werkzeug's. With a hand-off configured the body is left to the front server, which
    also answers ranges from the file itself.

    :param open_body: opens the object's bytes; called only when a body is sent.
    :param sendfile_path: the file's absolute path, for ``X-Sendfile``.
    :param download_name: the name a browser saves the file under.
    :param as_attachment: download even a type that could be shown inline.
    """
    etag = f'"{obj.id}"'
    last_modified = _http_date(int(obj.mtime))
    if _not_modified(environ, etag, last_modified):
        # RFC 9110 15.4.5: a 304 repeats what guides caches, not the representation's
        # headers (werkzeug would strip those, but ObjectServer skips werkzeug's pass).
        not_modified = Response(status=304, headers=_revalidated_headers(etag))
        del not_modified.headers["Content-Type"]  # werkzeug's default text/plain
        return not_modified
    content_type, inline = _type_headers(obj.extension, options.inline_types)
    headers = {
        "Content-Type": content_type,
        "ETag": etag,
        "Cache-Control": CACHE_CONTROL,
        "X-Content-Type-Options": "nosniff",
        "Last-Modified": last_modified,
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
    # Headers first: anything that can fail does so before a file is open.
    response = Response((), headers=headers, direct_passthrough=True)
    if environ.get("REQUEST_METHOD") != "HEAD":
        response.response = wrap_file(environ, open_body())
    if "HTTP_RANGE" not in environ and "HTTP_IF_MATCH" not in environ:
        return response
    try:
        return response.make_conditional(environ, accept_ranges=True, complete_length=obj.size)
    except RequestedRangeNotSatisfiable:
        response.close()
        headers["Content-Range"] = f"bytes */{obj.size}"
        headers["Content-Length"] = "0"
        return Response(status=416, headers=headers)


@lru_cache(maxsize=1024)
def _http_date(timestamp: int) -> str:
    """Formatting a date is a few microseconds of every response; hot objects repeat."""
    return http_date(timestamp)


def _revalidated_headers(etag: str) -> dict[str, str]:
    return {"ETag": etag, "Cache-Control": CACHE_CONTROL, "X-Content-Type-Options": "nosniff"}


def _not_modified(environ: WSGIEnvironment, etag: str, last_modified: str) -> bool:
    """Whether the client's copy is current (304). A browser revalidating sends back
    exactly our one ETag: that common case skips parsing; werkzeug decides the rest."""
    if_none_match = environ.get("HTTP_IF_NONE_MATCH")
    if if_none_match == etag and "HTTP_IF_MATCH" not in environ:
        return True
    if if_none_match is None and "HTTP_IF_MODIFIED_SINCE" not in environ:
        return False
    return not is_resource_modified(environ, etag, last_modified=last_modified)


def store_response(
    store: HashFS,
    obj: StoredObject,
    environ: WSGIEnvironment,
    options: ServeOptions,
    *,
    download_name: str | None = None,
    as_attachment: bool = False,
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
        # A 200 with its file, or a header-only 304, hand-off or 416, is complete as
        # respond() built it: sending it straight skips werkzeug's copy and re-check of
        # every header, about half the time of a 304. What make_conditional made (206,
        # its own 304 or 412) still goes through it.
        start_response(response.status, response.headers.to_wsgi_list())
        return response.response  # type: ignore[return-value]
