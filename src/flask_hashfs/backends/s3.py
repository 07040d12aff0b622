"""Objects in an S3-compatible bucket, under the same keys as on disk.

The object key is ``prefix/`` + the store's key, so a store copied between a folder and a
bucket keeps every address. A put spools its bytes (in memory up to :data:`PART_SIZE`,
then in an anonymous temp file in the system temp folder, ``TMPDIR``) while the store
hashes them; only then is the key known. Up to :data:`MULTIPART_THRESHOLD` the spool
is sent as one request, beyond it as a multipart upload.
Publication is a conditional write, ``If-None-Match: *``: one ``PutObject`` for a small
object, or a multipart upload whose ``CompleteMultipartUpload`` carries the condition. An
existing object makes it fail with 412, which is a duplicate, never an overwrite; a failed
or refused multipart upload is aborted, so nothing partial or hidden stays behind.

One object per id. ``If-None-Match`` guards one key, and the same content put with two
extensions has two keys. So before it uploads, a put creates the id's marker,
``.hashfs/ids/<id>``, with ``If-None-Match: *``, naming the key it chose. A put that
finds the marker there uploads its bytes (the same bytes: the same id) under the key the
marker names instead of its own. Every racing put thus uploads, create-if-absent, to
the one key: exactly one creates the object and reports ``is_duplicate=False`` (under
the marker's key, which may carry another put's extension), and the others report a
duplicate. The object is there when any of them returns, even if the put that chose the
key died before its upload, or a sweep removed the object since. A new put is thus one
request more (the marker); ``delete`` removes the marker that names the deleted key.

boto3 is the client because it is the one of boto3, obstore and s3fs that offers all
of this: obstore turns a conditional put into one in-memory request and cannot list or
abort multipart uploads; s3fs is the same botocore under an asyncio layer, and slower.
Transient failures (throttling, 5xx, dropped connections) are retried by botocore's
``standard`` retry mode: exponential backoff with jitter, a bounded number of attempts.

Claims and sweeps. A bucket has no lock, no rename, and not every server has
conditional deletes, so a claim is an object of its own: every put, once it knows its
id, first writes ``.hashfs/claims/<id>`` (16 random bytes, so that each claim has an
ETag of its own) and only then looks the id up, which confirms that the object is there;
if it is not, the put uploads it. A dedupe put is thus two requests (the claim and the
lookup), one more than before; a new put is four (claim, lookup, marker, upload).

A sweep reads a candidate's claim (HEAD), copies the object to ``.hashfs/aside/``,
deletes it, and reads the claim again. If a new claim is there, a put claimed the
object: it is uploaded back (create-if-absent, so still one object per id). Otherwise
the aside copy is deleted, and so is the claim. A claim that is gone is not a new one:
only a delete of the content removes a claim, and that delete meant the object to go.
Why no claim is lost (S3 is strongly consistent, read-after-write and for lists): a
claim written before the second read is seen by it, and the object goes back; a claim
written after it is followed by the put's own lookup, which comes after the delete,
finds nothing, and uploads the bytes again, fresh. The same holds for a new put racing
an erasure: it wrote its claim before it uploaded. Deleting the claim of a removed
object is safe for the same reason: a put whose claim that delete removes has found the
object gone and uploaded it anew, and its upload time protects it. A sweep killed
half-way leaves at worst a copy under ``.hashfs/aside/``, which the next sweep uploads
back before it starts.
"""

from __future__ import annotations

import base64
import errno
import io
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import boto3
from botocore.auth import SIGV4_TIMESTAMP, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from urllib3.exceptions import HTTPError as TransportError

from ..errors import (
    BucketNotFound,
    ConfigurationError,
    StorageAccessDenied,
    StorageError,
    StorageUnavailable,
    storage_error,
)
from ..headers import CACHE_CONTROL, DEFAULT_INLINE_TYPES, object_headers
from ..layout import is_extension
from ..sweep import Judge, SweepReport, Tally
from .base import (
    ASIDE_PREFIX,
    INCOMING,
    INCOMING_MAX_AGE,
    RESERVED_PREFIX,
    Backend,
    Incoming,
    ObjectInfo,
    PresignedPut,
    Publisher,
    Writer,
    aside_name,
    key_set_aside,
)
from .partial import UPLOADS, PartialUploads

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

SCHEME = "s3://"
#: Objects up to this size are spooled in memory, larger ones in a temp file; a
#: multipart upload sends parts of this size (S3's minimum part is 5 MiB).
PART_SIZE = 8 << 20
#: Objects up to this size go in one ``PutObject`` (streamed from the spool), larger
#: ones as a multipart upload. One request was faster up to here on the test server
#: (SeaweedFS: 77 MiB/s for 64 MiB against 55 MiB/s in 8 MiB parts, 4 at a time); beyond
#: it, parts bound what a failure costs and let a fast link carry several streams.
MULTIPART_THRESHOLD = 64 << 20
#: The most one ``PutObject`` (and one part of a multipart upload) may carry: 5 GiB on
#: AWS, and so the most a direct upload, which is one presigned ``PutObject``, may be.
MAX_PUT_SIZE = 5 << 30
#: The largest range a copy inside the bucket sends as one part (S3 takes up to 5 GiB);
#: smaller ones, down to :data:`PART_SIZE`, let :data:`UPLOAD_THREADS` copy at once.
COPY_PART_SIZE = 1 << 30
#: Parts in flight at once for one put: enough to fill a link, at most this many parts
#: of memory.
UPLOAD_THREADS = 4
#: A multipart upload older than this is taken for the leftover of a writer that died:
#: a live put completes its upload right after spooling, long before.
STALE_UPLOAD_AGE = 3600.0

#: ``storage_options`` keys: boto3's own names for credentials, region and endpoint,
#: and how to reach the bucket.
STORAGE_OPTIONS = frozenset(
    {
        "endpoint_url",
        "region_name",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "profile_name",
        "addressing_style",
        "max_attempts",
    }
)

_DENIED = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "AllAccessDisabled",
    }
)
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_EXISTS = frozenset({"PreconditionFailed", "412"})
#: AWS answers 409 when two conditional writes of one key race; the loser retries.
_CONFLICT = "ConditionalRequestConflict"
_CONFLICT_RETRIES = 5
_T = TypeVar("_T")
#: The key of an id's marker (see the module docstring) is this and the id.
IDS_PREFIX = RESERVED_PREFIX + "/ids/"
#: SigV4 URLs live at most 7 days; a URL is valid for two windows (see signed_url).
MAX_SIGNING_WINDOW = 7 * 24 * 3600 // 2
#: The key of an id's claim is this and the id.
CLAIMS_PREFIX = RESERVED_PREFIX + "/claims/"
#: Object times are whole seconds (S3 truncates them): a sweep takes each for the latest
#: instant it may stand for, so that rounding never makes a claim look older than it is.
_TIME_STEP = 1.0


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``, refusing odd prefixes."""
    if not url.startswith(SCHEME):
        raise ConfigurationError("root", f"of object storage starts with {SCHEME!r}: {url!r}")
    bucket, _, prefix = url[len(SCHEME) :].partition("/")
    prefix = prefix.strip("/")
    if not bucket or "\0" in url:
        raise ConfigurationError("root", f"{url!r} has no bucket name: use s3://bucket[/prefix]")
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise ConfigurationError("root", f"{url!r} has an empty, '.' or '..' part in its prefix")
    return bucket, prefix


def _split_key(key: str) -> tuple[str, str]:
    """``(stem, extension)`` of a key: the extension starts at the name's first dot."""
    name = key.rpartition("/")[2]
    dot = name.find(".", 1)
    if dot < 0:
        return key, ""
    return key[: len(key) - len(name) + dot], name[dot:]


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


class S3Backend(Backend):
    """Objects in ``bucket`` under ``prefix``; see the module docstring for puts.

    :param url: ``s3://bucket`` or ``s3://bucket/prefix``.
    :param storage_options: :data:`STORAGE_OPTIONS`: boto3's ``endpoint_url``,
        ``region_name``, ``aws_access_key_id``, ``aws_secret_access_key``,
        ``aws_session_token`` and ``profile_name``, plus ``addressing_style``
        (``"path"``, ``"virtual"`` or ``"auto"``) and ``max_attempts`` (per request,
        retries included; default 5). What is not given comes from the standard AWS
        environment variables and files.
    :param inline_types: the media types stored without ``Content-Disposition``.
    """

    def __init__(
        self,
        url: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        inline_types: frozenset[str] = DEFAULT_INLINE_TYPES,
    ) -> None:
        self.bucket, self.prefix = split_url(url)
        self.inline_types = inline_types
        self.location = SCHEME + self.bucket + ("/" + self.prefix if self.prefix else "")
        self._key_prefix = self.prefix + "/" if self.prefix else ""
        options = dict(storage_options or {})
        unknown = sorted(set(options) - STORAGE_OPTIONS)
        if unknown:
            raise ConfigurationError(
                "storage_options",
                f"holds unknown storage option(s) {unknown} for {self.location}; "
                f"known: {sorted(STORAGE_OPTIONS)}",
            )
        config = Config(
            signature_version="s3v4",
            retries={"mode": "standard", "total_max_attempts": int(options.get("max_attempts", 5))},
            s3={"addressing_style": options.get("addressing_style", "auto")},
            max_pool_connections=2 * UPLOAD_THREADS + 8,
        )
        # Credentials and region go to the session, so that signing URLs sees them too.
        self._session = boto3.session.Session(
            aws_access_key_id=options.get("aws_access_key_id"),
            aws_secret_access_key=options.get("aws_secret_access_key"),
            aws_session_token=options.get("aws_session_token"),
            region_name=options.get("region_name"),
            profile_name=options.get("profile_name"),
        )
        self.client: S3Client = self._session.client(
            "s3", endpoint_url=options.get("endpoint_url"), config=config
        )
        self._partials: PartialUploads | None = None

    # -- names -------------------------------------------------------------------------

    def abspath(self, key: str) -> str:
        return f"{self.location}/{key}"

    def key_of(self, path: str) -> str | None:
        start = self.location + "/"
        if not path.startswith(start) or "\0" in path:
            return None
        key = path[len(start) :]
        if any(part in ("", ".", "..") for part in key.split("/")):
            return None
        return key

    def _name(self, key: str) -> str:
        """The object's name in the bucket."""
        return self._key_prefix + key

    # -- errors ------------------------------------------------------------------------

    def _error(self, exc: Exception, action: str, key: str | None) -> StorageError:
        """The store's exception for a client failure, naming the bucket and the key."""
        where = self.abspath(key) if key else self.location
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code, status = _code(exc), _status(exc)
            text = f"could not {action} {where}: {code or status} {error.get('Message', '')}"
            if code in _DENIED or status == 403:
                return StorageAccessDenied(errno.EACCES, text.rstrip(), where)
            if code == "NoSuchBucket":
                return BucketNotFound(errno.ENOENT, text.rstrip(), where)
            if status == 429 or status >= 500 or code in ("SlowDown", "Throttling"):
                return StorageUnavailable(errno.EAGAIN, text.rstrip(), where)
            return StorageError(errno.EIO, text.rstrip(), where)
        text = f"could not {action} {where}: {exc}"
        if isinstance(exc, NoCredentialsError):
            return StorageAccessDenied(errno.EACCES, text, where)
        return StorageUnavailable(errno.EAGAIN, text, where)

    def _call(self, action: str, key: str | None, request: Callable[[], _T]) -> _T:
        try:
            return request()
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, action, key) from None

    def _found(self, action: str, key: str | None, request: Callable[[], _T]) -> _T | None:
        """``request()``'s reply, or None if what it asks for is missing."""
        try:
            return request()
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise self._error(exc, action, key) from None
        except BotoCoreError as exc:
            raise self._error(exc, action, key) from None

    # -- writing -----------------------------------------------------------------------

    def writer(self) -> Writer:
        return _S3Writer(self)

    def _headers(self, key: str) -> dict[str, str]:
        """What the bucket answers with when a browser or CDN fetches the object itself:
        what the app's route sends (``headers.object_headers``), so that a public bucket
        or a CDN neither renders what the app sends as an attachment nor runs a user's
        upload as a page. (``nosniff`` and the attachment's ``sandbox`` policy are no
        headers a bucket can store: docs/object-storage.md says where to add them.)"""
        stem, extension = _split_key(key)
        content_type, disposition = object_headers(
            stem.replace("/", ""), extension, self.inline_types
        )
        headers = {"ContentType": content_type, "CacheControl": CACHE_CONTROL}
        if disposition is not None:
            headers["ContentDisposition"] = disposition
        return headers

    def _put(self, key: str, body: IO[bytes]) -> bool:
        """One conditional ``PutObject`` of ``body`` from its start: False if the key
        already exists."""
        return self._create(self._name(key), body, self._headers(key), key)

    def _create(self, name: str, body: IO[bytes], headers: dict[str, str], key: str) -> bool:
        """``PutObject`` of ``body`` as ``name`` unless it exists: False if it does."""
        for attempt in range(_CONFLICT_RETRIES):
            body.seek(0)
            try:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=name,
                    Body=body,
                    IfNoneMatch="*",
                    **headers,  # type: ignore[arg-type]
                )
            except ClientError as exc:
                if _code(exc) in _EXISTS:
                    return False
                if _code(exc) == _CONFLICT and attempt + 1 < _CONFLICT_RETRIES:
                    time.sleep(0.05 * 2**attempt)
                    continue
                raise self._error(exc, "upload", key) from None
            except BotoCoreError as exc:
                raise self._error(exc, "upload", key) from None
            return True
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _put_parts(self, key: str, fd: int, size: int) -> bool:
        """The spool in :data:`PART_SIZE` parts, :data:`UPLOAD_THREADS` at a time."""

        def send(name: str, upload: str) -> list[CompletedPartTypeDef]:
            def part(number: int) -> CompletedPartTypeDef:
                offset = (number - 1) * PART_SIZE
                data = os.pread(fd, min(PART_SIZE, size - offset), offset)
                reply = self.client.upload_part(
                    Bucket=self.bucket, Key=name, UploadId=upload, PartNumber=number, Body=data
                )
                done: CompletedPartTypeDef = {"ETag": reply["ETag"], "PartNumber": number}
                if "ChecksumCRC32" in reply:
                    done["ChecksumCRC32"] = reply["ChecksumCRC32"]
                return done

            return _in_parallel(part, -(-size // PART_SIZE))

        return self._multipart(key, send)

    def _publish_copy(self, publisher: Publisher, source: str, size: int, key: str) -> bool:
        """Publish the ``size`` bytes at ``source`` (a key of the store's own) under the
        key chosen for the id of ``key``, copied inside the bucket: what a direct or
        resumable upload's :meth:`Publisher.publish` does, the same create-if-absent
        as a put's upload. Sets ``publisher.published`` as a writer's publish does."""
        chosen = self._choose(key)
        # An empty object has no range to copy.
        created = self._copy_new(source, chosen, size) if size else self._put(chosen, io.BytesIO())
        if created and chosen != key:
            publisher.published = chosen
        return created

    def _copy_new(self, source: str, key: str, size: int) -> bool:
        """``source``'s ``size`` bytes (at least one) as ``key`` unless it exists, copied
        inside the bucket: in ranges of :data:`PART_SIZE` to :data:`COPY_PART_SIZE`,
        at most :data:`UPLOAD_THREADS` at once, completed with ``If-None-Match: *``. A
        plain ``CopyObject`` has no create-if-absent on every server; a completion has,
        as for any large put."""
        source_name = self._name(source)
        step = min(COPY_PART_SIZE, max(PART_SIZE, -(-size // UPLOAD_THREADS)))

        def copy(name: str, upload: str) -> list[CompletedPartTypeDef]:
            def part(number: int) -> CompletedPartTypeDef:
                start = (number - 1) * step
                reply = self.client.upload_part_copy(
                    Bucket=self.bucket,
                    Key=name,
                    UploadId=upload,
                    PartNumber=number,
                    CopySource={"Bucket": self.bucket, "Key": source_name},
                    CopySourceRange=f"bytes={start}-{min(size, start + step) - 1}",
                )
                return {"ETag": reply["CopyPartResult"]["ETag"], "PartNumber": number}

            return _in_parallel(part, -(-size // step))

        return self._multipart(key, copy)

    def _multipart(self, key: str, parts: Callable[[str, str], list[CompletedPartTypeDef]]) -> bool:
        """A multipart upload of ``key`` with the parts that ``parts(name, upload id)``
        sends, completed with ``If-None-Match: *``: False if the key exists. Aborted on
        any failure, so no hidden parts stay behind."""
        name = self._name(key)
        upload = self._call(
            "start an upload of",
            key,
            lambda: self.client.create_multipart_upload(
                Bucket=self.bucket,
                Key=name,
                **self._headers(key),  # type: ignore[arg-type]
            ),
        )["UploadId"]
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=name,
                UploadId=upload,
                MultipartUpload={"Parts": parts(name, upload)},
                IfNoneMatch="*",
            )
        except BaseException as exc:
            self._abort(name, upload)
            if isinstance(exc, ClientError) and _code(exc) in _EXISTS:
                return False
            if isinstance(exc, (ClientError, BotoCoreError)):
                raise self._error(exc, "upload", key) from None
            raise
        return True

    # -- one object per id (see the module docstring) -----------------------------------

    def _marker(self, key: str) -> str:
        return self._key_prefix + IDS_PREFIX + _split_key(key)[0].replace("/", "")

    def _choose(self, key: str) -> str:
        """The key under which the id of ``key`` is stored: ``key`` if this call created
        the id's marker (or found no marker this store wrote), else the key the marker
        names. The store's own keys (quarantine, set-aside copies) have no marker: each
        is its own name, whatever bytes it holds."""
        if key.startswith(RESERVED_PREFIX):
            return key
        marker = self._marker(key)
        stem = _split_key(key)[0]
        for _ in range(_CONFLICT_RETRIES):
            if self._create(marker, io.BytesIO(key.encode()), {"ContentType": "text/plain"}, key):
                return key
            chosen = self._marker_names(marker, key)
            if chosen is None:
                continue  # deleted since, with its object: claim the id again
            if _split_key(chosen)[0] == stem:
                return chosen
            break  # not a marker this store wrote: the key's own condition decides
        return key

    def _marker_names(self, marker: str, key: str) -> str | None:
        """The key the marker names, or None if there is no marker."""
        reply = self._found(
            "read the id marker of",
            key,
            lambda: self.client.get_object(Bucket=self.bucket, Key=marker),
        )
        if reply is None:
            return None
        with reply["Body"] as body:
            return bytes(body.read()).decode("utf-8", "replace")

    def _drop_marker(self, key: str) -> None:
        """Remove the id's marker if it names ``key`` (just deleted): the id may then be
        stored again, under any extension. The store's own keys have no marker."""
        if key.startswith(RESERVED_PREFIX):
            return
        marker = self._marker(key)
        if self._marker_names(marker, key) == key:
            self._call(
                "delete the id marker of",
                key,
                lambda: self.client.delete_object(Bucket=self.bucket, Key=marker),
            )

    def _abort(self, name: str, upload: str) -> bool:
        """Drop an upload's parts; False if it was gone (or the abort failed: the sweep
        of :meth:`temp_files` finds it later)."""
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload)
        except (ClientError, BotoCoreError):
            return False
        return True

    # -- reading -----------------------------------------------------------------------

    def find(self, stem: str) -> str | None:
        cut = len(stem)
        found = [key for key in self.siblings(stem) if key == stem or is_extension(key[cut:])]
        return found[0] if found else None

    def siblings(self, stem: str) -> list[str]:
        """One listing of the keys that start with ``stem`` (a page holds 1,000: an id
        never has that many names)."""
        name = self._name(stem)
        reply = self._call(
            "list",
            stem,
            lambda: self.client.list_objects_v2(Bucket=self.bucket, Prefix=name),
        )
        cut = len(self._key_prefix)
        return sorted(
            item["Key"][cut:]
            for item in reply.get("Contents", [])
            if "/" not in item["Key"][len(name) :]
        )

    def info(self, key: str) -> ObjectInfo | None:
        reply = self._found(
            "look up",
            key,
            lambda: self.client.head_object(Bucket=self.bucket, Key=self._name(key)),
        )
        if reply is None:
            return None
        return ObjectInfo(key, reply["ContentLength"], reply["LastModified"].timestamp())

    # -- claims and sweeps (see the module docstring) ----------------------------------

    def claim(self, id: str, stem: str) -> str | None:
        """The claim is written first, then the id is looked up: a sweep that reads the
        claim after the lookup sees it (see the module docstring)."""
        claim = CLAIMS_PREFIX + id
        self._call(
            "record a claim on",
            claim,
            lambda: self.client.put_object(
                Bucket=self.bucket, Key=self._name(claim), Body=secrets.token_bytes(16)
            ),
        )
        return self.find(stem)

    def _claim_of(self, id: str) -> tuple[str, float] | None:
        """The ETag and time of ``id``'s claim, or None if there is none."""
        claim = CLAIMS_PREFIX + id
        reply = self._found(
            "read the claim",
            claim,
            lambda: self.client.head_object(Bucket=self.bucket, Key=self._name(claim)),
        )
        return None if reply is None else (reply["ETag"], reply["LastModified"].timestamp())

    def sweep(
        self,
        judge: Judge,
        cutoff: float,
        *,
        dry_run: bool,
        progress: Callable[[int], None] | None,
    ) -> SweepReport:
        tally = Tally(dry_run)
        token = secrets.token_hex(8)
        if not dry_run:
            self._restore_leftovers(judge)
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key_prefix
        )
        cut = len(self._key_prefix)
        reserved = self._key_prefix + RESERVED_PREFIX
        try:
            for page in pages:
                examined = 0
                for item in page.get("Contents", []):
                    name = item["Key"]
                    judged = None if name.startswith(reserved) else judge(name[cut:])
                    if judged is None:
                        continue
                    examined += 1
                    size = item["Size"]
                    if judged[1]:
                        tally.keep_live(size)
                        continue
                    if item["LastModified"].timestamp() + _TIME_STEP >= cutoff:
                        tally.keep_recent(size)
                        continue
                    claim = self._claim_of(judged[0])
                    if claim is not None and claim[1] + _TIME_STEP >= cutoff:
                        tally.keep_recent(size)
                    elif dry_run:
                        tally.remove(size)
                    else:
                        try:
                            gone = self._remove_unclaimed(
                                name[cut:], judged[0], item["ETag"], claim, token
                            )
                        except FileNotFoundError:
                            continue  # deleted since the listing: not this sweep's to count
                        (tally.remove if gone else tally.keep_recent)(size)
                if examined and progress is not None:
                    progress(examined)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "list", None) from None
        return tally.report()

    def _remove_unclaimed(
        self, key: str, id: str, etag: str, claim: tuple[str, float] | None, token: str
    ) -> bool:
        """Copy aside, delete, read the claim again: True if the object is gone, False if
        a claim appeared and it went back."""
        aside = ASIDE_PREFIX + aside_name(key, token)
        try:
            self.client.copy_object(
                Bucket=self.bucket,
                Key=self._name(aside),
                CopySource={"Bucket": self.bucket, "Key": self._name(key)},
                CopySourceIfMatch=etag,
            )
        except ClientError as exc:
            if _code(exc) in _MISSING or _code(exc) in _EXISTS:  # deleted, or replaced
                raise FileNotFoundError(errno.ENOENT, "changed since listed", key) from None
            raise self._error(exc, "set aside", key) from None
        except BotoCoreError as exc:
            raise self._error(exc, "set aside", key) from None
        self._delete_key(key)
        again = self._claim_of(id)
        if again is not None and again != claim:
            self._put_back(aside, key)
            return False
        self._delete_key(aside)
        self._drop_marker(key)
        if claim is not None:
            self._delete_key(CLAIMS_PREFIX + id)
        return True

    def _put_back(self, aside: str, key: str) -> None:
        """Publish the set-aside copy at ``key`` again, then drop it. If ``key`` is taken,
        a put stored the same id under that very name since: the copy is not needed."""
        if not self.move(aside, key):
            self._delete_key(aside)

    def _delete_key(self, key: str) -> None:
        self._call(
            "delete",
            key,
            lambda: self.client.delete_object(Bucket=self.bucket, Key=self._name(key)),
        )

    def _restore_leftovers(self, judge: Judge) -> None:
        """Upload back what a killed sweep left aside; it is then judged like any object."""
        start = self._name(ASIDE_PREFIX)
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=start
        )
        try:
            leftovers = [
                item["Key"][len(start) :] for page in pages for item in page.get("Contents", [])
            ]
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "list", ASIDE_PREFIX) from None
        for name in leftovers:
            key = key_set_aside(name)
            if judge(key) is not None:
                try:
                    self._put_back(ASIDE_PREFIX + name, key)
                except FileNotFoundError:
                    continue  # a concurrent sweep finished it

    def open(self, key: str) -> IO[bytes]:
        """A buffered, seekable reader: one GET streams the object, a seek starts a
        ranged GET from the new position."""
        reader = _ObjectReader(self, key)
        reader.start(0)
        return io.BufferedReader(reader, buffer_size=1 << 16)

    def _get(self, key: str, start: int) -> tuple[Any, int]:
        """The body from ``start`` on, and the object's size."""
        name = self._name(key)
        try:
            if start:
                reply = self.client.get_object(
                    Bucket=self.bucket, Key=name, Range=f"bytes={start}-"
                )
            else:
                reply = self.client.get_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                where = self.abspath(key)
                raise FileNotFoundError(errno.ENOENT, "no stored object", where) from None
            raise self._error(exc, "read", key) from None
        except BotoCoreError as exc:
            raise self._error(exc, "read", key) from None
        size = reply["ContentLength"]
        if start:
            size = int(reply["ContentRange"].rpartition("/")[2])
        return reply["Body"], size

    def delete(self, key: str) -> bool:
        if self.info(key) is None:
            return False
        self._drop(key)
        return True

    def forget(self, id: str) -> None:
        """Delete the id's claim, which would otherwise outlive its objects for ever (a
        sweep only meets claims through their objects). A put that claims between the
        deletes finds the object gone and uploads anew, with a fresh time."""
        self._delete_key(CLAIMS_PREFIX + id)

    def move(self, source: str, target: str) -> bool:
        """Stream ``source`` through a writer: the same create-if-absent as a put."""
        try:
            created = self._copy(source, target)
        except FileNotFoundError:
            return False
        if created:
            self._drop(source)
        return created

    def _copy(self, source: str, target: str) -> bool:
        with self.writer() as writer, self.open(source) as stream:
            while chunk := stream.read(PART_SIZE):
                writer.write(chunk)
            return writer.publish(target)

    def _drop(self, key: str) -> None:
        self._delete_key(key)
        self._drop_marker(key)

    def set_aside(self, key: str, reserved: str) -> str | None:
        """Copied with ``If-None-Match: *`` to a free name, then deleted: a kill between
        the two leaves two copies, never none."""
        for n in range(1 << 16):
            candidate = reserved if n == 0 else f"{reserved}.{n}"
            try:
                if self._copy(key, candidate):
                    self._drop(key)
                    return candidate
            except FileNotFoundError:
                return None
        raise StorageError(errno.EEXIST, f"no free name for {reserved!r}", self.abspath(key))

    def reserved_keys(self, folder: str) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._name(folder.rstrip("/") + "/")
        )
        cut = len(self._key_prefix)
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    if not item["Key"].endswith("/"):
                        yield item["Key"][cut:]
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "list", folder) from None

    # -- listing -----------------------------------------------------------------------

    def _listing(self) -> Iterator[tuple[str, int]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key_prefix
        )
        cut = len(self._key_prefix)
        reserved = self._key_prefix + RESERVED_PREFIX
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    name = item["Key"]
                    if not name.endswith("/") and not name.startswith(reserved):
                        yield name[cut:], item["Size"]
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "list", None) from None

    def all_keys(self) -> Iterator[str]:
        return (key for key, _ in self._listing())

    def sizes(self) -> Iterator[tuple[str, int]]:
        """The listing has every size: no request per key."""
        return self._listing()

    def walk(self) -> Iterator[tuple[str, str | None]]:
        """A bucket holds objects only: no symlink, FIFO or folder to meet."""
        return ((key, None) for key, _ in self._listing())

    def check_root(self) -> None:
        self._call("reach the bucket of", None, lambda: self.client.head_bucket(Bucket=self.bucket))

    def count(self) -> int:
        return sum(1 for _ in self._listing())

    def size(self) -> int:
        return sum(size for _, size in self._listing())

    # -- URLs --------------------------------------------------------------------------

    signs_urls = True
    max_signing_window = MAX_SIGNING_WINDOW

    def signed_url(
        self,
        key: str,
        window: int,
        *,
        content_type: str | None = None,
        content_disposition: str | None = None,
    ) -> str:
        """A presigned GET URL, signed as of the start of the current ``window``-second
        period and valid for two periods: every call in one period gives the same URL
        (so browsers and CDNs cache it), and it stays valid at least ``window`` seconds."""
        if not 0 < window <= MAX_SIGNING_WINDOW:
            raise ConfigurationError(
                "window", f"must be 1 to {MAX_SIGNING_WINDOW} seconds, not {window!r}"
            )
        params: dict[str, str] = {"Bucket": self.bucket, "Key": self._name(key)}
        if content_type is not None:
            params["ResponseContentType"] = content_type
        if content_disposition is not None:
            params["ResponseContentDisposition"] = content_disposition
        now = int(time.time())
        return self._sign(
            "get_object", params, {}, 2 * window, datetime.fromtimestamp(now - now % window, UTC)
        )

    def _sign(
        self,
        operation: str,
        params: dict[str, str],
        headers: dict[str, str],
        expires: int,
        when: datetime,
    ) -> str:
        """A presigned URL for ``operation``, signed as of ``when``, that requires
        ``headers`` with exactly their values. Signing is local: no request is sent."""
        # botocore builds the URL (endpoint, addressing style, escaping, overrides);
        # only its signature is replaced, by one with a fixed signing time that covers
        # the headers.
        unsigned = urlsplit(self.client.generate_presigned_url(operation, Params=params))
        query = "&".join(
            part for part in unsigned.query.split("&") if not part.startswith("X-Amz-")
        )
        method = "PUT" if operation == "put_object" else "GET"
        request = AWSRequest(
            method=method, url=urlunsplit(unsigned._replace(query=query)), headers=headers
        )
        credentials = self._session.get_credentials()
        if credentials is None:
            raise StorageAccessDenied(
                errno.EACCES, f"no credentials to sign a URL for {self.abspath(params['Key'])}"
            )
        signer = _PeriodSigner(
            credentials.get_frozen_credentials(), self.client.meta.region_name, expires, when
        )
        signer.add_auth(request)
        return str(request.url)

    # -- direct uploads (docs/uploads.md) ------------------------------------------------

    max_upload_size = MAX_PUT_SIZE

    def presign_put(self, key: str, size: int, sha256: bytes, expires: int) -> PresignedPut:
        """A presigned ``PutObject`` whose signature covers ``Content-Length`` and
        ``x-amz-checksum-sha256``: a request without them, or with other values, is
        refused (403), and the bucket refuses bytes whose digest is not the one signed
        (400 BadDigest), so nothing but the authorized bytes can land at ``key``."""
        headers = {
            "Content-Length": str(size),
            "x-amz-checksum-sha256": base64.b64encode(sha256).decode("ascii"),
        }
        params = {"Bucket": self.bucket, "Key": self._name(key)}
        url = self._sign("put_object", params, headers, expires, datetime.now(UTC))
        return PresignedPut(url, headers)

    def incoming(self, key: str) -> Incoming | None:
        reply = self._found(
            "look up",
            key,
            lambda: self.client.head_object(
                Bucket=self.bucket, Key=self._name(key), ChecksumMode="ENABLED"
            ),
        )
        if reply is None:
            return None
        checksum = reply.get("ChecksumSHA256")
        # A checksum of parts ("...-3") is no digest of the whole; a direct upload is one
        # PUT, whose checksum is.
        whole = checksum is not None and reply.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT"
        sha256 = base64.b64decode(checksum) if whole and checksum else None
        return _Incoming(self, key, reply["ContentLength"], sha256)

    # -- folders -----------------------------------------------------------------------

    def make_folder(self, path: str) -> None:
        """Buckets have no folders: nothing to make."""

    def remove_empty(self, path: str) -> None:
        """Buckets have no folders: nothing to remove."""

    def partial_uploads(self) -> PartialUploads:
        """One for the backend: it keeps which uploads this process holds."""
        if self._partials is None:
            from .s3_partial import S3PartialUploads  # it builds on this module

            self._partials = S3PartialUploads(self)
        return self._partials

    # -- leftovers -----------------------------------------------------------------------

    def temp_files(self) -> Iterator[str]:
        """Multipart uploads under the prefix older than :data:`STALE_UPLOAD_AGE`, but for
        the resumable uploads' (``.hashfs/uploads/``), which live until they expire; and
        direct uploads never completed, older than :data:`INCOMING_MAX_AGE`."""
        yield from self._stale_incoming()
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self._key_prefix
        )
        cutoff = time.time() - STALE_UPLOAD_AGE
        cut = len(self._key_prefix)
        resumable = self._key_prefix + UPLOADS
        try:
            for page in pages:
                for upload in page.get("Uploads", []):
                    if upload["Key"].startswith(resumable):
                        continue
                    if upload["Initiated"].timestamp() <= cutoff:
                        yield f"{self.abspath(upload['Key'][cut:])}?uploadId={upload['UploadId']}"
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "list the uploads of", None) from None

    def _stale_incoming(self) -> Iterator[str]:
        cutoff = time.time() - INCOMING_MAX_AGE
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._name(INCOMING)
        )
        cut = len(self._key_prefix)
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    if item["LastModified"].timestamp() <= cutoff:
                        yield self.abspath(item["Key"][cut:])
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "list", INCOMING) from None

    def remove_temp(self, name: str) -> bool:
        url, marker, upload = name.partition("?uploadId=")
        key = self.key_of(url)
        if key is not None and not marker and key.startswith(INCOMING):
            self._delete_key(key)
            return True
        if not marker or not upload or key is None:
            return False
        return self._abort(self._name(key), upload)


def _in_parallel(
    part: Callable[[int], CompletedPartTypeDef], count: int
) -> list[CompletedPartTypeDef]:
    """Parts 1 to ``count``, :data:`UPLOAD_THREADS` at a time; on a failure, the parts
    not yet started are not sent."""
    with ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="hashfs-upload") as pool:
        try:
            return list(pool.map(part, range(1, count + 1)))
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


class _PeriodSigner(S3SigV4QueryAuth):
    """botocore's presigned-URL signer, signing as of a given time instead of now."""

    def __init__(self, credentials: Any, region: str, expires: int, when: datetime) -> None:
        super().__init__(credentials, "s3", region, expires)
        self._timestamp = when.strftime(SIGV4_TIMESTAMP)

    def add_auth(self, request: AWSRequest) -> None:
        request.context["timestamp"] = self._timestamp
        self._modify_request_before_signing(request)  # type: ignore[attr-defined]
        canonical_request = self.canonical_request(request)
        string_to_sign = self.string_to_sign(request, canonical_request)
        signature = self.signature(string_to_sign, request)
        self._inject_signature_to_request(request, signature)  # type: ignore[attr-defined]


class _S3Writer(Writer):
    def __init__(self, backend: S3Backend) -> None:
        self._backend = backend
        self._spool = tempfile.SpooledTemporaryFile(max_size=PART_SIZE)  # noqa: SIM115

    def write(self, data: bytes) -> None:
        try:
            self._spool.write(data)
        except OSError as exc:
            folder = tempfile.gettempdir()
            raise storage_error(
                exc.errno or errno.EIO, f"could not spool a put to a temp file in {folder}: {exc}"
            ) from None

    def publish(self, key: str) -> bool:
        """Upload under the key chosen for the id (see the module docstring): True if
        this call created the object, under :attr:`published` when another put chose the
        key. The upload is create-if-absent, so exactly one put creates it."""
        chosen = self._backend._choose(key)
        size = self._spool.tell()
        if size <= MULTIPART_THRESHOLD:
            created = self._backend._put(chosen, self._spool)
        else:
            self._spool.flush()
            created = self._backend._put_parts(chosen, self._spool.fileno(), size)
        if created and chosen != key:
            self.published = chosen
        return created

    def discard(self) -> None:
        self._spool.close()


class _Incoming(Incoming):
    """A direct upload in the bucket. Publishing it copies it inside the bucket to the
    key chosen for its id (the same one-object-per-id rule as a put's upload); leaving
    the ``with`` block deletes it, published or not."""

    def __init__(self, backend: S3Backend, key: str, size: int, sha256: bytes | None) -> None:
        self._backend = backend
        self._key = key
        self.size = size
        self.sha256 = sha256

    def head(self, size: int) -> bytes:
        backend = self._backend
        try:
            reply = backend.client.get_object(
                Bucket=backend.bucket, Key=backend._name(self._key), Range=f"bytes=0-{size - 1}"
            )
            with reply["Body"] as body:
                return bytes(body.read())[:size]
        except ClientError as exc:
            if _code(exc) == "InvalidRange":  # an empty object has no first byte
                return b""
            raise backend._error(exc, "read", self._key) from None
        except BotoCoreError as exc:
            raise backend._error(exc, "read", self._key) from None

    def publish(self, key: str) -> bool:
        return self._backend._publish_copy(self, self._key, self.size, key)

    def discard(self) -> None:
        self._backend._delete_key(self._key)


class _ObjectReader(io.RawIOBase):
    """The raw stream under :meth:`S3Backend.open`: a body that restarts where it is
    needed. A transfer that breaks mid-body resumes with a ranged GET, a bounded number
    of times."""

    RESUMES = 3

    def __init__(self, backend: S3Backend, key: str) -> None:
        super().__init__()
        self._backend = backend
        self._key = key
        self._body: Any = None
        self._position = 0
        self._size = 0

    def start(self, position: int) -> None:
        self._body, self._size = self._backend._get(self._key, position)
        self._position = position

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        position = base + offset
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        if position != self._position:
            self._drop_body()
            self._position = position
        return position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._position >= self._size or not len(view):
            return 0
        for attempt in range(self.RESUMES + 1):
            if self._body is None:
                self.start(self._position)
            try:
                data: bytes = self._body.read(len(view))
            except (BotoCoreError, TransportError, OSError) as exc:
                self._drop_body()
                if attempt == self.RESUMES:
                    raise self._backend._error(exc, "read", self._key) from None
                continue
            if not data:
                raise StorageError(
                    errno.EIO,
                    f"{self._backend.abspath(self._key)} ended at byte {self._position}"
                    f" of {self._size}",
                )
            view[: len(data)] = data
            self._position += len(data)
            return len(data)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _drop_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def close(self) -> None:
        self._drop_body()
        super().close()
