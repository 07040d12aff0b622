"""A hypothesis state machine: put, age, reference, release, delete, sweep, and repair of
objects misplaced behind the store's back, in any order, against a model of what each
object's state should be (on disk, where time is os.utime).
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from flask_hashfs import HashFS, SweepReport

CONTENTS = [b"", b"a", b"bb", b"a photo", b"x" * 300, b"\x00\xff" * 9]
HOUR = 3600.0
index = st.integers(0, len(CONTENTS) - 1)


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.mkdtemp(prefix="hashfs-model-")
        self.fs = HashFS(os.path.join(self.folder, "store"), fsync=False)
        self.ids = [self.fs.computehash(io.BytesIO(data)) for data in CONTENTS]
        self.size = dict(zip(self.ids, map(len, CONTENTS), strict=True))
        #: id -> whether it is older than the grace (no put since it was aged)
        self.stored: dict[str, bool] = {}
        self.rows: set[str] = set()
        #: id -> age, for objects renamed behind the store's back to a name that is no
        #: object's (``<id>.txt~``): out of sight until a repair puts them back.
        self.misplaced: dict[str, bool] = {}

    def teardown(self) -> None:
        shutil.rmtree(self.folder)

    @rule(n=index, extension=st.sampled_from(["", ".txt", ".jpg"]))
    def put(self, n: int, extension: str) -> None:
        address = self.fs.put(io.BytesIO(CONTENTS[n]), extension)
        assert address.is_duplicate == (address.id in self.stored)
        self.stored[address.id] = False  # stored or claimed just now

    @rule(n=index)
    def time_passes(self, n: int) -> None:
        path = self.fs.realpath(self.ids[n])
        if path is not None:
            os.utime(path, (time.time() - 2 * HOUR,) * 2)
            self.stored[self.ids[n]] = True

    @rule(n=index)
    def commit_row(self, n: int) -> None:
        self.rows.add(self.ids[n])

    @rule(n=index)
    def delete_row(self, n: int) -> None:
        self.rows.discard(self.ids[n])

    @rule(n=index)
    def erase(self, n: int) -> None:
        self.fs.delete(self.ids[n])
        self.stored.pop(self.ids[n], None)
        self.misplaced.pop(self.ids[n], None)  # no byte of the content is left

    @rule(n=index, suffix=st.sampled_from(["~", ".bak~", " copy"]))
    def misplace(self, n: int, suffix: str) -> None:
        """An editor or a careless copy renames the object: a stray name is no object, so
        it is neither found nor swept, and a put stores the content again."""
        id = self.ids[n]
        path = self.fs.realpath(id)
        if path is not None and id not in self.misplaced:
            os.rename(path, path + suffix)  # keeps its age
            self.misplaced[id] = self.stored.pop(id)

    @rule()
    def repair(self) -> None:
        report = self.fs.repair_report()
        assert report.lost == ()
        for id, old in self.misplaced.items():
            # Back at its address with its age, unless a put stored it again meanwhile:
            # then the stray copy is dropped, the stored object being intact.
            self.stored.setdefault(id, old)
        self.misplaced.clear()
        if os.path.isdir(self.fs.root):
            assert self.fs.verify().ok

    @rule(dry_run=st.booleans())
    def sweep(self, dry_run: bool) -> None:
        report = self.fs.sweep(sorted(self.rows), grace=HOUR, dry_run=dry_run)
        live = [id for id in self.stored if id in self.rows]
        gone = [id for id, old in self.stored.items() if old and id not in self.rows]
        recent = [id for id in self.stored if id not in live and id not in gone]
        assert report == SweepReport(
            len(gone),
            sum(self.size[id] for id in gone),
            len(live),
            sum(self.size[id] for id in live),
            len(recent),
            sum(self.size[id] for id in recent),
            dry_run,
        )
        if not dry_run:
            for id in gone:
                del self.stored[id]

    @invariant()
    def the_store_holds_what_the_model_says(self) -> None:
        assert sorted(self.fs.ids()) == sorted(self.stored)


Lifecycle.TestCase.settings = settings(max_examples=60, stateful_step_count=30)
TestLifecycle = Lifecycle.TestCase
