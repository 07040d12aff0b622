"""Maintenance that never destroys: delete, stray siblings, repair, verify, on both backends.

Each test damages a store behind its back (``raw``), the way hashfs 0.7 leftovers, bit
rot, swapped files and hand-dropped files do, and checks that no content is lost.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from flask_hashfs import HashAddress, HashFS, ObjectNotFound, StorageError

from . import test_backend_conformance as conformance
from .s3_server import BUCKET, S3Server
from .test_backend_conformance import LocalRaw, Raw, S3Raw, sha256

# The two-backend fixtures: a store in a folder, and one under a bucket prefix.
backend_name = conformance.backend_name
store_and_raw = conformance.store_and_raw
store = conformance.store
raw = conformance.raw


def key_of(data: bytes, suffix: str = "") -> str:
    id = sha256(data)
    return f"{id[0]}/{id[1]}/{id[2]}/{id[3]}/{id[4:]}{suffix}"


def everything(store: HashFS, raw: Raw) -> dict[str, bytes]:
    """Every file under the root, the store's own folder included (but for a bucket's
    claim records and id markers, which hold no content), read behind its back."""
    if isinstance(raw, LocalRaw):
        found = {}
        for folder, _, names in os.walk(raw.root):
            for name in names:
                path = os.path.join(folder, name)
                if os.path.isfile(path) and not os.path.islink(path):
                    found[os.path.relpath(path, raw.root)] = Path(path).read_bytes()
        return found
    assert isinstance(raw, S3Raw)
    client = raw.server.client
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix=raw.prefix + "/"
    ):
        for item in page.get("Contents", []):
            if item["Key"].startswith(
                (f"{raw.prefix}/.hashfs/claims/", f"{raw.prefix}/.hashfs/ids/")
            ):
                continue
            body = bytes(client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read())
            found[item["Key"][len(raw.prefix) + 1 :]] = body
    return found


def contents(store: HashFS, raw: Raw) -> set[bytes]:
    return set(everything(store, raw).values())


def read(store: HashFS, id: str) -> bytes:
    with store.open(id) as stream:
        return bytes(stream.read())


# -- delete ------------------------------------------------------------------------------


def test_delete_removes_every_copy_of_the_content(store: HashFS, raw: Raw) -> None:
    data, other = b"one photo, three names", b"someone else's bytes"
    for suffix in ("", ".jpg", ".png", ".jpg~"):  # hashfs 0.7 copies, an editor backup
        raw.write(key_of(data, suffix), data)
    raw.write(key_of(data, ".exe copy"), other)  # a stray name holding other content
    neighbour = store.put(io.BytesIO(b"a neighbour"))
    store.delete(sha256(data))
    assert data not in contents(store, raw)
    assert not store.exists(sha256(data))
    assert store.exists(neighbour.id)
    assert other in contents(store, raw)  # not this content: repair's business


def test_delete_by_path_deletes_the_content(store: HashFS, raw: Raw) -> None:
    data = b"stored twice"
    for suffix in (".jpg", ".png"):
        raw.write(key_of(data, suffix), data)
    store.delete(key_of(data, ".png"))
    assert data not in contents(store, raw)
    raw.write(key_of(data, ".gif"), data)
    store.delete(store.root + "/" + key_of(data, ".gif"))
    assert data not in contents(store, raw)


# -- stray siblings ----------------------------------------------------------------------

STRAYS = (".jpeg~", ".exe copy", ".JPG~", ".a.b.c.d", "." + "x" * 40, ".")


@pytest.mark.parametrize("suffix", STRAYS)
def test_a_stray_sibling_never_hides_the_object_or_stops_a_put(
    store: HashFS, raw: Raw, suffix: str
) -> None:
    data = b"the real object"
    id = sha256(data)
    raw.write(key_of(data, suffix), b"an editor's backup, or anything")
    assert not store.exists(id)
    assert store.get(id) is None
    with pytest.raises(ObjectNotFound):
        store.open(id)
    for extension in ("", ".jpg"):
        address = store.put(io.BytesIO(data), extension)
        assert not address.is_duplicate
        assert address.relpath == key_of(data, extension)
        assert store.get(id) == address._replace(is_duplicate=False)
        assert store.exists(id)
        assert store.exists(address.relpath)
        assert read(store, id) == data
        store.delete(id)
        assert not store.exists(id)
    assert b"an editor's backup, or anything" in contents(store, raw)


def test_a_stray_sorting_first_never_hides_the_object(store: HashFS, raw: Raw) -> None:
    data = b"found by name order"
    raw.write(key_of(data, ".exe copy"), b"x")  # sorts before ".jpg"
    raw.write(key_of(data, ".jpg"), data)
    address = store.get(sha256(data))
    assert address is not None
    assert address.relpath == key_of(data, ".jpg")
    assert store.put(io.BytesIO(data)).is_duplicate


@pytest.mark.parametrize("what", ["folder", "symlink", "fifo"])
@pytest.mark.parametrize("extension", ["", ".jpg"])
def test_something_named_like_the_object_never_stops_a_put(
    fs: HashFS, root: Path, what: str, extension: str
) -> None:
    """On disk a name can be taken by what is no object: it goes to the quarantine."""
    data = b"stored in spite of it"
    path = root / key_of(data, extension)
    path.parent.mkdir(parents=True)
    if what == "folder":
        (path / "inside").mkdir(parents=True)
    elif what == "symlink":
        (root / "target").write_bytes(data)
        path.symlink_to(root / "target")
    else:
        os.mkfifo(path)
    assert not fs.exists(sha256(data))
    address = fs.put(io.BytesIO(data), extension)
    assert not address.is_duplicate
    assert address.relpath == key_of(data, extension)
    assert read(fs, address.id) == data
    assert os.path.lexists(root / ".hashfs/quarantine" / key_of(data, extension))


# -- repair ------------------------------------------------------------------------------


def test_repair_moves_a_refused_extension_to_the_extensionless_address(
    store: HashFS, raw: Raw
) -> None:
    data = b"only copy, badly named"
    raw.write(key_of(data, ".jpeg~"), data)
    report = store.repair_report()
    assert [(a.action, a.source, a.target) for a in report.actions] == [
        ("moved", key_of(data, ".jpeg~"), key_of(data))
    ]
    assert read(store, sha256(data)) == data
    assert everything(store, raw) == {key_of(data): data}


def test_repair_drops_a_misplaced_copy_only_if_the_object_is_intact(
    store: HashFS, raw: Raw
) -> None:
    data = b"stored, and copied by hand"
    stored = store.put(io.BytesIO(data), ".txt")
    raw.write(key_of(data, ".txt~"), data)
    report = store.repair_report()
    assert [(a.action, a.source, a.target) for a in report.dropped] == [
        ("dropped", key_of(data, ".txt~"), stored.relpath)
    ]
    assert everything(store, raw) == {stored.relpath: data}


def test_repair_dropping_a_stray_copy_keeps_the_objects_claim(store: HashFS, raw: Raw) -> None:
    """The claim is the id's, not the file's: dropping ``<id>.txt~`` must not take away
    what protects ``<id>.txt`` from a sweep (on a folder, its mtime; on a bucket, the
    claim object)."""
    data = b"claimed, and copied by hand"
    stored = store.put(io.BytesIO(data), ".txt")
    if isinstance(raw, LocalRaw):
        path = store.realpath(stored.id)
        assert path is not None
        os.utime(path, (time.time() - 7200,) * 2)
        grace = 3600.0
    else:  # bucket times are the server's, in whole seconds
        time.sleep(4.5)
        grace = 3.0
    claimed = store.put(io.BytesIO(data), ".txt")  # a dedupe put: a fresh claim
    assert claimed.is_duplicate
    raw.write(key_of(data, ".txt~"), data)
    store.repair_report()
    report = store.sweep([], grace=grace)
    assert (report.removed, report.kept_recent) == (0, 1)
    assert read(store, stored.id) == data


def test_repair_puts_the_good_copy_in_place_of_a_rotten_object(store: HashFS, raw: Raw) -> None:
    good, rot = b"the good bytes", b"bit rot"
    stored = store.put(io.BytesIO(good), ".txt")
    raw.write(stored.relpath, rot)
    raw.write(key_of(good, ".txt~"), good)  # a backup that survived
    assert store.verify().lost == ()
    report = store.repair_report()
    assert report.lost == ()
    assert read(store, stored.id) == good
    assert read(store, sha256(rot)) == rot  # moved to its own address, not deleted
    assert sorted(everything(store, raw).values()) == sorted([good, rot])


def test_repair_untangles_swapped_objects(store: HashFS, raw: Raw) -> None:
    one = store.put(io.BytesIO(b"one"), ".a")
    two = store.put(io.BytesIO(b"two"), ".b")
    raw.write(one.relpath, b"two")
    raw.write(two.relpath, b"one")
    assert store.verify().lost == ()
    report = store.repair_report()
    assert report.lost == ()
    assert read(store, one.id) == b"one"
    assert read(store, two.id) == b"two"
    assert store.verify().ok
    assert len(everything(store, raw)) == 2


def test_repair_without_extensions_loses_nothing(store: HashFS, raw: Raw) -> None:
    data, other = b"kept twice", b"kept once"
    for suffix in (".jpg", ".png"):
        raw.write(key_of(data, suffix), data)
    raw.write(key_of(other, ".txt"), other)
    raw.write(key_of(other, ".txt~"), other)
    store.repair(extensions=False)
    assert everything(store, raw) == {key_of(data): data, key_of(other): other}


def test_files_that_are_no_objects_go_to_the_quarantine(store: HashFS, raw: Raw) -> None:
    stored = store.put(io.BytesIO(b"an object"))
    raw.write("README", b"dropped in by hand")
    raw.write("photos/cat.jpg", b"meow")
    raw.write("a/b/c/d/not-hex.txt", b"unknown name")
    report = store.repair_report()
    assert {(a.source, a.target) for a in report.quarantined} == {
        ("README", ".hashfs/quarantine/README"),
        ("photos/cat.jpg", ".hashfs/quarantine/photos/cat.jpg"),
        ("a/b/c/d/not-hex.txt", ".hashfs/quarantine/a/b/c/d/not-hex.txt"),
    }
    assert store.repair() == []
    assert list(store.files()) == [stored.abspath]
    assert store.count() == 1
    assert store.size() == len(b"an object")
    assert store.verify().ok
    # A second file of the same name never overwrites the first in the quarantine.
    raw.write("README", b"dropped in again")
    assert [a.target for a in store.repair_report().quarantined] == [".hashfs/quarantine/README.1"]
    found = everything(store, raw)
    assert found[".hashfs/quarantine/README"] == b"dropped in by hand"
    assert found[".hashfs/quarantine/README.1"] == b"dropped in again"


def test_repair_quarantines_what_is_not_a_regular_file(fs: HashFS, root: Path) -> None:
    stored = fs.put(io.BytesIO(b"an object"))
    (root / "elsewhere").mkdir()
    os.mkfifo(root / "a-fifo")
    os.symlink("/etc/passwd", root / stored.relpath.replace(stored.id[4:], "f" * 60))
    report = fs.repair_report()
    assert {a.source for a in report.quarantined} == {
        "a-fifo",
        stored.relpath.replace(stored.id[4:], "f" * 60),
    }
    assert (root / ".hashfs/quarantine/a-fifo").is_fifo()
    assert list(fs.files()) == [stored.abspath]
    assert fs.verify().ok


def test_repair_never_follows_a_hashfs_symlink_out_of_the_root(
    fs: HashFS, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    fs.put(io.BytesIO(b"an object"))
    (root / ".hashfs").symlink_to(outside)
    (root / "README").write_bytes(b"no object")
    with pytest.raises(OSError, match=r"Too many levels of symbolic links|Not a directory"):
        fs.repair_report()
    assert list(outside.iterdir()) == []
    assert (root / "README").read_bytes() == b"no object"


def test_repair_report_lists_lost_ids(store: HashFS, raw: Raw) -> None:
    kept = store.put(io.BytesIO(b"kept"))
    rotten = store.put(io.BytesIO(b"will rot"), ".jpg")
    raw.write(rotten.relpath, b"rotted")
    assert store.verify().lost == (rotten.id,)
    report = store.repair_report()
    assert report.lost == (rotten.id,)
    assert store.exists(kept.id)
    assert read(store, sha256(b"rotted")) == b"rotted"


def test_repair_first_places_what_a_killed_repair_set_aside(store: HashFS, raw: Raw) -> None:
    """A corrupt copy moved out of the way waits under .hashfs/repair/, out of every
    listing, until a run places it."""
    data = b"set aside, then killed"
    raw.write(".hashfs/repair/" + key_of(b"the name it had", ".png"), data)
    assert store.count() == 0
    report = store.repair_report()
    assert [(a.action, a.target) for a in report.actions] == [("moved", key_of(data, ".png"))]
    assert everything(store, raw) == {key_of(data, ".png"): data}


REPAIRER = textwrap.dedent(
    """
    import json, sys
    from flask_hashfs import HashFS

    store = HashFS(sys.argv[1], storage_options=json.loads(sys.argv[2]))
    backend = store.backend
    for name in ("move", "set_aside", "delete"):
        def step(*args, _call=getattr(backend, name)):
            print("step", flush=True)
            return _call(*args)
        setattr(backend, name, step)
    store.repair_report()
    print("done", flush=True)
    """
)


def test_repair_killed_at_any_moment_loses_nothing(
    store: HashFS, raw: Raw, backend_name: str, request: pytest.FixtureRequest
) -> None:
    rng = random.Random(9)
    datas = [f"content {n}".encode() * (n + 1) for n in range(24)]
    addresses = [store.put(io.BytesIO(data), ".bin") for data in datas]
    # Swap pairs, copy some to refused names, drop in files that are no objects.
    for a, b in zip(addresses[0:12:2], addresses[1:12:2], strict=True):
        raw.write(a.relpath, datas[addresses.index(b)])
        raw.write(b.relpath, datas[addresses.index(a)])
    for address, data in zip(addresses[12:], datas[12:], strict=True):
        raw.write(address.relpath + "~", data)
    raw.write("README", b"by hand")
    wanted = set(datas) | {b"by hand"}
    options = {}
    if backend_name == "s3":
        options = request.getfixturevalue("s3_server").options
    kills = 0
    for _ in range(6):
        process = subprocess.Popen(
            [sys.executable, "-c", REPAIRER, store.root, json.dumps(options)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        steps = rng.randrange(1, 12)
        line = ""
        for _ in range(steps):
            line = process.stdout.readline()
            if line != "step\n":
                break
        if line == "step\n":
            # Somewhere in the step just announced: a link made, not yet the unlink...
            for _ in range(rng.randrange(0, 3000)):
                pass
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait(120)
        process.stdout.close()
        # Every content is still somewhere in the root, the store's own folders included.
        assert wanted <= contents(store, raw)
    assert kills >= 1
    store.repair_report()
    for address, data in zip(addresses, datas, strict=True):
        assert read(store, address.id) == data
    assert store.verify().ok
    assert b"by hand" in contents(store, raw)


# -- verify ------------------------------------------------------------------------------


def test_verify_reports_what_is_wrong_and_changes_nothing(store: HashFS, raw: Raw) -> None:
    good = store.put(io.BytesIO(b"good"))
    rotten = store.put(io.BytesIO(b"will rot"))
    raw.write(rotten.relpath, b"rotted")
    raw.write(key_of(b"good", ".txt~"), b"good")
    raw.write("README", b"by hand")
    before = everything(store, raw)
    report = store.verify()
    assert not report.ok
    assert report.checked == 4
    assert {(f.key, f.problem) for f in report.findings} == {
        (rotten.relpath, "corrupted"),
        (key_of(b"good", ".txt~"), "misplaced"),
        ("README", "not an object"),
    }
    assert report.lost == (rotten.id,)
    assert everything(store, raw) == before
    assert store.exists(good.id)


def test_verify_refuses_a_root_that_does_not_exist(
    backend_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend_name == "local":
        missing = HashFS(tmp_path / "never-made")
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        missing = HashFS("s3://no-such-bucket-here/x", storage_options=server.options)
    with pytest.raises(StorageError):
        missing.verify()


def test_verify_refuses_a_root_it_cannot_read(fs: HashFS, root: Path) -> None:
    fs.put(io.BytesIO(b"an object"))
    root.chmod(0)
    pid = os.fork()
    if pid == 0:  # a child, so that dropping root's rights (root reads any folder) is undone
        status = 1
        try:
            if os.getuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            fs.verify()
        except StorageError as exc:
            status = 0 if "Permission denied" in str(exc) else 2
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    root.chmod(0o755)
    assert os.waitstatus_to_exitcode(status) == 0


def test_verify_never_hangs_on_special_files(fs: HashFS, root: Path) -> None:
    import socket

    stored = fs.put(io.BytesIO(b"an object"))
    os.mkfifo(root / "a-fifo")
    os.mkfifo(root / stored.relpath.replace(stored.id[4:], "e" * 60))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "a-socket"))
    os.mknod(root / "a-device", 0o600 | 0o020000, os.makedev(1, 3))  # /dev/null's
    report = fs.verify()
    assert {(f.key, f.detail) for f in report.findings} == {
        ("a-fifo", "a FIFO"),
        (stored.relpath.replace(stored.id[4:], "e" * 60), "a FIFO"),
        ("a-socket", "a socket"),
        ("a-device", "a character device"),
    }
    sock.close()


def test_verify_and_repair_walk_deep_and_odd_trees(fs: HashFS, root: Path) -> None:
    stored = fs.put(io.BytesIO(b"an object"))
    deep = str(root)
    for _ in range(1200):  # pathlib and os.makedirs would recurse
        deep += "/d"
        os.mkdir(deep)
    Path(deep, "bottom").write_bytes(b"at the bottom")
    odd = os.fsencode(root) + b"/caf\xe9\n\x1b[31m"
    with open(odd, "wb") as file:
        file.write(b"latin-1 name")
    try:
        _walk_deep_and_odd(fs, root, stored)
    finally:
        # shutil.rmtree, and so pytest's clean-up of tmp_path, would recurse.
        subprocess.run(["rm", "-rf", str(root)], check=True)


def _walk_deep_and_odd(fs: HashFS, root: Path, stored: HashAddress) -> None:
    report = fs.verify()
    assert {f.key for f in report.findings} == {
        "d/" * 1200 + "bottom",
        os.fsdecode(b"caf\xe9\n\x1b[31m"),
    }
    fs.repair_report()
    assert fs.verify().ok
    assert list(fs.files()) == [stored.abspath]
    quarantined = os.path.join(root, ".hashfs/quarantine", "d/" * 1200 + "bottom")
    assert Path(quarantined).read_bytes() == b"at the bottom"


def test_verify_reports_progress(store: HashFS) -> None:
    for n in range(3):
        store.put(io.BytesIO(b"%d" % n))
    seen: list[int] = []
    store.verify(progress=seen.append)
    assert seen == [1, 2, 3]
