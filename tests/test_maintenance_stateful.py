"""A Hypothesis state machine: puts and deletes through the store, damage behind its back
(hashfs 0.7 copies, editor backups, swapped files, files that are no objects), and repair.
Whatever happens, no content that the model holds is ever missing from the root, and after
a repair every one is back at its address."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, precondition, rule

from flask_hashfs import HashFS

EXTENSIONS = st.sampled_from(["", ".jpg", ".png", ".tar.gz"])


class Maintenance(RuleBasedStateMachine):
    ids = Bundle("ids")

    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.mkdtemp(prefix="hashfs-stateful-")
        self.root = Path(self.folder, "store")
        self.fs = HashFS(self.root, fsync=False)
        self.model: dict[str, bytes] = {}
        #: Files hold other ids' bytes: a delete now would take those bytes with it (a
        #: delete goes by name), so deletes wait for a repair, as an operator's would.
        self.swapped = False

    def teardown(self) -> None:
        shutil.rmtree(self.folder)

    def _files(self) -> dict[str, bytes]:
        found = {}
        for folder, _, names in os.walk(self.root):
            for name in names:
                path = os.path.join(folder, name)
                found[os.path.relpath(path, self.root)] = Path(path).read_bytes()
        return found

    def _key(self, id: str) -> str | None:
        address = self.fs.get(id)
        return None if address is None else address.relpath

    @rule(target=ids, data=st.binary(max_size=40), extension=EXTENSIONS)
    def put(self, data: bytes, extension: str) -> str:
        address = self.fs.put(io.BytesIO(data), extension)
        self.model[address.id] = data
        return address.id

    @precondition(lambda self: not self.swapped)
    @rule(id=ids)
    def delete(self, id: str) -> None:
        self.fs.delete(id)
        self.model.pop(id, None)
        assert id not in self.fs
        assert all(hashlib.sha256(data).hexdigest() != id for data in self._files().values())

    @rule(id=ids, suffix=st.sampled_from(["~", " copy", ".bak~", ".png", ".gif", ".x.y.z.w"]))
    def copy_beside(self, id: str, suffix: str) -> None:
        """An editor backup, a hand copy, or hashfs 0.7's copy under another extension."""
        key = self._key(id)
        if key is not None:
            stem = self.fs.shard(id)
            target = self.root.joinpath(*stem[:-1], stem[-1] + suffix)
            if not target.exists():
                target.write_bytes((self.root / key).read_bytes())

    @rule(one=ids, other=ids)
    def swap(self, one: str, other: str) -> None:
        first, second = self._key(one), self._key(other)
        if first is None or second is None or one == other:
            return
        a, b = self.root / first, self.root / second
        data_a, data_b = a.read_bytes(), b.read_bytes()
        a.write_bytes(data_b)
        b.write_bytes(data_a)
        self.swapped = True

    @rule(name=st.sampled_from(["README", "photos/cat.jpg", "0/1/2/3/notes.txt"]))
    def drop_in(self, name: str) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"by hand: " + name.encode())

    @rule(extensions=st.booleans())
    def repair(self, extensions: bool) -> None:
        report = self.fs.repair_report(extensions)
        assert report.lost == ()
        for id, data in self.model.items():
            with self.fs.open(id) as stream:
                assert stream.read() == data
        assert not self.root.exists() or self.fs.verify().ok
        # hashfs 0.7's copies under several extensions stay (a row may hold either
        # relpath): every file is an object of a model id, and every id has one.
        assert {self.fs.unshard(path) for path in self.fs.files()} == set(self.model)
        self.swapped = False

    @invariant()
    def no_content_is_missing(self) -> None:
        present = set(self._files().values()) if self.root.exists() else set()
        assert set(self.model.values()) <= present


TestMaintenance = Maintenance.TestCase
TestMaintenance.settings = settings(max_examples=40, stateful_step_count=20)
