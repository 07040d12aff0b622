"""What a client is told when the storage fails: the one mapping from storage errors to HTTP.

- a full disk or quota (:class:`StorageFull`) is ``507 Insufficient Storage``: the
  request was fine, the server has no room for it now;
- an unreachable or throttling bucket (:class:`StorageUnavailable`) is ``503 Service
  Unavailable`` with ``Retry-After``: the same request may succeed later;
- any other :class:`StorageError` is ``500 Internal Server Error``: an operator has
  something to fix.

The message a client sees never names a path or a bucket; the log line does, so that the
operator can find the object or the folder at fault. Serving, ``put_upload`` and the
error handler that ``init_app`` registers all answer through :func:`http_error`, so every
response of the app says the same thing for the same failure.
"""

from __future__ import annotations

import logging

from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable
from werkzeug.wrappers import Response

from .errors import StorageError, StorageFull, StorageUnavailable

logger = logging.getLogger("flask_hashfs")

#: Seconds a client is asked to wait before trying again after a 503: the backend has
#: already retried each request a few times, so an outage is at least that long.
RETRY_AFTER = 5


class InsufficientStorage(HTTPException):
    """*507 Insufficient Storage* (RFC 4918): no room to store the request's content."""

    code = 507
    description = (
        "The server has no space left to store this upload. Nothing was stored; try again later."
    )


def http_error(exc: StorageError, key: str | None = None) -> HTTPException:
    """The HTTP error to answer ``exc`` with, after logging what an operator needs.

    Raise the result (``raise http_error(exc) from exc``) or return it from a view or an
    error handler; Flask and werkzeug send it as is.

    :param key: the object the request was about, if known; the log line names it, or
        else the path or bucket key the error names.
    """
    where = key or exc.filename or "the store"
    if isinstance(exc, StorageFull):
        logger.error("storage full, upload refused with 507 (%s): %s", where, exc)
        return InsufficientStorage()
    if isinstance(exc, StorageUnavailable):
        logger.warning("storage unavailable, answered 503 (%s): %s", where, exc)
        return ServiceUnavailable(
            "The storage is unreachable for a moment; try again later.",
            retry_after=RETRY_AFTER,
        )
    logger.error("storage error on %s, answered 500: %s", where, exc)
    return InternalServerError("The storage failed; the error is logged.")


def handle_storage_error(exc: StorageError) -> Response:
    """A Flask error handler for :class:`StorageError`: the response of :func:`http_error`.

    ``init_app`` registers it on the app; an app that registers its own handler for
    ``StorageError`` (or a subclass) after ``init_app`` replaces it.
    """
    return http_error(exc).get_response()
