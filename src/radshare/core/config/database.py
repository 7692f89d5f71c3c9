"""Django's ``DATABASES['default']`` from ``RADSHARE_DATABASE_URL``: SQLite, or PostgreSQL through a pool.

SQLite runs in WAL mode with ``synchronous=FULL`` (docs/security.md R2); PostgreSQL connections come from a
bounded pool per process, and a request that waits too long for one is answered 503 (docs/security.md R7).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

# A request waits this long for a pooled connection before it is answered 503 (docs/security.md R7).
POOL_TIMEOUT_SECONDS = 10


def database_settings(url: str, data_dir: Path, pool_size: int = 16) -> dict[str, Any]:
    """Django DATABASES['default'] from a URL (SQLite: WAL + synchronous=FULL, docs/security.md R2).

    PostgreSQL connections come from a pool of at most ``pool_size`` per process (docs/security.md R7). Under
    ASGI each request may run in a new thread; persistent per-thread connections (``CONN_MAX_AGE``) then pile up
    until the server refuses everyone. With the pool a thread's connection goes back at the end of each request
    (``CONN_MAX_AGE`` 0), and a burst waits its turn instead.
    """
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_absolute():
            path = Path.cwd() / path
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(path),
            "OPTIONS": {
                # IMMEDIATE: writers queue for the lock at BEGIN instead of failing on upgrade.
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
            },
            "TEST": {"NAME": str(data_dir / "test.sqlite3")},
        }
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    options: dict[str, Any] = {}
    if "sslmode" in query:
        options["sslmode"] = query["sslmode"]
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/") or "radshare",
        "USER": parts.username or "",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "CONN_MAX_AGE": 0,  # required with a pool: each close hands the connection back
        # The pool checks a connection before handing it out, so a restarted server costs no failed request.
        "OPTIONS": {
            **options,
            "pool": {"min_size": 1, "max_size": pool_size, "timeout": POOL_TIMEOUT_SECONDS, "max_idle": 300},
        },
    }
