"""Turning what ``put`` is handed into one pass of byte chunks.

hashfs 0.7 accepted a path or any readable object, read seekable streams from the start
and put them back where they were, and stored text as UTF-8. We keep that meaning, but
read every byte exactly once and never hold more than a chunk in memory.
"""

from __future__ import annotations

import codecs
import io
import os
from collections.abc import Iterator
from functools import partial
from typing import IO, Any

from .errors import UnreadableInput

#: Large enough that per-chunk overhead vanishes and hashlib releases the GIL, and that
#: a large put hands few chunks to its hash thread: each hand-off may wake a sleeping
#: thread, which on a virtual machine can cost as much as hashing the chunk. (The
#: benchmark's large-put rounds alone, on the 2-core machine: a durable 256 MiB put took
#: 0.40-0.46 s with 1 MiB chunks, 0.20-0.26 s with 2 MiB; one sha256 pass takes 0.19 s.)
#: Small enough that the few chunks in flight stay about 12 MiB.
CHUNK_SIZE = 2 << 20

PutInput = str | os.PathLike[str] | IO[bytes] | IO[str] | Any


class ByteChunks:
    """``with ByteChunks(file) as chunks``: the bytes to store, as one pass of chunks.

    On exit a path's file is closed, and a seekable stream is put back where it was. A
    class rather than a generator-based context manager: a small put pays for every
    microsecond here.
    """

    def __init__(self, file: PutInput) -> None:
        self._file: Any = file
        self._opened: IO[bytes] | None = None
        self._start: Any = None

    def __enter__(self) -> Iterator[bytes]:
        file = self._file
        if isinstance(file, io.BufferedIOBase):
            # The common case first (BytesIO, files opened "rb", uploads): read() gives
            # bytes, by the class's contract.
            self._start = _rewind(file)
            return _read_binary(file)
        # Readable objects before paths, as hashfs did: isinstance() against the
        # os.PathLike ABC costs microseconds for every other type.
        if isinstance(file, str) or (not hasattr(file, "read") and isinstance(file, os.PathLike)):
            path = os.fspath(file)
            try:
                self._opened = open(path, "rb", buffering=0)
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError, ValueError) as exc:
                raise UnreadableInput(
                    f"cannot store {path!r}: not an existing file path ({exc.__class__.__name__})"
                ) from None
            return _read_binary(self._opened)
        stream: Any = file
        if not callable(getattr(stream, "read", None)):
            raise UnreadableInput(
                f"cannot store {type(stream).__name__!r}: pass a file path or a readable object"
            )
        self._start = _rewind(stream)
        return _read_any(stream, rewound=self._start is not None)

    def __exit__(self, *exc_info: object) -> None:
        if self._opened is not None:
            self._opened.close()
        elif self._start is not None:
            self._file.seek(self._start)


def _rewind(stream: Any) -> Any:
    """Seek a seekable stream to its start as hashfs did; return where it was, or None."""
    try:
        seekable = stream.seekable()
    except (AttributeError, ValueError, OSError):
        seekable = False
    if not seekable:
        return None
    start = stream.tell()
    stream.seek(0)
    return start


def _read_any(stream: Any, *, rewound: bool) -> Iterator[bytes]:
    raw = getattr(stream, "buffer", None)
    if raw is not None and rewound and isinstance(stream, io.TextIOBase):
        # Read under the text layer so that line endings are kept byte for byte.
        yield from _reencode(_read_binary(raw), stream.encoding, stream.errors or "strict")
        return
    while True:
        data = stream.read(CHUNK_SIZE)
        if not data:
            return
        yield data.encode("utf-8") if isinstance(data, str) else bytes(data)


def _read_binary(stream: Any) -> Iterator[bytes]:
    return iter(partial(stream.read, CHUNK_SIZE), b"")


def _reencode(chunks: Iterator[bytes], encoding: str, errors: str) -> Iterator[bytes]:
    if codecs.lookup(encoding).name == "utf-8":
        yield from chunks
        return
    decoder = codecs.getincrementaldecoder(encoding)(errors)
    for chunk in chunks:
        text = decoder.decode(chunk)
        if text:
            yield text.encode("utf-8")
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail.encode("utf-8")
