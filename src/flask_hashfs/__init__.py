"""Flask-HashFS: content-addressed file storage for Flask applications."""

from .address import HashAddress, StoredObject
from .errors import (
    ConfigurationError,
    HashFSError,
    InvalidExtension,
    InvalidId,
    ObjectNotFound,
    OutsideRoot,
    StorageError,
    UnreadableInput,
)
from .extension import FlaskHashFS
from .store import HashFS

__version__ = "1.0.0"

__all__ = [
    "ConfigurationError",
    "FlaskHashFS",
    "HashAddress",
    "HashFS",
    "HashFSError",
    "InvalidExtension",
    "InvalidId",
    "ObjectNotFound",
    "OutsideRoot",
    "StorageError",
    "StoredObject",
    "UnreadableInput",
    "__version__",
]
