"""Objects as files under one root folder, published the way git publishes objects.

A put writes a temp file in the root itself (so it is on the same filesystem as every
shard folder), fsyncs it, and hard-links it under its final name: ``link`` fails instead
of overwriting, which makes a racing duplicate harmless, and the final name never shows
a partial file.

On Linux the temp file has no name at all (``O_TMPFILE``): a writer that dies at any
instant leaves nothing behind, and there is no name to pick, lock or unlink. Where the
file system cannot do that, the temp file is named ``.hashfs-tmp-<random>`` and holds an
``flock`` for as long as its writer lives, so that a sweep can tell a crashed writer's
leftover from a live put.

Claims and sweeps. A put that finds its content stored *claims* the object: one
``utime`` sets its modification time to now, as git freshens an object it would have
written. It is made by name, relative to the shard folder that the put's lookup opened
through real folders, so it costs no second walk of the path and cannot be led out of
the root. The utime fails if the file is gone, and the put then publishes its own copy,
through the same shard-folder lock as any put, so there is still one object per id.

A sweep removes an object in three steps: ``rename`` it into ``.hashfs/aside/`` (same
file system, so the inode and its mtime move with it), ``stat`` it there, and unlink it
only if its inode and mtime are those the sweep judged old; otherwise a claim landed (or
a new put replaced the file), and it is linked back through publication. Why no claim
is lost: a claim is a utime *at the object's address*. One that happens before the
rename changes the mtime that the stat after the rename reads, so the object goes back;
one that happens after the rename finds no file, so its put stores the bytes again.
There is no instant at which a claim can succeed and then be unlinked. A claim costs the
hot dedupe path one syscall, and no lock: a dedupe put makes four (the folder's openat2,
the lookup in it, the utime, the close).

Sweeps take turns under an ``flock`` on ``.hashfs/aside``, and a sweep that holds it
first links back every file it finds there: those are what a sweep killed between its
rename and its decision left behind. Until then such an object is missing from its
address (a put of the same bytes stores it again), but its bytes are never lost.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import IO

from ..errors import ConfigurationError, OutsideRoot, StorageError, storage_error
from ..layout import is_extension
from ..sweep import Judge, SweepReport, Tally
from .base import (
    ASIDE_PREFIX,
    QUARANTINE,
    RESERVED_PREFIX,
    Backend,
    ObjectInfo,
    Writer,
    aside_name,
    key_set_aside,
)
from .beneath import Beneath
from .partial import PartialUploads
from .walk import Measure, total

try:
    import fcntl
except ImportError:  # Windows: publication needs flock, so only buckets work there
    LOCKS = False
else:
    LOCKS = True

#: Every temp file's name starts with this; no key can, because keys start with hex.
TEMP_PREFIX = RESERVED_PREFIX + "-tmp-"
# (getattr: this module is imported, though never used, where these flags do not exist)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
#: O_NONBLOCK: a FIFO or device swapped in under an object's name never makes a read wait
#: (the fstat after opening refuses it); on a regular file it changes nothing.
_OPEN_READ = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
_OPEN_FOLDER = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_OPEN_TEMP = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
#: A sweep walks and sets aside through folder descriptors that never follow a symlink.
_OPEN_OWN_FOLDER = _OPEN_FOLDER | getattr(os, "O_NOFOLLOW", 0)
#: A file with no name is given one by linking its /proc/self/fd entry (linkat with
#: AT_SYMLINK_FOLLOW), which needs no privilege, unlike linkat(fd, "", AT_EMPTY_PATH).
_ANONYMOUS = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")
_OPEN_ANONYMOUS = os.O_WRONLY | getattr(os, "O_TMPFILE", 0) | os.O_CLOEXEC
#: How many times a put makes again a shard folder that concurrent deletes keep removing.
_PUBLISH_ROUNDS = 16
#: What open(O_TMPFILE) fails with on a file system that cannot make nameless files.
_NO_ANONYMOUS = {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL}
#: Every this many bytes a put asks the kernel (POSIX_FADV_DONTNEED) to start writing back
#: what was just written and to drop from the page cache what the previous request wrote
#: back. A durable put's final fsync then waits for the tail only, and a large put
#: cycles through a few MiB of page cache instead of taking fresh pages for all of it:
#: on the 2-core VM, fresh pages made some 256 MiB puts take 0.3-0.6 s instead of 0.19 s
#: (perf: half the time in the copy into the page cache), and recycled ones did not.
#: Once fsynced, the whole file is dropped, so that a durable put of more than a step
#: leaves none of its bytes in the page cache, as object stores that write large objects
#: with O_DIRECT do; a smaller one stays cached, as it is likely read back soon.
_WRITEBACK_STEP = 8 << 20
_fadvise = getattr(os, "posix_fadvise", None)
#: The most buffers one writev() takes (Linux's IOV_MAX).
_IOV_MAX = 1024


def _fsync_folder(path: str) -> None:
    try:
        fd = os.open(path, _OPEN_FOLDER)
    except FileNotFoundError:
        return  # a concurrent delete emptied and removed it: there is nothing left to sync
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _not_a_folder(path: str) -> StorageError:
    return StorageError(
        errno.ENOTDIR, f"could not publish under {path!r}: not a real folder under the root", path
    )


def _storage_error(exc: OSError, action: str, path: str) -> StorageError:
    return _storage_error_about(exc, action, repr(path), path)


def _storage_error_about(exc: OSError, action: str, what: str, path: str) -> StorageError:
    reason = exc.strerror or str(exc)
    return storage_error(exc.errno or errno.EIO, f"could not {action} {what}: {reason}", path)


class LocalBackend(Backend):
    """Files under ``root``; see the module docstring for how a put is published."""

    def __init__(self, root: str | os.PathLike[str], fmode: int, dmode: int, fsync: bool):
        if not LOCKS:
            raise ConfigurationError(
                "root",
                f"{os.fspath(root)!r} is a folder, which needs POSIX file locks (fcntl): this"
                " platform lacks them; use an s3:// root here, or run on Linux, macOS or WSL",
            )
        self.location = os.path.realpath(os.fspath(root))
        self.fmode = fmode
        self.dmode = dmode
        self.fsync = fsync
        self._prefix = self.location.rstrip(os.sep) + os.sep
        #: Every read, delete and move reaches its file through real folders of the tree.
        self._beneath = Beneath(self.location)
        #: Temp files have no name, until open(O_TMPFILE) shows that this root cannot.
        self.anonymous = _ANONYMOUS

    def abspath(self, key: str) -> str:
        return self._prefix + (key if os.sep == "/" else key.replace("/", os.sep))

    def key_of(self, path: str) -> str | None:
        if "\0" in path:
            return None
        path = os.path.normpath(path)  # "root/../elsewhere" is not under the root
        if not path.startswith(self._prefix):
            try:
                path = os.path.realpath(path)
            except (OSError, ValueError):
                return None
            if not path.startswith(self._prefix):
                return None
        rel = path[len(self._prefix) :]
        return rel if os.sep == "/" else rel.replace(os.sep, "/")

    def resolved_key(self, path: str) -> str | None:
        if "\0" in path:
            return None
        try:
            return self.key_of(os.path.realpath(path))
        except (OSError, ValueError):
            return None

    def writer(self) -> Writer:
        return _LocalWriter(self)

    def find(self, stem: str) -> str | None:
        """``stem`` itself if it is a file, else the first ``stem.<ext>`` file by name.

        An object stored without extension is looked at directly, through real folders
        (see ``beneath``). Only when that finds nothing is its folder opened and listed
        (the entries carry their file type, so no lstat per candidate).
        """
        if self._beneath.is_file(stem):
            return stem
        folder, _, name = stem.rpartition("/")
        try:
            folder_fd = self._beneath.open_folder(folder)
        except (OSError, ValueError):
            return None
        try:
            return _first_stored(stem, name, folder_fd)
        finally:
            os.close(folder_fd)

    def siblings(self, stem: str) -> list[str]:
        folder, _, name = stem.rpartition("/")
        try:
            folder_fd = self._beneath.open_folder(folder)
        except (OSError, ValueError):
            return []
        try:
            names = _files_named(folder_fd, name)
        except OSError:
            return []
        finally:
            os.close(folder_fd)
        return sorted(stem[: len(stem) - len(name)] + found for found in names)

    def info(self, key: str) -> ObjectInfo | None:
        try:
            st = self._beneath.lstat(key)
        except (OSError, ValueError):
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return ObjectInfo(key, st.st_size, st.st_mtime)

    def claim(self, id: str, stem: str) -> str | None:
        """One ``utime`` of the object found, by its name in its folder: the claim that a
        sweep's rename-and-check cannot miss (see the module docstring). The folder is the
        one the lookup reached through real folders, held open, so the claim costs no
        second walk and never lands outside the root."""
        folder, _, name = stem.rpartition("/")
        try:
            folder_fd = self._beneath.open_folder(folder)
        except (OSError, ValueError):
            return None
        try:
            found = name if _is_file(name, folder_fd) else _first_stored(name, name, folder_fd)
            if found is None:
                return None
            try:
                os.utime(found, dir_fd=folder_fd, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                return None
            except OSError as exc:
                where = self.abspath(stem[: len(stem) - len(name)] + found)
                raise _storage_error(exc, "renew the claim on", where) from None
        finally:
            os.close(folder_fd)
        return stem[: len(stem) - len(name)] + found

    def sweep(
        self,
        judge: Judge,
        cutoff: float,
        *,
        dry_run: bool,
        progress: Callable[[int], None] | None,
    ) -> SweepReport:
        tally = Tally(dry_run)
        try:
            root = os.open(self.location, _OPEN_OWN_FOLDER)
        except FileNotFoundError:
            return tally.report()  # nothing was ever stored
        except OSError as exc:
            raise _storage_error(exc, "open the root", self.location) from None
        try:
            if dry_run:
                _Sweep(self, judge, cutoff, tally, progress, -1).folder(root, "")
                return tally.report()
            aside = self._open_aside(root)
            try:
                fcntl.flock(aside, fcntl.LOCK_EX)  # one sweep at a time per root
                sweep = _Sweep(self, judge, cutoff, tally, progress, aside)
                sweep.restore_leftovers()
                sweep.folder(root, "")
            finally:
                os.close(aside)
        finally:
            os.close(root)
        return tally.report()

    def _open_aside(self, root: int) -> int:
        """The ``.hashfs/aside`` folder, made if missing, opened without following a
        symlink at either level."""
        fd = root
        try:
            for name in ASIDE_PREFIX.strip("/").split("/"):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, self.dmode, dir_fd=fd)
                inner = os.open(name, _OPEN_OWN_FOLDER, dir_fd=fd)
                if fd != root:
                    os.close(fd)
                fd = inner
        except OSError as exc:
            if fd != root:
                os.close(fd)
            where = self._prefix + ASIDE_PREFIX.rstrip("/")
            raise _storage_error(exc, "open the sweep's own folder", where) from None
        return fd

    def open(self, key: str) -> IO[bytes]:
        fd = self._beneath.open(key, _OPEN_READ)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise FileNotFoundError(errno.ENOENT, "no stored object", self.abspath(key))
        return os.fdopen(fd, "rb")

    def forget(self, id: str) -> None:
        """Nothing is kept beside the file: its claim is its mtime."""

    def delete(self, key: str) -> bool:
        """Unlink ``key`` in its folder, held open (it is exactly the folder that was
        reached through real folders), then remove the folders it leaves empty."""
        folder, _, name = key.rpartition("/")
        try:
            folder_fd = self._beneath.open_folder(folder)
        except (OSError, ValueError):
            return False
        try:
            if not stat.S_ISREG(os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_mode):
                return False
            os.unlink(name, dir_fd=folder_fd)
        except FileNotFoundError:
            return False
        finally:
            os.close(folder_fd)
        self._remove_empty_folders(folder)
        return True

    def move(self, source: str, target: str) -> bool:
        """Link the file at ``source`` as ``target`` unless its id is stored, then unlink
        ``source``; False, with ``source`` left where it was, if ``target`` could not be
        published. The file is opened through real folders, given ``fmode``, and the very
        file that was opened is linked (by its descriptor, where ``/proc`` allows)."""
        folder, _, name = source.rpartition("/")
        ignore = name if folder == target.rpartition("/")[0] else ""
        try:
            folder_fd = self._beneath.open_folder(folder)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            try:
                fd = os.open(name, _OPEN_READ, dir_fd=folder_fd)
            except FileNotFoundError:
                return False
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    return False
                os.fchmod(fd, self.fmode)
                if _ANONYMOUS:
                    created = self._link(
                        f"/proc/self/fd/{fd}", target, follow_symlinks=True, ignore=ignore
                    )
                else:
                    created = self._link(
                        name, target, follow_symlinks=False, src_dir_fd=folder_fd, ignore=ignore
                    )
            finally:
                os.close(fd)
            if not created:
                return False
            os.unlink(name, dir_fd=folder_fd)
        finally:
            os.close(folder_fd)
        self._remove_empty_folders(folder)
        return True

    def _link(
        self,
        source: str,
        key: str,
        *,
        follow_symlinks: bool,
        src_dir_fd: int | None = None,
        ignore: str = "",
    ) -> bool:
        """Hard-link ``source`` as ``key``; False if its id is stored under any extension
        (other than the name ``ignore``, a file that is moving within its folder). Durable
        if asked.

        Publishers in one shard folder take turns under an ``flock`` on the folder, so that
        looking for the id under any extension and linking it are one step: one object per
        id, one ``is_duplicate=False``. The link is made relative to the locked folder's
        descriptor, into exactly the folder that was checked. Something that is no object
        under the very name (a folder, a symlink, a FIFO named like the id) is set aside
        into the quarantine: it never makes a put skip storing.
        """
        folder, _, name = key.rpartition("/")
        target = self.abspath(key)
        folder_path = self.abspath(folder) if folder else self.location
        stem = name.partition(".")[0]
        new_folders: list[str] = []
        for _ in range(_PUBLISH_ROUNDS):
            try:
                fd = os.open(folder_path, _OPEN_FOLDER)
            except FileNotFoundError:
                new_folders += self._make_folders(folder)
                continue
            except OSError as exc:
                raise _storage_error(exc, "publish", target) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if not self._beneath.is_real_folder(folder, fd):
                    raise _not_a_folder(folder_path)  # never publish through a symlink
                if [found for found in _stored_names(fd, stem) if found != ignore]:
                    return False
                link = partial(
                    os.link,
                    source,
                    name,
                    src_dir_fd=src_dir_fd,
                    dst_dir_fd=fd,
                    follow_symlinks=follow_symlinks,
                )
                try:
                    link()
                except FileExistsError:
                    if not self._set_aside_blocker(fd, key):
                        return False
                    link()
            except FileExistsError:
                return False
            except StorageError:
                raise
            except FileNotFoundError:
                if not _exists(source, src_dir_fd, follow_symlinks):
                    raise
                # A concurrent delete removed the folder while we held it. Until that
                # removal ends, lookups still find the dying folder; mkdir waits for it
                # instead (both need the parent's lock), and then makes the folder again.
                new_folders += self._make_folders(folder)
                continue
            except OSError as exc:
                raise _storage_error(exc, "publish", target) from None
            finally:
                os.close(fd)
            if self.fsync:
                try:
                    _fsync_folder(folder_path)
                    for made in reversed(new_folders):
                        _fsync_folder(os.path.dirname(made))
                except OSError as exc:
                    raise _storage_error(exc, "fsync the folder of", target) from None
            return True
        raise StorageError(errno.ENOENT, f"could not publish {target!r}: its folder kept vanishing")

    def _set_aside_blocker(self, folder_fd: int, key: str) -> bool:
        """Quarantine what holds ``key``'s name in the locked folder if it is no regular
        file (a regular file there is an object: the caller's id is stored)."""
        name = key.rpartition("/")[2]
        try:
            if stat.S_ISREG(os.lstat(name, dir_fd=folder_fd).st_mode):
                return False
        except FileNotFoundError:
            return True  # gone meanwhile: the caller links again
        self._set_aside(key, QUARANTINE + key, tidy=False)  # tidy: the caller links here next
        return True

    def set_aside(self, key: str, reserved: str) -> str | None:
        return self._set_aside(key, reserved, tidy=True)

    def _set_aside(self, key: str, reserved: str, *, tidy: bool) -> str | None:
        """Both folders are opened from the root one part at a time, never through a
        symlink, and the move is made between their descriptors: it works at any depth
        (no path is ever longer than a name) and cannot be led out of the root."""
        source_folder, _, source_name = key.rpartition("/")
        folder, _, name = reserved.rpartition("/")
        try:
            source_fd = self._open_folder(source_folder, create=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None  # a symlink on the way: what was found is not there
            raise
        try:
            fd = self._open_folder(folder, create=True)
            try:
                candidate = self._move_between(source_fd, source_name, fd, name)
            finally:
                os.close(fd)
        finally:
            os.close(source_fd)
        if candidate is None:
            return None
        if tidy and source_folder:
            self._remove_empty_folders(source_folder)
        return f"{folder}/{candidate}"

    def _move_between(self, source_fd: int, source: str, fd: int, name: str) -> str | None:
        """Move ``source`` to ``name`` or the first free ``name.<n>``; None if it was gone."""
        for n in range(1 << 16):
            candidate = name if n == 0 else f"{name}.{n}"
            try:
                st = os.lstat(source, dir_fd=source_fd)
            except FileNotFoundError:
                return None
            try:
                if stat.S_ISDIR(st.st_mode):
                    # A folder cannot be hard-linked: rename it onto a new empty folder
                    # of our own, which replaces nothing but that empty folder.
                    os.mkdir(candidate, 0o700, dir_fd=fd)
                    os.rename(source, candidate, src_dir_fd=source_fd, dst_dir_fd=fd)
                else:
                    _link_then_unlink(source_fd, source, fd, candidate, fsync=self.fsync)
            except FileExistsError:
                continue
            except FileNotFoundError:
                return None
            return candidate
        raise StorageError(errno.EEXIST, f"no free name for {name!r}", name)

    def _open_folder(self, folder: str, *, create: bool) -> int:
        """Open root-relative ``folder`` one part at a time from the root, never through a
        symlink; with ``create``, make what is missing (the store's own folders)."""
        fd = os.open(self.location, _OPEN_FOLDER)
        if not folder:
            return fd
        try:
            for part in folder.split("/"):
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, self.dmode, dir_fd=fd)
                inner = os.open(part, _OPEN_OWN_FOLDER, dir_fd=fd)
                os.close(fd)
                fd = inner
        except BaseException:
            os.close(fd)
            raise
        return fd

    def reserved_keys(self, folder: str) -> Iterator[str]:
        """Each folder is opened from the root (never through a symlink) and listed whole
        before anything is yielded, so a caller that stops early leaves nothing open."""
        pending = [folder.rstrip("/")]
        while pending:
            prefix = pending.pop()
            try:
                fd = self._open_folder(prefix, create=False)
            except OSError:
                continue
            try:
                with os.scandir(fd) as scan:
                    entries = [
                        (
                            f"{prefix}/{e.name}",
                            e.is_file(follow_symlinks=False),
                            e.is_dir(follow_symlinks=False),
                        )
                        for e in scan
                    ]
            finally:
                os.close(fd)
            pending.extend(key for key, _, is_dir in entries if is_dir)
            yield from (key for key, is_file, _ in entries if is_file)

    def _make_folders(self, folder: str) -> list[str]:
        """Make root-relative ``folder``, found missing, and whatever is missing above it;
        return the paths made.

        Climbs to the deepest folder above that exists and checks that it is a real folder
        of this tree before anything is made in it, so that no folder is ever made through
        a symlink; then makes the missing ones downwards.
        """
        if not folder:
            return []  # the root: a put makes it before its temp file, never here
        missing = [self.abspath(folder)]
        folder = folder.rpartition("/")[0]
        while folder:
            try:
                if not self._beneath.is_real_folder(folder):
                    raise _not_a_folder(self.abspath(folder))
                break
            except FileNotFoundError:
                missing.append(self.abspath(folder))
                folder = folder.rpartition("/")[0]
            except NotADirectoryError:
                raise _not_a_folder(self.abspath(folder)) from None
            except OSError as exc:
                raise _storage_error(exc, "check the folder", self.abspath(folder)) from None
        made = []
        for path in reversed(missing):
            try:
                os.mkdir(path, self.dmode)
            except FileExistsError:
                continue  # a racing put made it; the check before linking covers it
            except FileNotFoundError:
                break  # a concurrent delete removed a parent: the caller's retry remakes it
            except OSError as exc:
                raise _storage_error(exc, "create folder", path) from None
            made.append(path)
        return made

    def all_keys(self) -> Iterator[str]:
        return (key for key, odd in self.walk() if odd is None)

    def walk(self) -> Iterator[tuple[str, str | None]]:
        """Depth first with a list for a stack: a folder's files come together (what
        ``folders()`` relies on), and no depth of nesting can exhaust Python's stack."""
        pending = [""]
        while pending:
            prefix = pending.pop()
            try:
                with os.scandir(self._prefix + prefix if prefix else self.location) as scan:
                    entries = list(scan)
            except (FileNotFoundError, NotADirectoryError):
                continue  # gone since it was listed; the root itself: nothing is stored
            except OSError as exc:
                if not prefix:
                    raise
                yield prefix.rstrip("/"), f"an unreadable folder ({exc.strerror or exc})"
                continue
            folders = []
            for entry in entries:
                if not prefix and entry.name.startswith(RESERVED_PREFIX):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    folders.append(prefix + entry.name + "/")
                elif entry.is_file(follow_symlinks=False):
                    yield prefix + entry.name, None
                else:
                    yield prefix + entry.name, _kind(entry)
            pending.extend(reversed(folders))

    def check_root(self) -> None:
        try:
            with os.scandir(self.location):
                pass
        except OSError as exc:
            raise _storage_error(exc, "list the root", self.location) from None

    def count(self) -> int:
        return self._total(_one)

    def size(self) -> int:
        return self._total(_file_size)

    def _total(self, measure: Measure) -> int:
        """Sum ``measure`` over every stored file, as all_keys sees them."""
        try:
            with os.scandir(self.location) as scan:
                entries = [e for e in scan if not e.name.startswith(RESERVED_PREFIX)]
        except (FileNotFoundError, NotADirectoryError):
            return 0
        folders = [e.path for e in entries if e.is_dir(follow_symlinks=False)]
        files = (e for e in entries if e.is_file(follow_symlinks=False))
        return sum(map(measure, files)) + total(measure, folders)

    def make_folder(self, path: str) -> None:
        key = self.resolved_key(path)
        if key is None and os.path.realpath(path) != self.location:
            raise OutsideRoot(path, self.location)
        os.makedirs(self.location if key is None else self.abspath(key), self.dmode, exist_ok=True)

    def remove_empty(self, path: str) -> None:
        key = self.resolved_key(path)
        if key is not None:
            self._remove_empty_folders(key)

    def _remove_empty_folders(self, folder: str) -> None:
        """rmdir root-relative ``folder``, then each parent up to the root, until one is not
        empty (which rmdir refuses atomically). Each is removed by name from its parent,
        opened through real folders of the tree, so a symlink swapped in on the way is
        never followed (rmdir of a symlink fails)."""
        while folder:
            parent, _, name = folder.rpartition("/")
            try:
                parent_fd = self._beneath.open_folder(parent)
            except (OSError, ValueError):
                return
            try:
                os.rmdir(name, dir_fd=parent_fd)
            except OSError:
                return
            finally:
                os.close(parent_fd)
            folder = parent

    def partial_uploads(self) -> PartialUploads:
        from .local_partial import LocalPartialUploads  # it builds on this module

        return LocalPartialUploads(self)

    def temp_files(self) -> Iterator[str]:
        try:
            names = os.listdir(self.location)
        except FileNotFoundError:
            return
        for name in names:
            if name.startswith(TEMP_PREFIX) and self._with_stale_temp(name, remove=False):
                yield os.path.join(self.location, name)

    def remove_temp(self, name: str) -> bool:
        return self._with_stale_temp(os.path.basename(name), remove=True)

    def _with_stale_temp(self, name: str, *, remove: bool) -> bool:
        """True if ``name`` is a temp file no live writer holds (and, if asked, remove it)."""
        if not name.startswith(TEMP_PREFIX):
            return False
        path = os.path.join(self.location, name)
        try:
            fd = os.open(path, _OPEN_READ)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        try:
            if remove:
                os.unlink(path)
            return True
        except FileNotFoundError:
            return False
        finally:
            os.close(fd)


def _is_file(name: str, folder_fd: int) -> bool:
    try:
        return stat.S_ISREG(os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _first_stored(stem: str, name: str, folder_fd: int) -> str | None:
    """The first ``stem.<ext>`` file by name in the open folder of ``stem``."""
    try:
        names = _stored_names(folder_fd, name)
    except OSError:
        return None
    return stem[: len(stem) - len(name)] + min(names) if names else None


def _exists(path: str, dir_fd: int | None, follow_symlinks: bool) -> bool:
    try:
        os.stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
    except FileNotFoundError:
        return False
    return True


def _one(entry: os.DirEntry[str]) -> int:
    return 1


def _file_size(entry: os.DirEntry[str]) -> int:
    try:
        return entry.stat(follow_symlinks=False).st_size
    except FileNotFoundError:  # deleted since the folder was listed
        return 0


def _stored_names(folder_fd: int, stem: str) -> list[str]:
    """The objects in the open folder named ``stem`` or ``stem.<ext>``: what a lookup
    finds and what keeps a publisher from storing the id again. One listing, whose entries
    carry their file type; a stray ``stem.jpeg~`` or ``stem.exe copy`` is no object, and
    only the few names that start with the stem are checked."""
    dotted = stem + "."
    cut = len(stem)
    with os.scandir(folder_fd) as scan:
        return [
            entry.name
            for entry in scan
            if (
                entry.name == stem
                or (entry.name.startswith(dotted) and is_extension(entry.name[cut:]))
            )
            and entry.is_file(follow_symlinks=False)
        ]


class _Sweep:
    """One sweep's walk: each folder through a descriptor opened without following
    symlinks, each object judged on the lstat its listing gives (``aside`` is -1 in a
    dry run, which only counts)."""

    def __init__(
        self,
        backend: LocalBackend,
        judge: Judge,
        cutoff: float,
        tally: Tally,
        progress: Callable[[int], None] | None,
        aside: int,
    ) -> None:
        self.backend = backend
        self.judge = judge
        self.cutoff = cutoff
        self.tally = tally
        self.progress = progress
        self.aside = aside
        self.token = secrets.token_hex(8)

    def folder(self, fd: int, prefix: str) -> bool:
        """Sweep the folder open as ``fd`` (``prefix`` is its key prefix); True if any
        object under it was removed, so that the caller tries to remove the folder."""
        try:
            with os.scandir(fd) as scan:
                entries = list(scan)
        except (FileNotFoundError, NotADirectoryError):
            return False
        examined = 0
        removed = False
        for entry in entries:
            name = entry.name
            if not prefix and name.startswith(RESERVED_PREFIX):
                continue
            if entry.is_dir(follow_symlinks=False):
                removed |= self.subfolder(fd, name, prefix + name + "/")
                continue
            if not entry.is_file(follow_symlinks=False):
                continue
            judged = self.judge(prefix + name)
            if judged is None:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed since the listing
            examined += 1
            if judged[1]:
                self.tally.keep_live(st.st_size)
            elif st.st_mtime >= self.cutoff:
                self.tally.keep_recent(st.st_size)
            elif self.aside < 0:
                self.tally.remove(st.st_size)
            else:
                removed |= self.remove_unclaimed(fd, name, prefix + name, st)
        if examined and self.progress is not None:
            self.progress(examined)
        return removed

    def subfolder(self, parent: int, name: str, prefix: str) -> bool:
        try:
            fd = os.open(name, _OPEN_OWN_FOLDER, dir_fd=parent)
        except OSError:
            return False  # gone, or a symlink: never followed
        try:
            removed = self.folder(fd, prefix)
        finally:
            os.close(fd)
        if removed:
            with contextlib.suppress(OSError):  # it fails, harmlessly, unless it is empty
                os.rmdir(name, dir_fd=parent)
        return removed

    def remove_unclaimed(self, fd: int, name: str, key: str, seen: os.stat_result) -> bool:
        """Set the object aside, then unlink it only if no claim landed since it was
        judged; True if it was removed."""
        aside = aside_name(key, self.token)
        try:
            os.rename(name, aside, src_dir_fd=fd, dst_dir_fd=self.aside)
        except FileNotFoundError:
            return False  # removed since the listing: not this sweep's to count
        except OSError as exc:
            raise _storage_error(exc, "set aside", self.backend.abspath(key)) from None
        st = os.stat(aside, dir_fd=self.aside, follow_symlinks=False)
        if (st.st_ino, st.st_mtime_ns) != (seen.st_ino, seen.st_mtime_ns):
            self.put_back(aside, key)  # claimed, or stored anew, since it was judged
            self.tally.keep_recent(st.st_size)
            return False
        os.unlink(aside, dir_fd=self.aside)
        self.tally.remove(st.st_size)
        return True

    def put_back(self, aside: str, key: str) -> None:
        """Publish a set-aside file at ``key`` again, unless a put has stored its id since
        (one object per id), then drop the aside name. The inode keeps its mtime."""
        path = self.backend._prefix + ASIDE_PREFIX + aside
        self.backend._link(path, key, follow_symlinks=False)
        os.unlink(aside, dir_fd=self.aside)

    def restore_leftovers(self) -> None:
        """Put back what a killed sweep left aside: this sweep holds the lock, so nothing
        else is in the middle of deciding about it. It is then judged like any object."""
        for aside in os.listdir(self.aside):
            key = key_set_aside(aside)
            if self.judge(key) is not None:
                self.put_back(aside, key)


def _files_named(folder_fd: int, stem: str) -> list[str]:
    """The regular files in the open folder whose name starts with ``stem``."""
    with os.scandir(folder_fd) as scan:
        return [
            entry.name
            for entry in scan
            if entry.name.startswith(stem) and entry.is_file(follow_symlinks=False)
        ]


def _kind(entry: os.DirEntry[str]) -> str:
    """What a folder entry that is neither a regular file nor a folder is, in words."""
    try:
        mode = entry.stat(follow_symlinks=False).st_mode
    except OSError:
        return "gone or unreadable"
    for test, words in (
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return words
    return "not a regular file"


def _link_then_unlink(source_fd: int, source: str, fd: int, name: str, *, fsync: bool) -> None:
    """Give ``source`` (any file but a folder; a symlink itself) the new ``name``, never
    replacing an entry there: at every instant it has one name or both, so a kill loses
    nothing. Where hard links are refused (``protected_hardlinks`` on another user's
    file), a rename after checking that the name is free."""
    try:
        os.link(source, name, src_dir_fd=source_fd, dst_dir_fd=fd, follow_symlinks=False)
    except PermissionError:
        try:
            os.lstat(name, dir_fd=fd)
        except FileNotFoundError:
            os.rename(source, name, src_dir_fd=source_fd, dst_dir_fd=fd)
            return
        raise FileExistsError(errno.EEXIST, "taken", name) from None
    if fsync:
        os.fsync(fd)
    os.unlink(source, dir_fd=source_fd)


class _LocalWriter(Writer):
    def __init__(self, backend: LocalBackend) -> None:
        self._backend = backend
        self._fd = -1
        self._path = ""  # the temp file's name; empty while it has none
        self._written = 0
        self._flushed = 0  # written back from here on, or will be
        self._dropped = 0  # dropped from the page cache up to here, as far as it was clean

    def _error(self, exc: OSError, action: str) -> StorageError:
        if self._path:
            return _storage_error(exc, action, self._path)
        location = self._backend.location
        return _storage_error_about(exc, action, f"a new file in {location!r}", location)

    def _create(self) -> None:
        backend = self._backend
        while True:
            try:
                if backend.anonymous:
                    fd = os.open(backend.location, _OPEN_ANONYMOUS, backend.fmode)
                else:
                    path = os.path.join(backend.location, TEMP_PREFIX + secrets.token_hex(8))
                    fd = os.open(path, _OPEN_TEMP, backend.fmode)
            except FileExistsError:
                continue
            except FileNotFoundError:
                # The first put makes the root; a durable put makes its entry durable too.
                try:
                    os.makedirs(backend.location, backend.dmode, exist_ok=True)
                    if backend.fsync:
                        _fsync_folder(os.path.dirname(backend.location))
                except OSError as exc:
                    raise _storage_error(exc, "create the root", backend.location) from None
                continue
            except OSError as exc:
                if backend.anonymous and exc.errno in _NO_ANONYMOUS:
                    backend.anonymous = False
                    continue
                raise _storage_error(exc, "create a temp file in", backend.location) from None
            if not backend.anonymous:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_nlink == 0:
                    # A sweep removed it between create and lock: it saw no writer. Start over.
                    os.close(fd)
                    continue
                self._path = path
            os.fchmod(fd, backend.fmode)  # exactly fmode, whatever the umask
            self._fd = fd
            return

    def write(self, data: bytes) -> None:
        if self._fd < 0:
            self._create()
        try:
            written = os.write(self._fd, data)
            if written < len(data):
                view = memoryview(data)[written:]
                while view:
                    view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise self._error(exc, "write") from None
        self._wrote(len(data))

    def writelines(self, pieces: Sequence[bytes]) -> None:
        if self._fd < 0:
            self._create()
        for start in range(0, len(pieces), _IOV_MAX):
            group = pieces[start : start + _IOV_MAX]
            size = sum(map(len, group))
            try:
                written = os.writev(self._fd, group)
                if written < size:
                    view = memoryview(b"".join(group))[written:]
                    while view:
                        view = view[os.write(self._fd, view) :]
            except OSError as exc:
                raise self._error(exc, "write") from None
            self._wrote(size)

    def _wrote(self, size: int) -> None:
        self._written += size
        if self._written - self._flushed >= _WRITEBACK_STEP and _fadvise is not None:
            _fadvise(self._fd, self._dropped, 0, os.POSIX_FADV_DONTNEED)
            self._dropped, self._flushed = self._flushed, self._written

    def publish(self, key: str) -> bool:
        if self._fd < 0:
            self._create()
        if self._backend.fsync:
            try:
                os.fsync(self._fd)
            except OSError as exc:  # named by where it was going: a temp file has no name
                raise _storage_error(exc, "fsync", self._backend.abspath(key)) from None
            if self._flushed and _fadvise is not None:
                # All clean now, including what was still being written back before.
                _fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)
        if self._path:
            return self._backend._link(self._path, key, follow_symlinks=False)
        return self._backend._link(f"/proc/self/fd/{self._fd}", key, follow_symlinks=True)

    def discard(self) -> None:
        if self._fd < 0:
            return
        try:
            if self._path:
                os.unlink(self._path)
        except FileNotFoundError:
            pass
        finally:
            os.close(self._fd)
            self._fd = -1
