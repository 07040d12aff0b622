"""What the store hands out: the value ``put`` and ``get`` return (with the same fields
and defaults as hashfs 0.7), what serving looks up, and a direct upload's terms."""

from __future__ import annotations

from typing import NamedTuple


class HashAddress(NamedTuple):
    """Where a stored object lives.

    :param id: the content hash (lowercase hex digest).
    :param relpath: the object's path relative to the root, ``/``-separated on disk as on
        object storage; pass it to ``url_for``.
    :param abspath: the object's absolute path, or its URL on object storage.
    :param is_duplicate: ``True`` when ``put`` found the content already stored.
    """

    id: str
    relpath: str
    abspath: str
    is_duplicate: bool = False


class StoredObject(NamedTuple):
    """What serving needs to answer a request for one object without opening it.

    :param id: the content hash; a strong ETag, since the content never changes.
    :param extension: ``""`` or ``".ext"``, as stored; it decides the Content-Type.
    :param key: the object's ``/``-separated path relative to the root (its relpath).
    :param size: in bytes.
    :param mtime: when it was stored (seconds since the epoch).
    """

    id: str
    extension: str
    key: str
    size: int
    mtime: float


class DirectUpload(NamedTuple):
    """The terms of one direct upload, from its authorization to its publication: keep
    them where the client cannot change them (the app signs them into a ticket).

    :param id: the SHA-256 the client declared, which the storage holds its bytes to.
    :param size: the exact length authorized, in bytes.
    :param extension: ``""`` or ``".ext"``, normalized, to publish the object with.
    :param key: the incoming key the client uploads to, under ``.hashfs/incoming/``.
    """

    id: str
    size: int
    extension: str
    key: str
