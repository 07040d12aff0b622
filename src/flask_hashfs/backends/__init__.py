"""Where stored bytes live. The store talks to one :class:`Backend`, whichever it is."""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Collection, Mapping
from typing import Any

from ..errors import ConfigurationError
from ..headers import DEFAULT_INLINE_TYPES
from ..headers import inline_types as checked_inline_types
from .base import Backend, Incoming, ObjectInfo, PresignedPut, Publisher, Writer
from .local import LocalBackend

__all__ = [
    "Backend",
    "Incoming",
    "LocalBackend",
    "ObjectInfo",
    "PresignedPut",
    "Publisher",
    "Writer",
    "open_backend",
]

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def open_backend(
    root: str | os.PathLike[str],
    *,
    fmode: int,
    dmode: int,
    fsync: bool,
    storage_options: Mapping[str, Any] | None = None,
    inline_types: Collection[str] = DEFAULT_INLINE_TYPES,
) -> Backend:
    """The backend a root names: ``s3://bucket[/prefix]`` is a bucket, anything else a folder.

    The object storage client is imported only for an ``s3://`` root, so the local store
    needs nothing beyond the standard library. ``inline_types`` decide the headers a
    bucket stores with each object (see ``headers.object_headers``).
    """
    inline = checked_inline_types(inline_types)
    text = os.fspath(root)
    if storage_options is not None and not isinstance(storage_options, Mapping):
        raise ConfigurationError(
            "storage_options", f"must be a mapping of option names, not {storage_options!r}"
        )
    scheme = _URL.match(text)
    if scheme is None:
        if storage_options:
            raise ConfigurationError(
                "storage_options", f"apply to object storage (s3://...), not to the folder {text!r}"
            )
        return LocalBackend(root, fmode=fmode, dmode=dmode, fsync=fsync)
    if scheme.group() != "s3://":
        raise ConfigurationError(
            "root", f"{text!r} names unsupported storage {scheme.group()!r}: use a folder or s3://"
        )
    if importlib.util.find_spec("boto3") is None:
        raise ConfigurationError("root", f"{text!r} needs boto3: pip install 'Flask-HashFS[s3]'")
    from .s3 import S3Backend

    return S3Backend(text, storage_options, inline_types=inline)
