"""Bursts of requests against a real ``radshare serve`` on PostgreSQL keep the connections bounded (R7).

Under ASGI each request may run in a new thread. With persistent per-thread connections the count grew by about
one per concurrent request and never came down, until PostgreSQL refused everyone (an outside attack run found
it). Each process now takes its connections from a pool of ``RADSHARE_DATABASE_POOL_SIZE``.
"""

from __future__ import annotations

import collections
import secrets
import signal
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings

from tests.cli_runner import radshare_env, run_radshare, start_radshare, stop_group
from tests.conftest import free_port, require
from tests.runtime.test_serve import START_TIMEOUT, healthz, wait_for

POOL_SIZE = 4
WEB_WORKERS = 2
BURSTS = 5
CONCURRENT = 50

pytestmark = pytest.mark.postgres


def _admin_conninfo() -> dict[str, Any]:
    db = settings.DATABASES["default"]
    require(db["ENGINE"].endswith("postgresql"), "PostgreSQL (RADSHARE_DATABASE_URL=postgres://...)")
    return {"host": db["HOST"], "port": db["PORT"] or 5432, "user": db["USER"], "password": db["PASSWORD"]}


@pytest.fixture
def database() -> Iterator[tuple[str, dict[str, Any]]]:
    """A fresh PostgreSQL database of its own, dropped afterwards."""
    conninfo = _admin_conninfo()
    name = f"radshare_pool_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **conninfo) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name, conninfo
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **conninfo) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def connections_to(name: str, conninfo: dict[str, Any]) -> int:
    with psycopg.connect(dbname="postgres", autocommit=True, **conninfo) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone()
    assert row is not None
    return int(row[0])


def status_of(url: str) -> int | str:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - loopback only
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError as exc:
        return type(exc).__name__


def test_bursts_of_recipient_requests_keep_connections_bounded(
    database: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    name, conninfo = database
    auth = conninfo["user"] + (f":{conninfo['password']}" if conninfo["password"] else "")
    http_port, dicom_port = free_port(), free_port()
    env = radshare_env(
        tmp_path,
        database_url=f"postgres://{auth}@{conninfo['host']}:{conninfo['port']}/{name}",
        secret_key=secrets.token_urlsafe(40),
        storage_url=f"file://{tmp_path / 'storage'}?shared=1",
        database_pool_size=str(POOL_SIZE),
        dicom_max_associations=str(POOL_SIZE),
        web_workers=str(WEB_WORKERS),
        http_port=str(http_port),
        dicom_port=str(dicom_port),
    )
    migrated = run_radshare("migrate", "--verbosity", "0", env=env, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    log = tmp_path / "serve.log"
    proc = start_radshare("serve", env=env, log=log)
    try:
        wait_for("/healthz", lambda: healthz(http_port), START_TIMEOUT, proc)
        base = f"http://127.0.0.1:{http_port}"
        # Without a code (the study list sends back to the start page), with an unknown code (a look-up, the
        # throttle's count and a session written): each one needs the database.
        paths = [f"/?code={secrets.token_hex(6)}" if i % 2 else "/r/studies" for i in range(CONCURRENT)]
        seen: collections.Counter[int | str] = collections.Counter()
        peak = 0
        for _ in range(BURSTS):
            with ThreadPoolExecutor(CONCURRENT) as pool:
                seen.update(pool.map(lambda p: status_of(base + p), paths))
            peak = max(peak, connections_to(name, conninfo))
        # 200: the start page; 429: the per-address throttle on wrong codes. Never a 500 or a refused request.
        assert set(seen) <= {200, 429}, seen
        assert seen[200] >= CONCURRENT, seen
        # The web workers, the SCP and the task worker, each at most its pool, and the SCP's journal indexer, one
        # connection at a time (docs/operations.md "Processes and database connections"); the burst reaches only
        # the web workers.
        assert peak <= (WEB_WORKERS + 2) * POOL_SIZE + 1, peak
        assert status_of(base + "/readyz") == 200
    finally:
        stop_group(proc, signal.SIGINT, timeout=15)
    output = log.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in output, output[-4000:]
