"""Flask-HashFS: content-addressed file storage for Flask applications."""

from .address import DirectUpload, HashAddress, StoredObject
from .backends import PresignedPut
from .errors import (
    BucketNotFound,
    ConfigurationError,
    HashFSError,
    InvalidExtension,
    InvalidId,
    InvalidUpload,
    ObjectNotFound,
    OutsideRoot,
    StorageAccessDenied,
    StorageError,
    StorageFull,
    StorageUnavailable,
    UnreadableInput,
    UploadNotReceived,
)
from .extension import FlaskHashFS
from .http_errors import InsufficientStorage, handle_storage_error, http_error
from .maintenance import Finding, RepairAction, RepairReport, VerifyReport
from .multipart import StoredUpload, StreamedForm
from .store import HashFS
from .sweep import SweepReport

__version__ = "1.0.0"

__all__ = [
    "BucketNotFound",
    "ConfigurationError",
    "DirectUpload",
    "Finding",
    "FlaskHashFS",
    "HashAddress",
    "HashFS",
    "HashFSError",
    "InsufficientStorage",
    "InvalidExtension",
    "InvalidId",
    "InvalidUpload",
    "ObjectNotFound",
    "OutsideRoot",
    "PresignedPut",
    "RepairAction",
    "RepairReport",
    "StorageAccessDenied",
    "StorageError",
    "StorageFull",
    "StorageUnavailable",
    "StoredObject",
    "StoredUpload",
    "StreamedForm",
    "SweepReport",
    "UnreadableInput",
    "UploadNotReceived",
    "VerifyReport",
    "__version__",
    "handle_storage_error",
    "http_error",
]
