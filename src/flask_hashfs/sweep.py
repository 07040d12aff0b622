"""What a sweep reports, and the set of live ids it keeps, in bounded memory.

A sweep is mark-and-sweep, as in git: the app names the ids its rows reference (the
*live* ids), and every object that is not live and was neither stored nor claimed within
the grace period is removed. How each backend makes "not claimed" and "removed" one
atomic step against a concurrent put is in ``backends.local`` and ``backends.s3``; this
module holds what they share.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

from .layout import Layout

#: An id's first this many hex characters pick its bucket (65,536 of them); only the rest
#: of its digest is stored.
_BUCKET_HEX = 4
#: Buckets of up to this many ids are searched in C; larger ones (a million ids put some
#: 15 in each) are bisected.
_SCANNED = 64

#: How a backend's sweep asks the store about a key: None if the key is not an object
#: (only keys the layout parses are objects), else its id and whether it is live.
Judge = Callable[[str], tuple[str, bool] | None]


@dataclass(frozen=True)
class SweepReport:
    """How many objects (and bytes) a sweep removed and kept, and why it kept them.

    ``kept_recent`` counts objects that are not live but were stored or claimed within
    the grace period, including those a concurrent put claimed while the sweep was
    removing them. A dry run removes nothing: ``removed`` is what a real sweep of the
    same store would have removed.
    """

    removed: int
    removed_bytes: int
    kept_live: int
    kept_live_bytes: int
    kept_recent: int
    kept_recent_bytes: int
    dry_run: bool


class Tally:
    """The counts of a running sweep."""

    def __init__(self, dry_run: bool) -> None:
        self.dry_run = dry_run
        self.removed = self.removed_bytes = 0
        self.kept_live = self.kept_live_bytes = 0
        self.kept_recent = self.kept_recent_bytes = 0

    def remove(self, size: int) -> None:
        self.removed += 1
        self.removed_bytes += size

    def keep_live(self, size: int) -> None:
        self.kept_live += 1
        self.kept_live_bytes += size

    def keep_recent(self, size: int) -> None:
        self.kept_recent += 1
        self.kept_recent_bytes += size

    def report(self) -> SweepReport:
        return SweepReport(
            self.removed,
            self.removed_bytes,
            self.kept_live,
            self.kept_live_bytes,
            self.kept_recent,
            self.kept_recent_bytes,
            self.dry_run,
        )


def grace_seconds(grace: float | timedelta) -> float:
    """``grace`` in seconds: a number, or a :class:`~datetime.timedelta`.

    :raises ValueError: negative, NaN or infinite.
    :raises TypeError: neither a number nor a timedelta (a bool is neither).
    """
    if isinstance(grace, timedelta):
        seconds = grace.total_seconds()
    elif isinstance(grace, (int, float)) and not isinstance(grace, bool):
        seconds = float(grace)
    else:
        raise TypeError(f"grace is a number of seconds or a timedelta, not {grace!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"grace must be a finite number of seconds >= 0, not {grace!r}")
    return seconds


class LiveIds:
    """The live ids as sorted binary digests: about one digest's size per id given.

    A set of a million sha256 hex strings takes some 140 MiB; here each id costs its
    binary digest (32 bytes for sha256, 64 for sha512): 31 MiB per million ids once
    sorted, 35 MiB at the peak while loading, and about 46 MiB of resident memory with
    the allocator's overhead. Ids go into 65,536 buckets by their first two
    bytes, and each bucket holds the rest of each digest back to back, sorted, so that a
    lookup searches a few records, or bisects many, whatever the ids are. A duplicate
    costs its bytes while loading, and nothing once sorted.

    :param ids: any iterable of ids, read once. ``None`` items are skipped (a nullable
        column); any other item that is not an id of ``layout`` raises.
    :param layout: the store's layout, which says what an id is.
    :raises InvalidId: an item is neither None nor an id.
    """

    def __init__(self, ids: Iterable[str | None], layout: Layout) -> None:
        buckets: list[bytearray | None] = [None] * (1 << (4 * _BUCKET_HEX))
        valid, check = layout.id_matcher(), layout.check_id
        fromhex = bytes.fromhex
        for id in ids:
            if id is None:
                continue
            if type(id) is not str or valid(id) is None:
                check(id)  # raises, saying why
            index = int(id[:_BUCKET_HEX], 16)
            bucket = buckets[index]
            if bucket is None:
                buckets[index] = bytearray(fromhex(id[_BUCKET_HEX:]))
            else:
                bucket += fromhex(id[_BUCKET_HEX:])
        self._width = width = (layout.id_length - _BUCKET_HEX) // 2
        for bucket in buckets:
            if bucket is not None and len(bucket) > width:
                # In place: a second copy of each bucket would leave the allocator's
                # pools half empty, and the process twice as large as the ids.
                bucket[:] = b"".join(
                    sorted({bytes(bucket[i : i + width]) for i in range(0, len(bucket), width)})
                )
        self._buckets = buckets

    def __contains__(self, id: str) -> bool:
        """Whether ``id`` (a valid id of the same layout) is live."""
        bucket = self._buckets[int(id[:_BUCKET_HEX], 16)]
        if bucket is None:
            return False
        rest = bytearray.fromhex(id[_BUCKET_HEX:])
        width = self._width
        if len(bucket) <= _SCANNED * width:  # a search in C beats a bisection in Python
            found = bucket.find(rest)
            while found > 0 and found % width:  # a match across two records
                found = bucket.find(rest, found + 1)
            return found >= 0
        count = len(bucket) // width
        i = bisect_left(range(count), rest, key=lambda n: bucket[n * width : n * width + width])
        return i < count and bucket[i * width : i * width + width] == rest
