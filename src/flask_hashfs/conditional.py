"""Conditional and range requests for a stored object (RFC 9110 sections 13 and 14).

werkzeug parses the header values (entity tags, dates, byte ranges); the decisions are
made here, in the order of RFC 9110 section 13.2.2, because werkzeug's
``make_conditional`` differs from the RFC where it matters to a file server: it answers
``If-Match: *`` with 412, looks at ``Range`` before ``If-Match`` (206 where 412 is
due), drops ``W/`` from an ``If-Range`` tag (a weak tag then gives a 206), and answers
416 to a ``Range`` in another unit, to several ranges, and to a suffix longer than the
object, which are all to be answered with the whole object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.http import parse_date, parse_etags, parse_range_header

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

NOT_MODIFIED = 304
PRECONDITION_FAILED = 412


def precondition_status(environ: WSGIEnvironment, id: str, mtime: int) -> int | None:
    """412 or 304 if the request's preconditions decide the answer, else None.

    :param id: the object's id: its strong entity tag, unquoted.
    :param mtime: its ``Last-Modified``, in whole seconds.
    """
    if "HTTP_IF_MATCH" not in environ and "HTTP_IF_UNMODIFIED_SINCE" not in environ:
        # The usual requests, unparsed: no condition at all, or a browser revalidating
        # with exactly the tag it was given.
        if_none_match = environ.get("HTTP_IF_NONE_MATCH")
        if if_none_match is None:
            if "HTTP_IF_MODIFIED_SINCE" not in environ:
                return None
        elif if_none_match == f'"{id}"':
            return NOT_MODIFIED
    return _evaluate(environ, id, mtime)


def _evaluate(environ: WSGIEnvironment, id: str, mtime: int) -> int | None:
    """RFC 9110 13.2.2, steps 1 to 4, for a GET or HEAD of an object that exists."""
    if_match = parse_etags(environ.get("HTTP_IF_MATCH"))
    if if_match:
        # Strong comparison; "*" holds for any object that exists, and this one does.
        if not if_match.contains(id):
            return PRECONDITION_FAILED
    else:
        unmodified_since = parse_date(environ.get("HTTP_IF_UNMODIFIED_SINCE"))
        if unmodified_since is not None and mtime > unmodified_since.timestamp():
            return PRECONDITION_FAILED
    if_none_match = parse_etags(environ.get("HTTP_IF_NONE_MATCH"))
    if if_none_match:
        # Weak comparison, and "*" matches: the client has this object.
        return NOT_MODIFIED if if_none_match.contains_weak(id) else None
    modified_since = parse_date(environ.get("HTTP_IF_MODIFIED_SINCE"))
    if modified_since is not None and mtime <= modified_since.timestamp():
        return NOT_MODIFIED
    return None


def requested_range(
    environ: WSGIEnvironment, id: str, mtime: int, size: int
) -> tuple[int, int] | None:
    """``(start, stop)`` of the one byte range to send as a 206, or None for the whole
    object (200): no ``Range``, an ``If-Range`` that does not hold, a range in
    another unit or malformed, several ranges, or an empty object.

    A HEAD gets the headers a GET would (RFC 9110 9.3.2), a 206's included.
    Several ranges get the whole object rather than a ``multipart/byteranges`` body:
    clients that ask for several ranges accept either, and one response per request
    keeps a flood of tiny ranges from costing more than the file.

    :raises RequestedRangeNotSatisfiable: every range starts past the end (416).
    """
    header = environ.get("HTTP_RANGE")
    if header is None or size == 0:
        return None
    if_range = environ.get("HTTP_IF_RANGE")
    if if_range is not None and not _if_range_holds(if_range.strip(), id, mtime):
        return None
    parsed = parse_range_header(header)
    if parsed is None or parsed.units != "bytes":
        return None
    spans = [span for span in (_span(*r, size) for r in parsed.ranges) if span is not None]
    if not spans:
        raise RequestedRangeNotSatisfiable(length=size)
    if len(parsed.ranges) > 1:
        return None
    return spans[0]


def _span(begin: int, end: int | None, size: int) -> tuple[int, int] | None:
    """A parsed range cut to the object, or None if it lies past the end."""
    if begin < 0:  # the last -begin bytes; all of a shorter object
        return max(size + begin, 0), size
    if begin >= size:
        return None
    return begin, size if end is None else min(end, size)


def _if_range_holds(value: str, id: str, mtime: int) -> bool:
    """If-Range (RFC 9110 13.1.5): an entity tag matches by strong comparison only, so a
    weak ``W/"..."`` never does; a date must equal ``Last-Modified`` exactly."""
    if value.startswith('"'):
        return value == f'"{id}"'
    date = parse_date(value)
    return date is not None and int(date.timestamp()) == mtime
