"""radshare's own processes (``radshare scp``, ``radshare worker``) started against the test's database and storage,
for tests that kill them (docs/security.md R1, R4): what they committed is read back through the ORM in the test.

The test must use ``transactional_db`` (``django_db(transaction=True)``): the processes see committed rows only.
On SQLite the test database is a file (``TEST.NAME`` in the data dir), on PostgreSQL a database of its own; either
way the processes are pointed at that same database, the same storage folder and the same secret key.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from tests.cli_runner import radshare_env, start_radshare, stop_group

START_TIMEOUT = 60


def database_url(**overrides: Any) -> str:
    """``RADSHARE_DATABASE_URL`` of the database this test uses (``overrides``: host, port or name replaced)."""
    db = {**connection.settings_dict, **{k.upper(): v for k, v in overrides.items()}}
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = quote(db["USER"] or "", safe="") + (f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def is_postgres() -> bool:
    return bool(connection.vendor == "postgresql")


def process_env(data_dir: Path, *, database: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a radshare process that shares this test's database, storage and key."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return radshare_env(
        data_dir,
        database_url=database or database_url(),
        storage_url=settings.RADSHARE.storage_url,
        secret_key=settings.RADSHARE.secret_key,
        **extra,
    )


def start(name: str, *args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return start_radshare(name, *args, env=env, log=log)


def kill(proc: subprocess.Popen[bytes]) -> None:
    """``kill -9`` of the process and everything it started (its render processes): a crash, no clean-up."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def stop(proc: subprocess.Popen[bytes]) -> None:
    stop_group(proc, signal.SIGTERM, timeout=15)


def wait_for(what: str, check: Callable[[], Any], timeout: float, *procs: subprocess.Popen[bytes]) -> Any:
    """Poll ``check`` until it returns something truthy; fail at once when one of ``procs`` has died."""
    deadline = time.monotonic() + timeout
    while True:
        for proc in procs:
            if proc.poll() is not None:
                pytest.fail(f"a radshare process exited ({proc.returncode}) while waiting for {what}")
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def log_of(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
