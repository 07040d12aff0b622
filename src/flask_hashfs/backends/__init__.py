"""Where stored bytes live. The store talks to one :class:`Backend`, whichever it is."""

from .base import Backend, ObjectInfo, Writer
from .local import LocalBackend

__all__ = ["Backend", "LocalBackend", "ObjectInfo", "Writer"]
