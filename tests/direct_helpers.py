"""Sending a presigned PUT the way a browser does: one plain HTTP request, no SDK."""

from __future__ import annotations

import base64
import hashlib
import http.client
from collections.abc import Mapping
from urllib.parse import urlsplit


def sha256_b64(data: bytes) -> str:
    """The value of ``x-amz-checksum-sha256`` for ``data``."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def send_put(url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
    """PUT ``body`` to ``url`` with ``headers`` (http.client sets ``Content-Length`` from
    the body, as a browser does): the status and the response body."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        sent = {name: value for name, value in headers.items() if name.lower() != "content-length"}
        connection.request("PUT", f"{parts.path}?{parts.query}", body=body, headers=sent)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()
