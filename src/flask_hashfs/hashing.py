"""Hashing and writing the same chunks at once.

hashlib (and blake3) release the GIL on large buffers and so does ``os.write``; hashing
in a second thread while the caller's thread writes makes a large put cost about one
hash pass instead of a hash pass plus a write.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from .layout import Hasher

#: Chunks waiting for the hash thread; bounds memory at a few chunks per put.
_QUEUE_DEPTH = 4


class BackgroundHasher:
    """Feed chunks with :meth:`update`; :meth:`hexdigest` waits for the thread to finish."""

    def __init__(self, hasher: Hasher) -> None:
        self._hasher = hasher
        self._chunks: queue.Queue[bytes | list[bytes] | None] = queue.Queue(_QUEUE_DEPTH)
        self._thread = threading.Thread(target=self._run, name="hashfs-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        update: Callable[[bytes], object] = self._hasher.update
        get = self._chunks.get
        while (chunk := get()) is not None:
            update(chunk if isinstance(chunk, bytes) else b"".join(chunk))

    def update(self, chunk: bytes | list[bytes]) -> None:
        """Hash ``chunk`` next; pieces in a list are joined on the hash thread, so that
        the caller's thread never copies them."""
        self._chunks.put(chunk)

    def hexdigest(self) -> str:
        self._finish()
        return self._hasher.hexdigest()

    def _finish(self) -> None:
        if self._thread.is_alive():
            self._chunks.put(None)
            self._thread.join()

    def close(self) -> None:
        """Stop the thread, if :meth:`hexdigest` did not."""
        self._finish()

    def __enter__(self) -> BackgroundHasher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._finish()
