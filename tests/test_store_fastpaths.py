"""The shortcuts taken for speed give the same answers as the long way.

Lookups by id look at the object itself when it has no extension and list its folder
only otherwise; count() and size() walk the shards on several threads. Each test pins an
answer those shortcuts could get wrong, and the last ones count what a lookup costs.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flask_hashfs import HashFS
from flask_hashfs.backends import beneath
from flask_hashfs.backends.local import TEMP_PREFIX

DATA = b"fast paths\n"
ID = hashlib.sha256(DATA).hexdigest()


def stored_at(root: Path, name: str, data: bytes = DATA) -> Path:
    """Place a file by hand at ``name`` in ``ID``'s shard folder."""
    folder = root.joinpath(*ID[:4])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


def test_id_finds_the_object_with_or_without_extension(fs: HashFS) -> None:
    plain = fs.put(io.BytesIO(DATA))
    assert fs.get(ID) == plain
    fs.delete(ID)
    dotted = fs.put(io.BytesIO(DATA), extension=".jpg")
    assert fs.get(ID) == dotted
    assert fs.exists(ID)
    assert fs.realpath(ID) == dotted.abspath


def test_id_prefers_the_first_name_in_sorted_order(root: Path) -> None:
    stored_at(root, ID[4:] + ".png")
    stored_at(root, ID[4:] + ".jpg")
    fs = HashFS(root)
    assert fs.get(ID).relpath.endswith(ID[4:] + ".jpg")  # type: ignore[union-attr]
    stored_at(root, ID[4:])
    assert fs.get(ID).relpath.endswith(ID[4:])  # type: ignore[union-attr]


def test_a_folder_named_like_the_object_is_not_the_object(root: Path) -> None:
    (root.joinpath(*ID[:4]) / ID[4:]).mkdir(parents=True)
    fs = HashFS(root)
    assert not fs.exists(ID)
    stored_at(root, ID[4:] + ".txt")
    assert fs.get(ID).relpath.endswith(".txt")  # type: ignore[union-attr]


def test_another_id_sharing_the_folder_is_not_found(fs: HashFS, root: Path) -> None:
    fs.put(io.BytesIO(DATA), extension=".txt")
    other = ID[:4] + ("0" if ID[4] != "0" else "1") + ID[5:]
    assert not fs.exists(other)
    assert fs.get(other) is None


@pytest.mark.parametrize("name", [ID[4:], ID[4:] + ".jpg"])
def test_id_under_a_symlinked_shard_folder_is_not_found(tmp_path: Path, name: str) -> None:
    outside = tmp_path / "outside"
    (outside / ID[1] / ID[2] / ID[3]).mkdir(parents=True)
    (outside / ID[1] / ID[2] / ID[3] / name).write_bytes(DATA)
    root = tmp_path / "store"
    root.mkdir()
    (root / ID[0]).symlink_to(outside, target_is_directory=True)
    fs = HashFS(root)
    assert not fs.exists(ID)
    assert fs.get(ID) is None
    assert fs.count() == 0
    assert fs.size() == 0


def test_count_and_size_cover_every_shard_and_skip_temp_files(fs: HashFS, root: Path) -> None:
    blobs = [os.urandom(100 + i) for i in range(200)]
    for blob in blobs:
        fs.put(io.BytesIO(blob))
    (root / (TEMP_PREFIX + "leftover")).write_bytes(b"x" * 1000)
    misplaced = root / "0" / "not-an-object"
    misplaced.parent.mkdir(exist_ok=True)
    misplaced.write_bytes(b"abc")
    assert fs.count() == len(fs) == len(list(fs.files())) == len(blobs) + 1
    assert fs.size() == sum(map(len, blobs)) + 3


def test_count_and_size_of_a_store_never_written(fs: HashFS) -> None:
    assert fs.count() == 0
    assert fs.size() == 0


def test_depth_zero_store_counts_files_in_the_root(tmp_path: Path) -> None:
    fs = HashFS(tmp_path / "flat", depth=0)
    fs.put(io.BytesIO(DATA))
    assert fs.count() == 1
    assert fs.size() == len(DATA)
    assert fs.get(ID) is not None


def test_a_file_with_an_invalid_extension_is_not_an_object(root: Path) -> None:
    stored_at(root, ID[4:] + ".a b")
    fs = HashFS(root)
    assert not fs.exists(ID)
    assert fs.get(ID) is None


# -- what each lookup costs, counted ------------------------------------------------------


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], object]], dict[str, int]]:
    """The store's calls into the system during one call of an action: each is one system
    call, except a listing (``scandir``: a few). openat2 is counted where it is made."""
    if not beneath.OPENAT2:
        pytest.fail("this Linux kernel has no openat2: lookups take the portable walk")
    counts: Counter[str] = Counter()

    def counted(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return real(*args, **kwargs)

        return call

    for name in ("open", "stat", "fstat", "lstat", "utime", "close", "scandir", "listdir"):
        monkeypatch.setattr(os, name, counted(name, getattr(os, name)))
    openat2 = beneath._openat2
    assert openat2 is not None
    monkeypatch.setattr(beneath, "_openat2", counted("openat2", openat2))

    def count(action: Callable[[], object]) -> dict[str, int]:
        counts.clear()
        action()
        return dict(counts)

    return count


def test_a_lookup_of_an_object_without_extension_looks_at_it_alone(
    fs: HashFS, calls: Callable[[Callable[[], object]], dict[str, int]]
) -> None:
    fs.put(io.BytesIO(DATA))
    looked_at = {"openat2": 1, "fstat": 1, "close": 1}
    assert calls(lambda: fs.exists(ID)) == looked_at
    assert calls(lambda: fs.get(ID)) == looked_at


def test_a_lookup_lists_the_folder_only_when_the_object_is_not_there_by_its_id(
    fs: HashFS, calls: Callable[[Callable[[], object]], dict[str, int]]
) -> None:
    fs.put(io.BytesIO(DATA), ".jpg")
    listed = {"openat2": 2, "scandir": 1, "close": 1}
    assert calls(lambda: fs.exists(ID)) == listed
    other = ID[:4] + ("0" if ID[4] != "0" else "1") + ID[5:]  # same folder, not stored
    assert calls(lambda: fs.exists(other)) == listed
    elsewhere = ("1" if ID[0] == "0" else "0") + ID[1:]  # its first folder does not exist
    assert calls(lambda: fs.exists(elsewhere)) == {"openat2": 2}


@pytest.mark.parametrize("extension", ["", ".jpg"])
def test_a_dedupe_put_claims_in_the_folder_it_opened(
    fs: HashFS, calls: Callable[[Callable[[], object]], dict[str, int]], extension: str
) -> None:
    """One folder open, the lookup in it, one utime by name there (the claim), one close:
    no second walk of the path."""
    fs.put(io.BytesIO(DATA), extension)
    claimed = {"openat2": 1, "stat": 1, "utime": 1, "close": 1}
    if extension:
        claimed["scandir"] = 1
    assert calls(lambda: fs.put(io.BytesIO(DATA))) == claimed
