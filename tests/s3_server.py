"""What tests need to know about the S3 test server that ``conftest.s3_server`` starts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

BUCKET = "hashfs-test"


@dataclass(frozen=True)
class S3Server:
    """How to reach the test server, and a raw client to check what really is there."""

    endpoint: str
    access_key: str
    secret_key: str
    client: S3Client

    @property
    def options(self) -> dict[str, Any]:
        """``storage_options`` for a store on this server."""
        return {
            "endpoint_url": self.endpoint,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": "us-east-1",
        }

    def new_url(self) -> str:
        """A fresh, empty ``s3://`` root in the test bucket."""
        return f"s3://{BUCKET}/{uuid.uuid4().hex}"
