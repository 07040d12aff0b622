"""Confinement: whatever a caller passes, nothing outside the root is read, listed,
opened, created or deleted, and an invalid id or path simply means "not found".

The file system is watched with a real audit hook (``sys.addaudithook``): every open,
listing, mkdir, rmdir, unlink and link the store makes during a call is recorded, and any
that lands outside the root (symlinks resolved) fails the test. A sentinel tree outside
the root, shaped like a store so that a symlink into it would look like a match, must
come out of every call byte for byte intact.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_hashfs import (
    HashAddress,
    HashFS,
    InvalidExtension,
    InvalidId,
    ObjectNotFound,
    OutsideRoot,
    StorageError,
)
from flask_hashfs.backends.local import TEMP_PREFIX
from flask_hashfs.layout import Layout, normalize_extension

# -- watching the file system ------------------------------------------------------------

_WATCHED = {
    "open",
    "os.listdir",
    "os.scandir",
    "os.remove",
    "os.rmdir",
    "os.mkdir",
    "os.link",
    "os.rename",
    "os.chmod",
    "os.truncate",
    "glob.glob",
}
Events = list[tuple[str, tuple[Any, ...]]]


class _Recorder:
    """Where the audit hook writes, while a test watches (hooks cannot be removed)."""

    events: Events | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _Recorder.events is not None and event in _WATCHED:
        _Recorder.events.append((event, _with_folders(event, args)))


def _with_folders(event: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """A link, rmdir or unlink made relative to an open folder, with that folder's path
    put in front (the descriptor is closed by the time the test looks)."""
    if event in {"os.rmdir", "os.remove"}:
        path, folder_fd = args
        if isinstance(folder_fd, int) and folder_fd >= 0:
            path = os.path.join(os.readlink(f"/proc/self/fd/{folder_fd}"), path)
        return (path, folder_fd)
    if event != "os.link":
        return args
    source, target, source_fd, target_fd = args
    if isinstance(source_fd, int) and source_fd >= 0:
        source = os.path.join(os.readlink(f"/proc/self/fd/{source_fd}"), source)
    if isinstance(target_fd, int) and target_fd >= 0:
        target = os.path.join(os.readlink(f"/proc/self/fd/{target_fd}"), target)
    return (source, target, source_fd, target_fd)


sys.addaudithook(_audit)


def _paths_of(event: str, args: tuple[Any, ...]) -> list[object]:
    if event in {"os.link", "os.rename"}:
        return [args[0], args[1]]
    return [args[0]] if args else []


@dataclass
class World:
    fs: HashFS
    root: Path
    outside: Path
    stored: HashAddress

    def snapshot(self) -> dict[str, bytes | None]:
        """Every entry under the outside tree (a folder as None): must never change."""
        paused, _Recorder.events = _Recorder.events, None
        try:
            return self._walk_outside()
        finally:
            _Recorder.events = paused

    def _walk_outside(self) -> dict[str, bytes | None]:
        seen: dict[str, bytes | None] = {}
        for folder, dirs, files in os.walk(self.outside):
            for name in dirs:
                seen[os.path.join(folder, name)] = None
            for name in files:
                seen[os.path.join(folder, name)] = Path(folder, name).read_bytes()
        return seen

    def escaped(self, path: object) -> bool:
        """True if ``path`` (an audited argument) resolves outside the root."""
        if isinstance(path, int):
            return False  # an fd opened earlier, itself audited when opened
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        try:
            real = os.path.realpath(os.fspath(path))  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return False  # a NUL byte: the call itself fails before touching anything
        root = str(self.root)
        return not (real == root or real.startswith(root + os.sep))

    @staticmethod
    def is_ours(path: object) -> bool:
        """Files the interpreter itself opens (lazy imports) are not the store's doing."""
        text = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else ""
        return text.startswith(sys.prefix) or text.startswith(sys.base_prefix) or "/proc/" in text


def _creates(flags: int) -> bool:
    return bool(flags & os.O_CREAT) or flags & os.O_TMPFILE == os.O_TMPFILE


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _key(id: str, ext: str = "") -> str:
    return "/".join([id[0], id[1], id[2], id[3], id[4:]]) + ext


SECRET = b"outside secret: must never be read through the store\n"
SECRET_ID = _sha(SECRET)
SECRET2 = b"another outside secret\n"
SECRET2_ID = _sha(SECRET2)
SECRET3 = b"a third outside secret\n"
SECRET3_ID = _sha(SECRET3)
STORED = b"an honest object inside the root\n"


@pytest.fixture
def world(tmp_path: Path) -> World:
    """A store with one object, and an outside tree reachable only through planted links."""
    root = tmp_path / "store"
    outside = tmp_path / "outside"
    fs = HashFS(root)
    stored = fs.put(io.BytesIO(STORED), extension=".txt")
    outside.mkdir()
    (outside / "secret").write_bytes(SECRET)
    (outside / "empty").mkdir()
    # The outside tree is laid out like a store, so a symlink into it would "match".
    for id, data in ((SECRET_ID, SECRET), (SECRET2_ID, SECRET2), (SECRET3_ID, SECRET3)):
        target = outside / _key(id, ".txt")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    # 1. a symlinked top shard folder: root/<S0> -> outside/<S0>
    (root / SECRET_ID[0]).symlink_to(outside / SECRET_ID[0], target_is_directory=True)
    # 2. a symlink as an object file, in real shard folders
    link = root / _key(SECRET2_ID)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside / _key(SECRET2_ID, ".txt"))
    # 3. a symlinked last shard folder
    last = root / _key(SECRET3_ID)
    last.parent.parent.mkdir(parents=True, exist_ok=True)
    last.parent.symlink_to(outside / _key(SECRET3_ID).rpartition("/")[0])
    # 4. plain symlinks at the top of the root, to a file and to a folder outside
    (root / "evil").symlink_to(outside / "secret")
    (root / "evil-dir").symlink_to(outside, target_is_directory=True)
    # 5. a symlink outside the root, leading to the outside secret
    (tmp_path / "elsewhere").symlink_to(outside / "secret")
    assert SECRET_ID[0] != stored.id[0], "test data: the stored object must not share S0"
    return World(fs, Path(fs.root), outside, stored)


def hostile_paths(w: World) -> list[object]:
    """At least 50 arguments that must never reach anything outside the root."""
    root, out = str(w.root), str(w.outside)
    sid, real = SECRET_ID, w.stored.id
    key_s = _key(sid, ".txt")
    inputs: list[object] = [
        # absolute paths elsewhere
        "/etc/passwd",
        "/",
        out,
        out + "/secret",
        out + "/" + key_s,
        str(w.root.parent / "elsewhere"),
        # ../ in every form
        "../outside/secret",
        "../../../../../../etc/passwd",
        root + "/../outside/secret",
        root + "/../outside/" + key_s,
        root + "/a/../../outside/secret",
        root + "//..//outside//secret",
        root + "/./../outside/" + key_s,
        "a/../../outside/secret",
        "../" + key_s,
        key_s + "/../../../../../../outside/secret",
        "..%2Foutside%2Fsecret",
        "%2e%2e/outside/secret",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "..%5coutside%5csecret",
        "..\\outside\\secret",
        "..\\/outside/secret",
        root + "\\..\\outside\\secret",
        "....//outside/secret",
        "..;/outside/secret",
        "..",
        ".",
        "...",
        "~/../outside/secret",
        "\u2025/outside/secret",  # one-dot leader pair, looks like ..
        "..\u2215outside\u2215secret",  # division slash
        # symlinks leading out
        sid,
        _key(sid, ".txt"),
        root + "/" + key_s,
        SECRET2_ID,
        _key(SECRET2_ID),
        root + "/" + _key(SECRET2_ID),
        SECRET3_ID,
        _key(SECRET3_ID, ".txt"),
        root + "/" + _key(SECRET3_ID, ".txt"),
        root + "/evil",
        "evil",
        root + "/evil-dir/secret",
        root + "/evil-dir/" + key_s,
        # glob characters
        "*",
        "**/*",
        "?" * 64,
        "[0-9a-f]" * 8,
        real[:10] + "*",
        real[:-1] + "?",
        real[:-1] + "[0-9a-f]",
        _key(real)[:-1] + "*",
        "*/*/*/*/*",
        root + "/*",
        # NUL bytes
        "\0",
        real + "\0",
        "\0" + real,
        root + "/\0/../outside/secret",
        _key(real, ".txt") + "\0",
        out + "/secret\0.txt",
        # ids that are not ids
        real.upper(),
        real[:-1],
        real + "0",
        real[:40],
        "g" * 64,
        "",
        " " + real,
        real + " ",
        real + "\n",
        "0x" + real[:62],
        "\u0660" * 64,  # Arabic-Indic digit zero: a digit, but not hex
        "\uff10" * 64,  # fullwidth zero
        "\u00e9" * 64,
        real[:32] + "\u0430" + real[33:],  # Cyrillic a
        "a" * 10_000,
        "a/" * 2_000,
        _key(real).replace("/", "\\"),
        _key(real).upper(),
        _key(real, ".txt") + "/",
        _key(real, ".txt/.."),
        _key(real, ". txt"),
        # not strings at all
        None,
        123,
        b"../outside/secret",
        Path("../outside/secret"),
        Path(out) / "secret",
        Path(root, "evil"),
    ]
    return inputs


HOSTILE_EXTENSIONS: list[object] = [
    "../x",
    "/etc",
    "a/b",
    "a\\b",
    "..",
    ".",
    "...",
    ".jpg/..",
    "jpg/../../../outside",
    "*",
    "?",
    "[a]",
    ".j*g",
    "\0",
    "jpg\0",
    " jpg",
    "jp g",
    "jpg\n",
    "\u00e9",
    "\uff4a\uff50\uff47",
    "x" * 40,
    ".a.b.c.d",
    ".tar..gz",
    "jpg.",
    "~",
    "%2e%2e",
    b"jpg",
    123,
]


@pytest.fixture
def watch(world: World) -> Iterator[Callable[[], Events]]:
    """Record the file system calls of the block; the fixture returns a reader."""
    recorded: Events = []
    _Recorder.events = recorded
    try:
        yield lambda: list(recorded)
    finally:
        _Recorder.events = None


def _escapes(w: World, events: Events) -> list[str]:
    bad = []
    for event, args in events:
        if event == "glob.glob":
            bad.append(f"glob built: {args!r}")
        for path in _paths_of(event, args):
            if not w.is_ours(path) and w.escaped(path):
                bad.append(f"{event} {path!r}")
    return bad


def _not_outside(w: World, value: object) -> None:
    """No returned path or address may point outside the root, or at the secrets."""
    paths: list[str] = []
    if isinstance(value, HashAddress):
        paths.append(value.abspath)
        assert value.id not in (SECRET_ID, SECRET2_ID, SECRET3_ID)
    elif isinstance(value, str):
        paths.append(value)
    for path in paths:
        assert not w.escaped(path), f"returned a path outside the root: {path!r}"


def test_the_list_is_long_enough(world: World) -> None:
    assert len(hostile_paths(world)) >= 50
    assert len(HOSTILE_EXTENSIONS) >= 25


def test_lookups_with_hostile_paths_find_nothing(world: World, watch: Callable[[], Events]) -> None:
    before = world.snapshot()
    fs = world.fs
    for bad in hostile_paths(world):
        where = f"for {bad!r}"
        assert fs.get(bad) is None, where  # type: ignore[arg-type]
        assert fs.exists(bad) is False, where  # type: ignore[arg-type]
        assert (bad in fs) is False, where
        assert fs.info(bad) is None, where  # type: ignore[arg-type]
        assert fs.realpath(bad) is None, where  # type: ignore[arg-type]
        with pytest.raises(ObjectNotFound):
            fs.open(bad)  # type: ignore[arg-type]
        fs.delete(bad)  # type: ignore[arg-type]
        assert world.snapshot() == before, where
    assert _escapes(world, watch()) == []
    # the honest object and the planted links are all still there
    assert fs.get(world.stored.id) == world.stored
    assert fs.count() == 1
    assert os.path.islink(world.root / "evil")


def test_path_helpers_with_hostile_paths_stay_inside(
    world: World, watch: Callable[[], Events]
) -> None:
    before = world.snapshot()
    fs = world.fs
    for bad in hostile_paths(world):
        where = f"for {bad!r}"
        if not isinstance(bad, (str, os.PathLike)):
            continue
        try:
            id = fs.unshard(bad)
        except (OutsideRoot, InvalidId):
            pass
        else:  # a pure string computation: a key-shaped path through a symlink has an id
            assert fs.get(id) is None, where
        try:
            rel = fs.relpath(bad)
        except OutsideRoot:
            pass
        else:
            assert fs.haspath(bad), where
            joined = os.path.normpath(os.path.join(world.root, rel))
            assert joined.startswith(str(world.root) + os.sep), where
        fs.remove_empty(bad)
        with contextlib.suppress(OutsideRoot, ValueError):
            fs.makepath(bad)
        assert world.snapshot() == before, where
    assert _escapes(world, watch()) == []


def test_haspath_is_false_for_paths_leading_out(world: World) -> None:
    root, out = str(world.root), str(world.outside)
    for bad in [
        out,
        out + "/secret",
        root + "/../outside",
        root + "/a/../../outside/secret",
        root + "/evil-dir",
        root + "/evil-dir/secret",
        root + "/evil",
        "/etc/passwd",
        root + "\0",
    ]:
        assert not world.fs.haspath(bad), bad
        with pytest.raises(OutsideRoot):
            world.fs.relpath(bad)


def test_remove_empty_and_makepath_never_act_outside(world: World) -> None:
    root = str(world.root)
    empty = world.outside / "empty"
    for path in [
        root + "/../outside/empty",
        root + "/evil-dir/empty",
        str(empty),
        root + "/x/../../outside/empty",
    ]:
        world.fs.remove_empty(path)
        assert empty.is_dir(), path
    for path in [
        root + "/../outside/new",
        root + "/evil-dir/new",
        str(world.outside / "new"),
        root + "/a/../../outside/new",
    ]:
        with pytest.raises(OutsideRoot):
            world.fs.makepath(path)
        assert not (world.outside / "new").exists(), path
    world.fs.makepath(root + "/made/here")
    assert (world.root / "made" / "here").is_dir()


def test_hostile_ids_are_refused_by_id_helpers(world: World) -> None:
    for bad in hostile_paths(world):
        if world.fs._layout.stem_of(bad) is not None:
            continue  # the symlinked secrets' ids are valid ids, just not stored
        with pytest.raises(InvalidId):
            world.fs.idpath(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidId):
            world.fs.shard(bad)  # type: ignore[arg-type]


def test_hostile_extensions_are_refused_before_anything_is_read(
    world: World, watch: Callable[[], Events]
) -> None:
    before = world.snapshot()
    names_before = sorted(os.listdir(world.root))

    class Untouchable(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            raise AssertionError("the input was read although the extension is invalid")

    for bad in HOSTILE_EXTENSIONS:
        with pytest.raises(InvalidExtension):
            world.fs.put(Untouchable(), extension=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidExtension):
            world.fs.idpath(world.stored.id, bad)  # type: ignore[arg-type]
    assert sorted(os.listdir(world.root)) == names_before
    assert world.snapshot() == before
    assert _escapes(world, watch()) == []


def test_valid_inputs_still_work_through_every_form(world: World) -> None:
    """The guard rails refuse the hostile list without refusing honest callers."""
    fs, stored = world.fs, world.stored
    goods: list[str | Path] = [stored.id, stored.relpath, stored.abspath, Path(stored.abspath)]
    for good in goods:
        assert fs.get(good) == stored
        assert fs.exists(good)
        assert good in fs
        assert fs.realpath(good) == stored.abspath
        with fs.open(good) as handle:
            assert handle.read() == STORED
    assert fs.unshard(stored.abspath) == stored.id
    assert fs.unshard(stored.relpath) == stored.id
    # a path reaching the root through a symlink outside it is still inside
    alias = world.root.parent / "alias"
    alias.symlink_to(world.root, target_is_directory=True)
    assert fs.get(str(alias / stored.relpath)) == stored
    fs.delete(str(alias / stored.relpath))
    assert not fs.exists(stored.id)


def _content_under(prefix: str, avoid: str = "") -> bytes:
    """Content whose id starts with ``prefix`` (and not with ``avoid``)."""
    n = 0
    while True:
        data = b"aimed at a planted symlink %d" % n
        id = _sha(data)
        if id.startswith(prefix) and not (avoid and id.startswith(avoid)):
            return data
        n += 1


def test_put_never_writes_through_a_symlinked_shard_folder(
    world: World, watch: Callable[[], Events]
) -> None:
    before = world.snapshot()
    aimed = [
        _content_under(SECRET_ID[:2]),  # its folders exist, through the top symlink
        _content_under(SECRET_ID[0], avoid=SECRET_ID[:2]),  # they would be made through it
        _content_under(SECRET3_ID[:4]),  # its last folder is the symlink
    ]
    for data in aimed:
        with pytest.raises(StorageError, match="not a real folder"):
            world.fs.put(io.BytesIO(data))
        assert world.snapshot() == before
    # What was created or linked (a mkdir of an existing symlink fails: the snapshot shows it)
    made = [e for e in watch() if e[0] == "os.link" or (e[0] == "open" and _creates(e[1][2]))]
    assert _escapes(world, made) == []
    assert not any(name.startswith(TEMP_PREFIX) for name in os.listdir(world.root))
    fine = world.fs.put(io.BytesIO(b"elsewhere is fine"))
    assert fine.is_duplicate is False
    # the watch sees where a link relative to an open folder lands
    assert [e[1][1] for e in watch() if e[0] == "os.link"][-1] == fine.abspath


def test_open_is_read_only(world: World) -> None:
    for mode in ["w", "wb", "a", "ab", "r+", "rb+", "x", "w+b", "", "rt+", "rbt"]:
        with pytest.raises(ValueError, match="read-only"):
            world.fs.open(world.stored.id, mode)
    with world.fs.open(world.stored.id, "r") as text:
        assert text.read() == STORED.decode()
    assert Path(world.stored.abspath).read_bytes() == STORED


# -- layout properties -----------------------------------------------------------------

ALGORITHMS = ["sha256", "sha1", "md5", "sha512", "blake2b", "sha3_256", "blake3"]


@st.composite
def layouts(draw: st.DrawFn) -> Layout:
    algorithm = draw(st.sampled_from(ALGORITHMS))
    length = len(Layout(0, 1, algorithm).new_hasher().hexdigest())
    width = draw(st.integers(1, 8))
    depth = draw(st.integers(0, (length - 1) // width))
    return Layout(depth, width, algorithm)


def ids_for(layout: Layout) -> st.SearchStrategy[str]:
    return st.text("0123456789abcdef", min_size=layout.id_length, max_size=layout.id_length)


EXTENSIONS = st.one_of(
    st.just(""),
    st.from_regex(r"\.?[A-Za-z0-9_+-]{1,16}(\.[A-Za-z0-9_+-]{1,16}){0,2}", fullmatch=True).filter(
        lambda ext: len(ext if ext.startswith(".") else "." + ext) <= 32
    ),
)


@given(layouts(), st.data(), EXTENSIONS)
def test_shard_key_parse_round_trip(layout: Layout, data: st.DataObject, ext: str) -> None:
    id = data.draw(ids_for(layout))
    parts = layout.shard(id)
    assert len(parts) == layout.depth + 1
    assert all(len(folder) == layout.width for folder in parts[:-1])
    assert "".join(parts) == id
    key = layout.key(id, ext)
    assert key == "/".join(parts) + normalize_extension(ext)
    assert layout.parse(key) == (id, normalize_extension(ext))


KEYISH = st.text(alphabet="0123456789abcdefABCDEF/.\\*?[]\0 -_+xyz\u00e9", max_size=140)


@given(layouts(), KEYISH)
def test_parse_accepts_only_exactly_a_built_key(layout: Layout, text: str) -> None:
    parsed = layout.parse(text)
    if parsed is not None:
        assert layout.key(*parsed) == text


@given(layouts(), st.data(), EXTENSIONS)
def test_parse_rejects_any_edit_of_a_key(layout: Layout, data: st.DataObject, ext: str) -> None:
    key = layout.key(data.draw(ids_for(layout)), ext)
    at = data.draw(st.integers(0, len(key)))
    edit = data.draw(st.sampled_from(["insert", "delete", "replace"]))
    char = data.draw(st.sampled_from("0a/.\\*?[\0 Z\u00e9"))
    if edit == "insert":
        changed = key[:at] + char + key[at:]
    elif edit == "delete":
        changed = key[:at] + key[at + 1 :]
    else:
        changed = key[:at] + char + key[at + 1 :]
    parsed = layout.parse(changed)
    if parsed is not None:
        assert layout.key(*parsed) == changed  # still exactly a key: e.g. another hex digit
        assert ".." not in changed
        assert not set(changed) & {"\0", "\\"}


@given(layouts(), st.data())
def test_unshard_inverts_idpath(layout: Layout, data: st.DataObject) -> None:
    id = data.draw(ids_for(layout))
    fs = HashFS("/nonexistent/hashfs-root", layout.depth, layout.width, layout.algorithm)
    path = fs.idpath(id, ".bin")
    assert path.startswith(fs.root + os.sep)
    assert fs.unshard(path) == id
    assert fs.unshard(fs.relpath(path)) == id


@settings(max_examples=40)
@given(layouts(), st.binary(max_size=300), EXTENSIONS)
def test_any_layout_stores_and_finds_only_inside(layout: Layout, data: bytes, ext: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "store")
        fs = HashFS(root, layout.depth, layout.width, layout.algorithm, fsync=False)
        address = fs.put(io.BytesIO(data), extension=ext)
        assert address.abspath.startswith(fs.root + os.sep)
        assert fs.get(address.id) == fs.get(address.relpath) == fs.get(address.abspath)
        assert fs.unshard(address.abspath) == address.id
        assert fs.put(io.BytesIO(data), extension=".other").is_duplicate
        for bad in ["..", "../store", root + "/..", "*", address.id.upper(), address.id[1:]]:
            assert fs.get(bad) is None
        fs.delete(address.id)
        assert os.listdir(fs.root) == []


@given(st.text(max_size=40))
def test_an_accepted_extension_is_safe(text: str) -> None:
    try:
        ext = normalize_extension(text)
    except InvalidExtension:
        return
    assert ext == "" or ext.startswith(".")
    assert ".." not in ext
    assert not set(ext) & set("/\\\0*?[] \n")
