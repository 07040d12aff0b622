"""Flask-HashFS: content-addressed file storage for Flask applications."""

from .address import HashAddress, StoredObject
from .errors import (
    BucketNotFound,
    ConfigurationError,
    HashFSError,
    InvalidExtension,
    InvalidId,
    ObjectNotFound,
    OutsideRoot,
    StorageAccessDenied,
    StorageError,
    StorageUnavailable,
    UnreadableInput,
)
from .extension import FlaskHashFS
from .store import HashFS

__version__ = "1.0.0"

__all__ = [
    "BucketNotFound",
    "ConfigurationError",
    "FlaskHashFS",
    "HashAddress",
    "HashFS",
    "HashFSError",
    "InvalidExtension",
    "InvalidId",
    "ObjectNotFound",
    "OutsideRoot",
    "StorageAccessDenied",
    "StorageError",
    "StorageUnavailable",
    "StoredObject",
    "UnreadableInput",
    "__version__",
]
