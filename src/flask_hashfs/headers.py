"""What every copy of an object says about itself, wherever it is served from.

The app's own route, nginx after an X-Accel-Redirect, and a bucket behind a CDN all send
the same object, so they must agree on its type, on whether a browser may render it,
and on caching. These are decided here once, without a web framework and without the
host's configuration: ``/etc/mime.types`` differs between machines, and an answer
cached for a year must not depend on which machine gave it.
"""

from __future__ import annotations

import mimetypes
import unicodedata
from collections.abc import Collection
from functools import lru_cache
from urllib.parse import quote

from werkzeug.utils import get_content_type

from .errors import ConfigurationError

#: Content can never change under its URL, so caches may keep it for a year unchecked.
CACHE_CONTROL = "public, max-age=31536000, immutable"
#: For objects a view sends after checking access: only the browser may keep a copy,
#: and it asks again before each use, so that the view checks again (a 304 if allowed).
PRIVATE_CACHE_CONTROL = "private, no-cache"

OCTET_STREAM = "application/octet-stream"

#: Types a browser may render inline: media that runs no script. Anything else is sent
#: as a sandboxed attachment. An app sets its own with ``HASHFS_INLINE_TYPES``, and a
#: store (whose bucket objects carry these headers) with ``inline_types``.
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

#: Python's built-in table, not the host's; common media it lacks are added.
_TYPES = mimetypes.MimeTypes()
for _type, _extensions in {
    "audio/ogg": (".ogg", ".oga", ".opus"),
    "video/ogg": (".ogv",),
    "audio/flac": (".flac",),
    "audio/mp4": (".m4a",),
    "audio/webm": (".weba",),
}.items():
    for _extension in _extensions:
        _TYPES.add_type(_type, _extension)


@lru_cache(maxsize=256)
def media_type(extension: str) -> str:
    """The media type of a stored extension (``".jpg"`` -> ``"image/jpeg"``).

    A compressed type (``.tar.gz``) is served as octet-stream: a ``Content-Encoding``
    would make clients unpack what the user stored.
    """
    if not extension:
        return OCTET_STREAM
    guessed, encoding = _TYPES.guess_type("x" + extension.lower(), strict=False)
    if guessed is None or encoding is not None:
        return OCTET_STREAM
    return guessed


def is_active(mimetype: str) -> bool:
    """Whether a browser may run script or markup of this type: HTML, any XML (SVG,
    XHTML, XSLT, feeds) and JavaScript. Such types are never served inline."""
    kind = mimetype.partition(";")[0].strip().lower()
    return (
        "html" in kind
        or kind.endswith(("/xml", "+xml", "/xsl"))
        or "javascript" in kind
        or "ecmascript" in kind
    )


def inline_types(types: Collection[str]) -> frozenset[str]:
    """``types`` as the set the decisions below take, refusing any active type.

    :raises ConfigurationError: a type that runs script or markup (HTML, XML,
        JavaScript); a ``ValueError``.
    """
    if isinstance(types, str) or not all(isinstance(t, str) for t in types):
        raise ConfigurationError(
            "inline_types", f"must be a collection of media types, not {types!r}"
        )
    chosen = frozenset(t.lower() for t in types)
    active = sorted(t for t in chosen if is_active(t))
    if active:
        raise ConfigurationError(
            "inline_types", f"lists {active}, but active content can never be served inline"
        )
    return chosen


@lru_cache(maxsize=256)
def type_headers(extension: str, inline: frozenset[str]) -> tuple[str, bool]:
    """The ``Content-Type`` of an extension (with a charset for text), and whether a
    browser may render it inline."""
    mimetype = media_type(extension)
    return get_content_type(mimetype, "utf-8"), mimetype in inline


def object_headers(id: str, extension: str, inline: frozenset[str]) -> tuple[str, str | None]:
    """``Content-Type`` and ``Content-Disposition`` (None: inline) of an object as every
    copy says it: the app's route, a signed URL, and the object in a bucket."""
    content_type, shown_inline = type_headers(extension, inline)
    if shown_inline:
        return content_type, None
    return content_type, content_disposition("attachment", id + extension)


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


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def known_extensions() -> frozenset[str]:
    """Every extension the type table names, lowercased: a front server that serves the
    store itself (``flask hashfs nginx-config``) is given the type of each."""
    named = [*_TYPES.types_map[True], *_TYPES.types_map[False]]
    named += [*_TYPES.suffix_map, *_TYPES.encodings_map]
    return frozenset(extension.lower() for extension in named)
