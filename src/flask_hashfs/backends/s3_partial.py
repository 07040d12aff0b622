"""Partial uploads in a bucket: an S3 multipart upload per upload, fed as chunks arrive.

Under ``.hashfs/uploads/<token>/``: ``state`` (JSON: the upload layer's record, the
multipart upload's id and the parts it acknowledged, and the tail) and ``tail-<n>``
(the bytes after the last part). S3 parts are at least 5 MiB but the last, and a tus
chunk may be any size, so each append reads the tail back, sends a part for every
:data:`~flask_hashfs.backends.s3.PART_SIZE` bytes it gathers, and leaves the rest as a
new tail: the worker holds at most one part in memory, and nothing on disk.

Writing ``state`` is what acknowledges a chunk, record and parts at once. Parts and
tails sent after the last ``state`` (a chunk a checksum refused, or a worker killed
mid-chunk) are not in it: the next append sends its parts under the same numbers, which
replaces them, and completion names only the acknowledged parts. The tail's name
changes with each ``state``, so the acknowledged tail is never overwritten.

When the upload is whole, the tail goes up as the last part and the multipart upload is
completed into ``<token>/data`` (read back once to hash it only if the upload layer
did not hash the chunks as they came), and published by a server-side copy
(``UploadPartCopy``) into the key the store chose, completed with ``If-None-Match: *``
as any put: the bytes do not pass through the worker again.

Requests for one upload take turns within a process; across processes nothing locks a
bucket, so a tus endpoint on a bucket root needs each upload's requests to reach one
process at a time (tus clients send one request at a time per upload).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any

from ..errors import ChunkRefused, UploadBusy, UploadNotFound
from .base import Publisher
from .partial import UPLOADS, HeldUpload, PartialUploads, is_token
from .s3 import PART_SIZE, S3Backend

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef


class S3PartialUploads(PartialUploads):
    def __init__(self, backend: S3Backend) -> None:
        self._backend = backend
        self._held: set[str] = set()
        self._lock = threading.Lock()

    def _key(self, token: str, name: str) -> str:
        return f"{UPLOADS}{token}/{name}"

    def _read_state(self, token: str) -> dict[str, Any] | None:
        backend = self._backend
        key = self._key(token, "state")
        reply = backend._found(
            "read",
            key,
            lambda: backend.client.get_object(Bucket=backend.bucket, Key=backend._name(key)),
        )
        if reply is None:
            return None
        with reply["Body"] as body:
            state: dict[str, Any] = json.loads(body.read())
        return state

    def _write_state(self, token: str, state: dict[str, Any]) -> None:
        backend = self._backend
        key = self._key(token, "state")
        backend._call(
            "write",
            key,
            lambda: backend.client.put_object(
                Bucket=backend.bucket,
                Key=backend._name(key),
                Body=json.dumps(state).encode(),
                ContentType="application/json",
            ),
        )

    def create(self, token: str, record: dict[str, Any]) -> None:
        backend = self._backend
        data = self._key(token, "data")
        upload = backend._call(
            "start an upload of",
            data,
            lambda: backend.client.create_multipart_upload(
                Bucket=backend.bucket, Key=backend._name(data)
            ),
        )["UploadId"]
        state: dict[str, Any] = {"record": record, "upload": upload, "parts": [], "tail": None}
        self._write_state(token, state)

    def load(self, token: str) -> dict[str, Any] | None:
        if not is_token(token):
            return None
        state = self._read_state(token)
        return None if state is None else dict(state["record"])

    def save(self, token: str, record: dict[str, Any]) -> None:
        state = self._read_state(token)
        if state is None:
            raise UploadNotFound(token)
        state["record"] = record
        self._write_state(token, state)

    @contextlib.contextmanager
    def hold(self, token: str) -> Iterator[HeldUpload]:
        if not is_token(token):
            raise UploadNotFound(token)
        with self._lock:
            if token in self._held:
                raise UploadBusy(token)
            self._held.add(token)
        try:
            state = self._read_state(token)
            if state is None:
                raise UploadNotFound(token)
            yield _HeldMultipart(self, token, state)
        finally:
            with self._lock:
                self._held.discard(token)

    def remove(self, token: str) -> bool:
        try:
            with self.hold(token) as held:
                held.remove()
        except UploadBusy:
            return False
        except UploadNotFound:
            self._delete_all(token, None)
        return True

    def _delete_all(self, token: str, upload: str | None) -> None:
        """The multipart upload, the data, the tails, and the state last: an upload whose
        removal was cut short is still listed, and removed again."""
        backend = self._backend
        if upload is not None:
            backend._abort(backend._name(self._key(token, "data")), upload)
        keys = sorted(
            backend.reserved_keys(UPLOADS + token), key=lambda key: key.endswith("/state")
        )
        for key in keys:
            backend._delete_key(key)

    def tokens(self) -> Iterator[str]:
        found = {
            key[len(UPLOADS) :].partition("/")[0] for key in self._backend.reserved_keys(UPLOADS)
        }
        return iter(sorted(token for token in found if is_token(token)))


class _HeldMultipart(HeldUpload):
    def __init__(self, uploads: S3PartialUploads, token: str, state: dict[str, Any]) -> None:
        self._uploads = uploads
        self._backend = uploads._backend
        self._token = token
        self._state = state

    def _read(self, key: str) -> bytes:
        backend = self._backend
        reply = backend._call(
            "read",
            key,
            lambda: backend.client.get_object(Bucket=backend.bucket, Key=backend._name(key)),
        )
        with reply["Body"] as body:
            return bytes(body.read())

    def _send_part(self, number: int, data: bytes | bytearray) -> list[Any]:
        backend = self._backend
        key = self._uploads._key(self._token, "data")
        reply = backend._call(
            "upload a part of",
            key,
            lambda: backend.client.upload_part(
                Bucket=backend.bucket,
                Key=backend._name(key),
                UploadId=self._state["upload"],
                PartNumber=number,
                Body=bytes(data),
            ),
        )
        return [number, reply["ETag"], len(data)]

    def append(
        self,
        start: int,
        chunks: Iterable[bytes],
        accept: Callable[[], bool] | None,
        commit: Callable[[int], dict[str, Any]],
    ) -> int:
        state = self._state
        parts = list(state["parts"])
        # ``start`` is the size the state acknowledged: its parts and its tail.
        buffer = bytearray(self._read(state["tail"]) if state["tail"] else b"")
        for chunk in chunks:
            buffer += chunk
            while len(buffer) >= PART_SIZE:
                parts.append(self._send_part(len(parts) + 1, buffer[:PART_SIZE]))
                del buffer[:PART_SIZE]
        if accept is not None and not accept():
            raise ChunkRefused("the chunk does not match its checksum")
        size: int = sum(part[2] for part in parts) + len(buffer)
        tail = None
        if buffer:
            tail = self._uploads._key(self._token, f"tail-{len(parts)}-{size}")
            backend = self._backend
            backend._call(
                "write",
                tail,
                lambda: backend.client.put_object(
                    Bucket=backend.bucket, Key=backend._name(tail), Body=bytes(buffer)
                ),
            )
        old_tail = state["tail"]
        state.update(record=commit(size), parts=parts, tail=tail)
        self._uploads._write_state(self._token, state)
        if old_tail and old_tail != tail:
            self._backend._delete_key(old_tail)
        return size

    def _complete(self) -> None:
        """The tail as the last part, and the multipart upload completed into ``data``."""
        state = self._state
        if state.get("complete"):
            return
        backend = self._backend
        data = self._uploads._key(self._token, "data")
        found = backend.info(data)
        if found is not None and found.size == state["record"]["length"]:
            # Completed by a request that died before it could write so: the multipart
            # upload is gone, and completing it again would fail on every retry.
            state["complete"] = True
            self._uploads._write_state(self._token, state)
            return
        parts = list(state["parts"])
        if state["tail"]:
            parts.append(self._send_part(len(parts) + 1, self._read(state["tail"])))
        if parts:
            completed: list[CompletedPartTypeDef] = [
                {"PartNumber": number, "ETag": etag} for number, etag, _ in parts
            ]
            backend._call(
                "complete the upload of",
                data,
                lambda: backend.client.complete_multipart_upload(
                    Bucket=backend.bucket,
                    Key=backend._name(data),
                    UploadId=state["upload"],
                    MultipartUpload={"Parts": completed},
                ),
            )
        else:  # an empty upload: S3 completes no upload without parts
            backend._abort(backend._name(data), state["upload"])
            backend._call(
                "write",
                data,
                lambda: backend.client.put_object(
                    Bucket=backend.bucket, Key=backend._name(data), Body=b""
                ),
            )
        state["complete"] = True
        self._uploads._write_state(self._token, state)

    def reader(self) -> IO[bytes]:
        self._complete()
        return self._backend.open(self._uploads._key(self._token, "data"))

    def writer(self) -> Publisher:
        self._complete()
        return _CopyWriter(self._backend, self._uploads._key(self._token, "data"))

    def drop_bytes(self) -> None:
        state = self._state
        for key in (self._uploads._key(self._token, "data"), state["tail"]):
            if key:
                self._backend._delete_key(key)
        if not state.get("complete"):
            self._backend._abort(
                self._backend._name(self._uploads._key(self._token, "data")), state["upload"]
            )

    def remove(self) -> None:
        self._uploads._delete_all(self._token, self._state["upload"])


class _CopyWriter(Publisher):
    """The completed ``data`` object as a writer's private copy: published by a copy
    inside the bucket, completed with ``If-None-Match: *`` like any put."""

    def __init__(self, backend: S3Backend, source: str) -> None:
        self._backend = backend
        self._source = source

    def publish(self, key: str) -> bool:
        info = self._backend.info(self._source)
        if info is None:
            raise UploadNotFound(self._source)
        return self._backend._publish_copy(self, self._source, info.size, key)

    def discard(self) -> None:
        """The bytes stay the upload's until it is dropped or removed."""
