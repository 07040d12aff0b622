"""Opening a root-relative path so that every folder on the way is the tree's own.

Checking a path's folders and then using the path again is a race: between the two, a
local user who can write in the root may turn a shard folder into a symlink that leads
out of it. Every read, delete and move therefore goes through a descriptor that was
opened, in one step, through real folders only:

- On Linux 5.6 and later, one ``openat2`` call with ``RESOLVE_NO_SYMLINKS`` opens the key
  from the root's absolute path: the kernel refuses any symlink on the way, and the key
  (validated: no ``..``, no empty part) cannot climb out. Python has no ``os.openat2``, so
  it is called through ``ctypes``; it costs about what one ``stat`` does, fewer system
  calls than a check followed by an open. Nothing is held open between calls, so a root
  that is removed and made again, or renamed away, is simply found again, and no
  descriptor outlives a fork.
- Elsewhere (macOS, older kernels, sandboxes that refuse the call), the folder is
  opened, and then it is checked, through that descriptor, that climbing ``..`` from it
  ends at the root: ``..`` goes through real parents, so this holds only for a real
  folder of the tree. Files are then reached relative to the checked descriptor. (A
  symlink between two shard folders of the same depth inside the root passes this
  check; it grants nothing that write access to the root does not grant already.)

Publication (``local.LocalBackend._link``) checks the folder it holds locked the same
portable way.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import stat
import sys

#: What lookups treat as "no such object": a symlink on the way (ELOOP), a way out of
#: the root (EXDEV), or a file where a folder should be (ENOTDIR).
_NOT_BENEATH = {errno.ELOOP, errno.EXDEV, errno.ENOTDIR}
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_OPEN_FOLDER = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC
_OPEN_OWN_FOLDER = _OPEN_FOLDER | getattr(os, "O_NOFOLLOW", 0)
_AT_FDCWD = -100
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_BENEATH = 0x08
#: openat2's number: the same on every architecture that shares the generic table.
_SYS_OPENAT2 = 437
_ENCODING = sys.getfilesystemencoding()
_ERRORS = sys.getfilesystemencodeerrors()
_GENERIC_TABLE = {"x86_64", "aarch64", "arm64", "riscv64", "ppc64le", "s390x", "armv7l", "i686"}


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _load_openat2() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """libc's ``syscall``, if openat2 works here. It is given no ``argtypes``: every call
    passes ready-made ctypes objects (and the path as bytes, a char pointer), which skips
    ctypes' conversion of each argument (0.3 us of the 3 us an open and close took)."""
    if sys.platform != "linux" or platform.machine() not in _GENERIC_TABLE:
        return None
    try:
        syscall = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    fd = syscall(_NUMBER, _FROM_CWD, b"/", _how(_OPEN_FOLDER), _HOW_SIZE)
    if fd < 0:
        return None  # ENOSYS (before Linux 5.6) or EPERM (a seccomp filter)
    os.close(fd)
    return syscall


_NUMBER = ctypes.c_long(_SYS_OPENAT2)
_FROM_CWD = ctypes.c_int(_AT_FDCWD)
_HOW_SIZE = ctypes.c_size_t(ctypes.sizeof(_OpenHow))
#: One prepared ``open_how`` per set of open flags, kept for the process.
#: (A ``byref`` keeps its structure alive.)
_HOWS: dict[int, object] = {}


def _how(flags: int) -> object:
    """A pointer to the prepared ``open_how`` for these flags (no symlinks on the way)."""
    prepared = _HOWS.get(flags)
    if prepared is None:
        how = _OpenHow(flags, 0, _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS)
        prepared = _HOWS[flags] = ctypes.byref(how)
    return prepared


_openat2 = _load_openat2()
#: Whether lookups use openat2; tests turn it off to run the portable walk on Linux.
OPENAT2 = _openat2 is not None
#: An object looked at, not opened: a descriptor for fstat only (no read access needed,
#: no device or FIFO is ever opened).
_LOOK = getattr(os, "O_PATH", 0) | getattr(os, "O_NOFOLLOW", 0) | _CLOEXEC


def _absent(path: str) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, "no stored object", path)


class Beneath:
    """Descriptors of files and folders under ``location`` (a real path: no symlinks).

    Every method raises :class:`FileNotFoundError` for a path that is missing or that
    does not lead through real folders of the tree; the caller closes what it gets.
    """

    def __init__(self, location: str) -> None:
        self.location = location
        self._prefix = location.rstrip(os.sep) + os.sep
        self._encoded_prefix = os.fsencode(self._prefix)
        self._root_id: tuple[int, int] | None = None

    def open(self, key: str, flags: int) -> int:
        """Open the file at root-relative ``key`` with ``flags`` (``O_NOFOLLOW`` is added)."""
        flags |= os.O_NOFOLLOW | os.O_CLOEXEC  # only ever called where both exist
        if OPENAT2:
            return self._openat2(key, flags)
        folder, _, name = key.rpartition("/")
        folder_fd = self.open_folder(folder)
        try:
            return os.open(name, flags, dir_fd=folder_fd)
        except OSError as exc:
            if exc.errno in _NOT_BENEATH:
                raise _absent(self._prefix + key) from None
            raise
        finally:
            os.close(folder_fd)

    def open_folder(self, folder: str) -> int:
        """Open root-relative ``folder`` ("" is the root) for listing and ``*at`` calls."""
        if OPENAT2:
            return self._openat2(folder or ".", _OPEN_OWN_FOLDER)
        path = self._prefix + folder if folder else self.location
        try:
            fd = os.open(path, _OPEN_FOLDER)
        except OSError as exc:
            if exc.errno in _NOT_BENEATH:
                raise _absent(path) from None
            raise
        try:
            if not self.is_real_folder(folder, fd):
                raise _absent(path)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def lstat(self, key: str) -> os.stat_result:
        """What ``os.lstat`` says of the entry at ``key``, reached through real folders."""
        if OPENAT2:
            fd = self._openat2(key, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                return os.fstat(fd)
            finally:
                os.close(fd)
        folder, _, name = key.rpartition("/")
        folder_fd = self.open_folder(folder)
        try:
            return os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
        finally:
            os.close(folder_fd)

    def is_file(self, key: str) -> bool:
        """Whether the entry at ``key``, reached through real folders, is a regular file;
        False, never an error, when it is missing or out of reach.

        With openat2 this is the cheapest confined answer there is: the object itself is
        looked at (``O_PATH``, so nothing is really opened), then one ``fstat``.
        """
        if not OPENAT2:
            try:
                return stat.S_ISREG(self.lstat(key).st_mode)
            except (OSError, ValueError):
                return False
        fd = self._try(key, _LOOK)
        if fd < 0:
            return False
        try:
            return stat.S_ISREG(os.fstat(fd).st_mode)
        finally:
            os.close(fd)

    def _openat2(self, key: str, flags: int) -> int:
        fd = self._try(key, flags)
        if fd >= 0:
            return fd
        path = self._prefix + key
        if -fd == errno.ENOENT or -fd in _NOT_BENEATH:
            raise _absent(path)
        raise OSError(-fd, os.strerror(-fd), path)

    def _try(self, key: str, flags: int) -> int:
        """openat2 of ``key`` from the root's path: the descriptor, or minus the errno
        (no exception: a lookup that finds nothing pays for no raise)."""
        assert _openat2 is not None
        path = self._encoded_prefix + key.encode(_ENCODING, _ERRORS)
        fd: int = _openat2(_NUMBER, _FROM_CWD, path, _HOWS.get(flags) or _how(flags), _HOW_SIZE)
        if fd >= 0:
            return fd
        error = ctypes.get_errno()
        if error == errno.ELOOP and not self._root_is_real():
            return self._try_from_root(key, flags)
        return -error

    def _root_is_real(self) -> bool:
        """False if a folder above the root became a symlink since the root was resolved
        (a volume moved and linked back): only the part under the root must be real."""
        return os.path.realpath(self.location) == self.location

    def _try_from_root(self, key: str, flags: int) -> int:
        """The slow way, for a root reached through a symlink: from the root, held open."""
        how = _OpenHow(flags, 0, _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS | _RESOLVE_BENEATH)
        root = os.open(self.location, _OPEN_FOLDER)
        try:
            assert _openat2 is not None
            fd: int = _openat2(
                _NUMBER, ctypes.c_int(root), os.fsencode(key), ctypes.byref(how), _HOW_SIZE
            )
        finally:
            os.close(root)
        return fd if fd >= 0 else -ctypes.get_errno()

    # -- the portable check ----------------------------------------------------------------

    def is_real_folder(self, folder: str, dir_fd: int | None = None) -> bool:
        """Whether root-relative ``folder`` (open as ``dir_fd`` if given) is a real folder
        of this tree: climbing ``..`` from it, through real parents, ends at the root.

        :raises FileNotFoundError: the folder is missing.
        """
        if not folder:
            if dir_fd is None:
                return True
            st = os.fstat(dir_fd)
        else:
            levels = folder.count("/") + 1
            if dir_fd is None:
                st = os.stat(self._prefix + folder + "/.." * levels)
            else:
                st = os.stat("../" * levels, dir_fd=dir_fd)
        found = (st.st_dev, st.st_ino)
        # The root may have been removed and made again since we last looked.
        return found == self._root_id or found == self._refresh_root_id()

    def _refresh_root_id(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.location)
        except OSError:
            return None
        self._root_id = (st.st_dev, st.st_ino)
        return self._root_id
