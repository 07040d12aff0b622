"""Summing over every file under the top shard folders, on every core and disk queue.

A warm walk spends its time in the interpreter and in system calls that release the GIL
only briefly: threads fight over the GIL and make it slower (0.37 s on 1 thread, 0.70 s
on 8, over 100,000 objects). A cold walk waits on the disk, and gets faster with more
reads in flight. So the first top folder is walked alone and timed, and the rest are
split between this process and forked children: one per further core if the walk did
not wait on the disk, more if it did. Each child sends its sum back through a pipe.
Fork is safe only in a process that has a single thread; a multi-threaded one walks on
alone, or on threads if the disk is the bottleneck.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

Measure = Callable[[os.DirEntry[str]], int]

#: A walk that waits on the disk gets this many reads in flight. Processes, where it may
#: fork: over 100,000 objects on a virtual disk, count() took 4.3 s in 1 process, 1.8 s
#: in 4 and 1.0 s in 16 (size(): 4.9, 1.9 and 1.25 s). Threads, where it may not:
#: they still fight over the GIL between reads (count(): 2.4 s on 8 threads, size():
#: 4.0 s).
_DISK_PROCESSES = 16
_DISK_THREADS = 8
#: A child costs 2 to 6 ms to fork and reap (measured on the 2-core machine, in a process
#: using 0 and 300 MB): a walk forks only when each child's share is expected to take
#: longer than this, judged by the time the first top folder took.
_CHILD_COST = 0.01


def total(measure: Measure, folders: Sequence[str]) -> int:
    """The sum of ``measure`` over every file under ``folders``."""
    if not folders:
        return 0
    wall, cpu = time.perf_counter(), time.thread_time()
    result = _folder_total(measure, folders[0])
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    rest = folders[1:]
    waited = wall > 1.3 * cpu
    processes = min(_DISK_PROCESSES if waited else _cores(), len(rest))
    if processes > 1 and wall * len(rest) / processes > _CHILD_COST and _single_threaded():
        return result + _forked_total(measure, rest, processes)
    if waited and len(rest) > 1:
        with ThreadPoolExecutor(min(_DISK_THREADS, len(rest)), "hashfs-walk") as pool:
            return result + sum(pool.map(partial(_folder_total, measure), rest))
    return result + sum(_folder_total(measure, path) for path in rest)


def _folder_total(measure: Measure, path: str) -> int:
    """One recursive function instead of nested generators: a walk of 100,000 objects
    spends its time in scandir, not in the interpreter."""
    result = 0
    try:
        with os.scandir(path) as scan:
            for entry in scan:
                if entry.is_dir(follow_symlinks=False):
                    result += _folder_total(measure, entry.path)
                elif entry.is_file(follow_symlinks=False):
                    result += measure(entry)
    except (FileNotFoundError, NotADirectoryError):
        pass
    return result


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return 1


def _single_threaded() -> bool:
    """Whether this process has one thread, counting threads that Python did not start.
    Only Linux says, and only there is a fork that does not exec left to the walk."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _forked_total(measure: Measure, folders: Sequence[str], processes: int) -> int:
    """Walk the smallest share here (this process has walked one folder already) and the
    others in children.

    A share whose child cannot be forked, dies, or reports nothing readable is walked
    here instead: a child can only make the walk faster, never change its answer.
    """
    shares = [folders[i::processes] for i in range(processes)]
    children: list[tuple[int, int, Sequence[str]]] = []
    result = 0
    try:
        for share in shares[:-1]:
            child = _fork_walker(measure, share)
            if child is None:
                result += sum(_folder_total(measure, path) for path in share)
            else:
                children.append((*child, share))
        result += sum(_folder_total(measure, path) for path in shares[-1])
        while children:
            pid, fd, share = children.pop()
            reported = _collect(pid, fd)
            if reported is None:
                reported = sum(_folder_total(measure, path) for path in share)
            result += reported
    finally:
        for pid, fd, _ in children:  # only when this process is interrupted
            os.close(fd)
            os.kill(pid, signal.SIGKILL)
            _reap(pid)
    return result


def _fork_walker(measure: Measure, share: Sequence[str]) -> tuple[int, int] | None:
    """Fork a child that writes its share's sum to a pipe and exits; its pid and the
    pipe's read end, or None if no child could be forked."""
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        return None
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            os.write(write_end, b"%d" % sum(_folder_total(measure, path) for path in share))
            status = 0
        finally:
            os._exit(status)  # never back into the caller's code, atexit hooks or buffers
    os.close(write_end)
    return pid, read_end


def _collect(pid: int, fd: int) -> int | None:
    """The child's sum, once it has exited cleanly; None if it did not."""
    try:
        report = b""
        while chunk := os.read(fd, 64):
            report += chunk
    finally:
        os.close(fd)
    status = _reap(pid)
    if status not in (0, None) or not report.isdigit():
        return None
    return int(report)


def _reap(pid: int) -> int | None:
    """Wait for the child; its exit code, or None if someone else already reaped it."""
    try:
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    except ChildProcessError:
        return None
