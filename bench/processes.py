"""What the benchmarks need to run their processes (bench/README.md): a free port, waiting until something listens
there, and a scratch PostgreSQL database with the environment of a radshare that uses it."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


@contextmanager
def postgres_env(
    server_url: str, base: dict[str, str], data_dir: Path, label: str
) -> Iterator[dict[str, str]]:
    """The environment of a radshare on a new database of the PostgreSQL server ``server_url`` (made with
    ``createdb``, dropped afterwards)."""
    server = urlsplit(server_url)
    name = f"radshare_{label}_bench_{os.getpid()}"
    where = ["-h", server.hostname or "127.0.0.1", "-p", str(server.port or 5432)]
    where += ["-U", server.username or "postgres"]
    subprocess.run(["createdb", *where, name], check=True)
    try:
        yield {
            **base,
            "RADSHARE_DATA_DIR": str(data_dir),
            "RADSHARE_DATABASE_URL": f"{server_url.rstrip('/')}/{name}",
            "RADSHARE_STORAGE_URL": f"file://{data_dir / 'storage'}?shared=1",  # one machine: one folder
            "RADSHARE_SECRET_KEY": "bench-only-" + os.urandom(24).hex(),
        }
    finally:
        subprocess.run(["dropdb", *where, name], check=False)
