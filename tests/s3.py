"""A real S3 API on loopback for the tests: moto's server (``moto[server]``, a dev dependency), started once per test
process on a free port and stopped at exit. Each caller gets its own bucket, so tests never see each other's
objects."""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from radshare.core.storage.s3 import S3Storage

_server: dict[str, Any] = {}
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
}


def endpoint() -> str:
    """The URL of this test process's S3 server (started on first use)."""
    if "url" not in _server:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        moto = Path(sys.executable).with_name("moto_server")
        process = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        atexit.register(_stop, process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):  # noqa: S310 - our own loopback server
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        _server["url"] = url
        os.environ.update({k: os.environ.get(k, v) for k, v in CREDENTIALS.items()})
    return str(_server["url"])


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def new_bucket(prefix: str = "radshare") -> S3Storage:
    """A storage in a new, empty bucket of the test server, under ``prefix``."""
    url = endpoint()
    bucket = f"test-{uuid.uuid4().hex[:20]}"
    storage = S3Storage(bucket, prefix, endpoint_url=url, region="eu-west-1")
    storage.client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return storage


def storage_url(storage: S3Storage) -> str:
    return f"s3://{storage.bucket}/{storage.prefix}?endpoint_url={storage.endpoint_url}&region=eu-west-1"
