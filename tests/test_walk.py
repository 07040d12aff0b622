"""count() and size() on every core and disk queue: forked children walk shares of the
shard folders.

Fork is only safe in a process with a single thread, and pytest's may have more, so each
case runs in a fresh interpreter of its own. The threshold that keeps small stores from
forking is set to zero there, and the process is told it has three cores, so that the
split into three shares happens on any machine.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from flask_hashfs import HashFS

SCRIPT = """
import json, os, signal, sys, threading, time
from flask_hashfs import HashFS
from flask_hashfs.backends import walk

walk._CHILD_COST = 0
walk._cores = lambda: 3
forks = []
os.register_at_fork(after_in_parent=lambda: forks.append(1))
fs = HashFS(sys.argv[1])
scenario = sys.argv[2]
if not scenario.startswith("waiting"):
    # A first folder that took longer than its CPU time reads as a walk that waits on
    # the disk, and on a loaded machine every walk does: three shares either way.
    walk._DISK_PROCESSES = 3
result = {}
if scenario == "children die":
    os.register_at_fork(after_in_child=lambda: os._exit(7))
reaped = []
if scenario == "foreign reaper":

    def reap_all(signum, frame):
        try:
            while (pid := os.waitpid(-1, os.WNOHANG)[0]) > 0:
                reaped.append(pid)
        except ChildProcessError:
            pass

    signal.signal(signal.SIGCHLD, reap_all)
if scenario.endswith("second thread"):
    stop = threading.Event()
    threading.Thread(target=stop.wait).start()
folders = [e.path for e in os.scandir(sys.argv[1]) if e.is_dir()]
if scenario.startswith("waiting"):
    started = set()

    def measure(entry):
        time.sleep(0.001)  # a walk that waits, as on a cold disk
        # The walk's threads that exist, not those that got a folder: on a loaded machine
        # the first threads may take every folder before the last one starts.
        started.update(t.name for t in threading.enumerate() if t.name.startswith("hashfs-walk"))
        return 1

    result["count"] = walk.total(measure, folders)
    result["threads"] = len(started)
elif scenario == "interrupted":
    parent = os.getpid()

    def measure(entry):
        if os.getpid() != parent:
            time.sleep(0.01)  # children are still walking when the parent is interrupted
        elif forks:
            raise KeyboardInterrupt
        return 1

    try:
        walk.total(measure, folders)
    except KeyboardInterrupt:
        result["interrupted"] = True
else:
    result["count"] = fs.count()
    result["size"] = fs.size()
if scenario.endswith("second thread"):
    stop.set()
result["reaped"] = len(reaped)
result["forks"] = len(forks)
try:
    os.waitpid(-1, os.WNOHANG)  # returns at once if a child, running or not, is left
    result["children left"] = 1
except ChildProcessError:
    result["children left"] = 0
print(json.dumps(result))
"""


def walk_in_fresh_process(root: Path, scenario: str) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(root), scenario],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, int] = json.loads(done.stdout)
    return result


@pytest.fixture
def filled(fs: HashFS) -> tuple[Path, int, int]:
    """A store whose objects spread over every top shard folder."""
    blobs = [b"walk %d\n" % i * (1 + i % 5) for i in range(300)]
    for blob in blobs:
        fs.put(io.BytesIO(blob), extension=".txt" if len(blob) % 2 else None)
    root = Path(fs.root)
    assert len(list(root.iterdir())) == 16
    return root, len(blobs), sum(map(len, blobs))


@pytest.mark.parametrize(
    "scenario",
    [
        "single thread",  # children walk shares of the folders
        "children die",  # at birth: the parent walks their shares
        "foreign reaper",  # a SIGCHLD handler reaps every child, as process managers do
    ],
)
def test_forked_walks_agree_whatever_becomes_of_the_children(
    filled: tuple[Path, int, int], scenario: str
) -> None:
    root, count, size = filled
    result = walk_in_fresh_process(root, scenario)
    assert (result["count"], result["size"]) == (count, size)
    assert result["forks"] == 4  # two children for each of count() and size()
    assert result["children left"] == 0
    assert (result["reaped"] > 0) == (scenario == "foreign reaper")


def test_a_multi_threaded_process_never_forks(filled: tuple[Path, int, int]) -> None:
    root, count, size = filled
    result = walk_in_fresh_process(root, "second thread")
    assert (result["count"], result["size"]) == (count, size)
    assert result["forks"] == 0


def test_an_interrupted_walk_leaves_no_child_behind(filled: tuple[Path, int, int]) -> None:
    root, _, _ = filled
    result = walk_in_fresh_process(root, "interrupted")
    assert result["interrupted"]
    assert result["forks"] == 2
    assert result["children left"] == 0


def test_a_walk_that_waits_gets_a_reader_per_remaining_folder(
    filled: tuple[Path, int, int],
) -> None:
    root, count, _ = filled
    result = walk_in_fresh_process(root, "waiting")
    assert result["count"] == count
    # The first of 16 top folders is walked before forking; this process takes one more.
    assert result["forks"] == 14
    assert result["children left"] == 0


def test_a_multi_threaded_walk_that_waits_goes_on_threads(
    filled: tuple[Path, int, int],
) -> None:
    root, count, _ = filled
    result = walk_in_fresh_process(root, "waiting, second thread")
    assert result["count"] == count
    assert result["forks"] == 0
    assert result["threads"] == 8
