"""The value ``put`` and ``get`` return, with the same fields and defaults as hashfs 0.7."""

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
