"""Partial uploads in a folder root: ``.hashfs/uploads/<token>.json`` and ``<token>.part``.

The bytes are written into the ``.part`` file and fsynced before the record that
acknowledges them is replaced, so no crash leaves a record that counts bytes that are
not there. The folder is fsynced only before the finished upload is published: a power
cut may bring back an earlier record, and the client, which asks for the offset before
it resumes, sends those bytes again (two fsyncs per chunk instead of three). A
chunk is written where the record says the acknowledged bytes end; what a refused or
crashed chunk left beyond that is overwritten, and truncated at the end. An ``flock``
on the ``.part`` file makes requests take turns, and a killed process lets go of it.

When the upload is whole, the ``.part`` file is published by a hard link into its shard
folder, through the same locked link as any put (``LocalBackend._link``): the bytes are
never copied. Until the ``.part`` name is dropped the object and the partial upload are
one inode, which is safe because nothing appends to an upload that holds all its bytes.
The record is replaced by a rename, so it is always the old one or the new one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from ..errors import ChunkRefused, StorageError, UploadBusy, UploadNotFound
from .base import Writer
from .local import LocalBackend, _storage_error
from .partial import UPLOADS, HeldUpload, PartialUploads, is_token

_FOLDER = UPLOADS.rstrip("/")
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
_RECORD = ".json"
_BYTES = ".part"


class LocalPartialUploads(PartialUploads):
    def __init__(self, backend: LocalBackend) -> None:
        self._backend = backend

    def _folder(self) -> int:
        """The uploads folder, made if missing, reached through real folders only."""
        try:
            os.makedirs(self._backend.location, self._backend.dmode, exist_ok=True)
            return self._backend._open_folder(_FOLDER, create=True)
        except OSError as exc:
            raise _storage_error(exc, "open", self._backend.abspath(_FOLDER)) from None

    def _path(self, name: str) -> str:
        return self._backend.abspath(UPLOADS + name)

    def _sync(self, fd: int) -> None:
        if self._backend.fsync:
            os.fsync(fd)

    def _write_record(
        self, folder: int, token: str, record: dict[str, Any], *, durable_name: bool = True
    ) -> None:
        """Replace the record by a rename, its content fsynced first. With
        ``durable_name`` off the folder is not fsynced: a crash may then bring back the
        record before, which acknowledged fewer bytes, and the client sends them again."""
        temp = f"{token}{_RECORD}.new-{secrets.token_hex(4)}"
        data = json.dumps(record).encode()
        try:
            fd = os.open(
                temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600, dir_fd=folder
            )
            try:
                os.write(fd, data)
                self._sync(fd)
            finally:
                os.close(fd)
            os.rename(temp, token + _RECORD, src_dir_fd=folder, dst_dir_fd=folder)
            if durable_name:
                self._sync(folder)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=folder)
            raise _storage_error(exc, "write", self._path(token + _RECORD)) from None

    def create(self, token: str, record: dict[str, Any]) -> None:
        """The record first: a crash before the ``.part`` file exists leaves an upload
        that takes no bytes and expires like any other."""
        folder = self._folder()
        try:
            self._write_record(folder, token, record)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
            try:
                fd = os.open(token + _BYTES, flags, self._backend.fmode, dir_fd=folder)
                os.fchmod(fd, self._backend.fmode)  # the object's, whatever the umask
                os.close(fd)
                self._sync(folder)
            except OSError as exc:
                raise _storage_error(exc, "create", self._path(token + _BYTES)) from None
        finally:
            os.close(folder)

    def load(self, token: str) -> dict[str, Any] | None:
        if not is_token(token):
            return None
        folder = self._folder()
        try:
            fd = os.open(token + _RECORD, os.O_RDONLY | _NOFOLLOW, dir_fd=folder)
            with open(fd, "rb") as file:
                record: dict[str, Any] = json.loads(file.read())
            return record
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            code = exc.errno if isinstance(exc, OSError) else errno.EIO
            where = self._path(token + _RECORD)
            raise StorageError(code or errno.EIO, f"could not read {where}: {exc}", where) from None
        finally:
            os.close(folder)

    def save(self, token: str, record: dict[str, Any]) -> None:
        folder = self._folder()
        try:
            self._write_record(folder, token, record)
        finally:
            os.close(folder)

    @contextlib.contextmanager
    def hold(self, token: str) -> Iterator[HeldUpload]:
        if not is_token(token):
            raise UploadNotFound(token)
        folder = self._folder()
        try:
            fd = os.open(token + _BYTES, os.O_RDWR | _NOFOLLOW, dir_fd=folder)
        except FileNotFoundError:
            os.close(folder)
            raise UploadNotFound(token) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UploadBusy(token) from None
            if os.fstat(fd).st_nlink == 0:
                raise UploadNotFound(token)  # removed between open and lock
            yield _HeldFile(self, token, folder, fd)
        finally:
            os.close(fd)
            os.close(folder)

    def remove(self, token: str) -> bool:
        try:
            with self.hold(token) as held:
                held.remove()
        except UploadBusy:
            return False
        except UploadNotFound:  # a finished upload: its record only
            if not is_token(token):
                return False
            folder = self._folder()
            try:
                self._remove_record(folder, token)
            finally:
                os.close(folder)
        return True

    def _remove_record(self, folder: int, token: str) -> None:
        """The record, and what a crash left of a new one being written."""
        try:
            for name in os.listdir(folder):
                if name == token + _RECORD or name.startswith(token + _RECORD + ".new-"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name, dir_fd=folder)
            self._sync(folder)
        except OSError as exc:
            raise _storage_error(exc, "remove", self._path(token + _RECORD)) from None

    def tokens(self) -> Iterator[str]:
        folder = self._folder()
        try:
            names = os.listdir(folder)
        finally:
            os.close(folder)
        found = {name.partition(".")[0] for name in names}
        return iter(sorted(token for token in found if is_token(token)))


class _HeldFile(HeldUpload):
    def __init__(self, uploads: LocalPartialUploads, token: str, folder: int, fd: int) -> None:
        self._uploads = uploads
        self._token = token
        self._folder = folder
        self._fd = fd

    def append(
        self,
        start: int,
        chunks: Iterable[bytes],
        accept: Callable[[], bool] | None,
        commit: Callable[[int], dict[str, Any]],
    ) -> int:
        position = start
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    written = os.pwrite(self._fd, view, position)
                    position += written
                    view = view[written:]
            if accept is not None and not accept():
                raise ChunkRefused("the chunk does not match its checksum")
            if os.fstat(self._fd).st_size > position:
                os.ftruncate(self._fd, position)
            self._uploads._sync(self._fd)
        except OSError as exc:
            path = self._uploads._path(self._token + _BYTES)
            raise _storage_error(exc, "append to", path) from None
        self._uploads._write_record(self._folder, self._token, commit(position), durable_name=False)
        return position

    def reader(self) -> IO[bytes]:
        stream = open(os.dup(self._fd), "rb")  # noqa: SIM115
        stream.seek(0)  # the dup shares the file's offset
        return stream

    def writer(self) -> Writer:
        return _PartWriter(self._uploads, self._token + _BYTES, self._folder, self._fd)

    def drop_bytes(self) -> None:
        try:
            os.unlink(self._token + _BYTES, dir_fd=self._folder)
            self._uploads._sync(self._folder)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _storage_error(exc, "remove", self._uploads._path(self._token)) from None

    def remove(self) -> None:
        """The bytes first: a record without bytes is a finished upload, harmless, and
        the next expiry run removes it."""
        self.drop_bytes()
        self._uploads._remove_record(self._folder, self._token)


class _PartWriter(Writer):
    """The whole ``.part`` file as a writer's private copy: published by a hard link."""

    def __init__(self, uploads: LocalPartialUploads, name: str, folder: int, fd: int) -> None:
        self._uploads = uploads
        self._backend = uploads._backend
        self._name = name
        self._folder = folder
        self._fd = fd

    def write(self, data: bytes) -> None:
        raise TypeError("a finished upload takes no more bytes")

    def publish(self, key: str) -> bool:
        # Once the bytes are an object's, no request may write them again: the record
        # that acknowledged all of them must not be lost to a crash (see
        # ``_write_record``), or the client would send the last chunk again into them.
        self._uploads._sync(self._folder)
        return self._backend._link(self._name, key, follow_symlinks=False, src_dir_fd=self._folder)

    def discard(self) -> None:
        """The bytes stay the upload's until it is dropped or removed."""
