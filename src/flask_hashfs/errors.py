"""The exceptions the store raises.

Each one also derives from the built-in exception that hashfs 0.7 raised in the same
situation (``ValueError`` for bad arguments, ``IOError`` for a missing file), so code
written for hashfs keeps catching what it caught before.
"""

from __future__ import annotations

import errno


class HashFSError(Exception):
    """Base class: catch this to handle every error the store raises on purpose."""


class InvalidId(HashFSError, ValueError):
    """The text is not a content id of the store's algorithm (lowercase hex, exact length)."""

    def __init__(self, value: object, reason: str) -> None:
        self.value = value
        super().__init__(f"invalid id {value!r}: {reason}")


class InvalidExtension(HashFSError, ValueError):
    """An extension that could escape its folder or confuse a parser is refused up front."""

    def __init__(self, value: object, reason: str) -> None:
        self.value = value
        super().__init__(f"invalid extension {value!r}: {reason}")


class OutsideRoot(HashFSError, ValueError):
    """A path that does not lie under the store's root is never acted on."""

    def __init__(self, path: object, root: str) -> None:
        self.path = path
        self.root = root
        super().__init__(f"path {path!r} is not under the store root {root!r}")


class UnreadableInput(HashFSError, ValueError):
    """``put`` was handed something that is neither an existing file path nor a stream."""


class InvalidUpload(HashFSError, ValueError):
    """A direct upload the store cannot authorize or publish as described: a size below
    zero or beyond what one request to the storage carries, or an incoming key that is
    not one the store hands out."""


class UploadNotReceived(HashFSError, FileNotFoundError):
    """The bytes of a direct upload are not at its incoming key, or not the bytes that
    were authorized: the client never sent them, the storage refused them, or they were
    removed as stale. Nothing was published."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        super().__init__(f"direct upload {key!r}: {reason}")


class ObjectNotFound(HashFSError, FileNotFoundError):
    """No stored object answers to this id or path."""

    def __init__(self, file: object) -> None:
        self.file = file
        super().__init__(f"no stored object for {file!r}")


class StorageError(HashFSError, OSError):
    """The storage failed (a full disk, an I/O or fsync error, an object store's refusal).

    A failed put stored nothing. The message names the path, or the bucket and key.
    """


class StorageFull(StorageError):
    """The file system is full, or the user's quota is spent (ENOSPC, EDQUOT).

    Nothing was stored; the same put succeeds once space is freed. Served as 507.
    """


#: The errno values that mean "no space left", whichever limit was hit.
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def storage_error(code: int, message: str, path: str | None = None) -> StorageError:
    """The :class:`StorageError` for an OS error number: :class:`StorageFull` for a full
    disk or quota, so that callers can tell "free some space" from "something broke"."""
    kind = StorageFull if code in _FULL else StorageError
    return kind(code, message) if path is None else kind(code, message, path)


class StorageAccessDenied(StorageError, PermissionError):
    """The object store refused the credentials or the request (wrong key, no permission)."""


class BucketNotFound(StorageError, FileNotFoundError):
    """The store's bucket does not exist: a configuration error, not a missing object."""


class StorageUnavailable(StorageError):
    """The object store could not be reached or kept throttling, retries included.

    Worth trying again later: nothing about the request itself was wrong.
    """


class ConfigurationError(HashFSError, ValueError):
    """A setting the store cannot work with (an algorithm, depth or width that cannot
    address content, a root or storage options it cannot use).

    :param parameter: the argument at fault (``"depth"``, ``"root"``, ...), so that a
        caller can name its own setting instead (``FlaskHashFS`` names the config key).
    :param reason: what is wrong with it, as the rest of a sentence that starts with it.
    """

    def __init__(self, parameter: str, reason: str) -> None:
        self.parameter = parameter
        self.reason = reason
        super().__init__(f"{parameter} {reason}")


class UploadNotFound(HashFSError, LookupError):
    """No resumable upload has this token: never created, finished long ago, removed."""


class UploadExpired(UploadNotFound):
    """The resumable upload's time ran out; it is removed by the next expiry run."""


class UploadBusy(HashFSError):
    """Another request is appending to the same upload right now."""


class OffsetConflict(HashFSError, ValueError):
    """A chunk was sent for another offset than the upload's current one.

    :param offset: the upload's current offset, where the client must resume.
    """

    def __init__(self, offset: int) -> None:
        self.offset = offset
        super().__init__(f"the upload is at offset {offset}")


class ChunkRefused(HashFSError, ValueError):
    """A chunk failed its check (a checksum): it was dropped, and the offset is unchanged."""
