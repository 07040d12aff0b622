"""What every copy of an object says about itself, wherever it is served from.

The app's own route, nginx after an X-Accel-Redirect, and a bucket behind a CDN all send
the same object, so they must agree on its type, on whether a browser may render it,
and on caching. These are decided here once, without a web framework and without the
host's configuration: ``/etc/mime.types`` differs between machines, and an answer
cached for a year must not depend on which machine gave it.
"""

from __future__ import annotations

import mimetypes
from functools import lru_cache

#: Content can never change under its URL, so caches may keep it for a year unchecked.
CACHE_CONTROL = "public, max-age=31536000, immutable"
#: For objects a view sends after checking access: only the browser may keep a copy,
#: and it asks again before each use, so that the view checks again (a 304 if allowed).
PRIVATE_CACHE_CONTROL = "private, no-cache"

OCTET_STREAM = "application/octet-stream"

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
