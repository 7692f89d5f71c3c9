"""The secret key: from ``RADSHARE_SECRET_KEY``, or a key file generated in the data dir; refused when weak.

A key from the environment must not look like a placeholder; a key that was once published is never used again;
a key file must be readable by its owner only. Generated only in demo mode or with SQLite on one machine: with a
shared database every machine needs the same key, so it must be set.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from radshare.core.config.table import PREFIX

# Values that look like a secret but are not one (copied from a README, left from a template).
PLACEHOLDER_SECRETS = frozenset(
    {
        "",
        "changeme",
        "change-me",
        "secret",
        "secret-key",
        "secretkey",
        "insecure",
        "dev",
        "test",
        "xxx",
        "todo",
    }
)
MIN_SECRET_LENGTH = 32
# SHA-256 of keys that were once public (key files committed to the repository by mistake): never used again.
LEAKED_SECRET_KEYS = frozenset(
    {
        "511e77b521d3ac2d3c303556b96fede9ec27e273580c65667b51dc246d673036",
        "e5a863cf97dc45e3da4229c7eeac13e67b86b021fb0bb3f00cae7735a45c9786",
    }
)


def _leaked(key: str) -> bool:
    return hashlib.sha256(key.strip().encode()).hexdigest() in LEAKED_SECRET_KEYS


def resolve_secret_key(
    values: dict[str, Any], env: Mapping[str, str], problems: list[str], create: bool
) -> str:
    """Put the key in ``values["SECRET_KEY"]`` and say where it came from: ``environment``, ``missing`` or the
    key file's path. ``create``: generate the key file when there is none. Check the old keys too."""
    source = _resolve(values, env, problems, create)
    _check_old_keys(values, problems)
    return source


def _check_old_keys(values: dict[str, Any], problems: list[str]) -> None:
    """An old key still verifies what it made, sessions included (docs/security.md A28): it must be as strong as
    a current one, and never a key that was published."""
    for number, key in enumerate(values.get("OLD_SECRET_KEYS") or (), start=1):
        which = f"{PREFIX}OLD_SECRET_KEYS: key {number}"
        if _leaked(key):
            problems.append(f"{which} was published once; anyone could sign a session with it, so remove it")
        elif _weak(key) and not values.get("DEMO"):
            problems.append(f"{which} looks like a placeholder; an old key must be a real earlier key")
        if key == values.get("SECRET_KEY"):
            problems.append(f"{which} is the current key ({PREFIX}SECRET_KEY); list only earlier keys")


def _weak(key: str) -> bool:
    return (
        key.lower() in PLACEHOLDER_SECRETS
        or key.startswith("django-insecure")
        or len(key) < MIN_SECRET_LENGTH
    )


def _resolve(values: dict[str, Any], env: Mapping[str, str], problems: list[str], create: bool) -> str:
    raw = env.get(PREFIX + "SECRET_KEY")
    is_sqlite = str(values.get("DATABASE_URL", "")).startswith("sqlite")
    if raw is not None:
        values["SECRET_KEY"] = _from_environment(raw, problems, demo=bool(values.get("DEMO")))
        return "environment"
    if not (values.get("DEMO") or is_sqlite):
        problems.append(
            f"{PREFIX}SECRET_KEY: must be set (the same on every machine) when the database is shared; "
            "it is only generated automatically in demo mode or with SQLite on one machine"
        )
        values["SECRET_KEY"] = ""
        return "missing"
    path = Path(values["DATA_DIR"]) / "secret_key"
    values["SECRET_KEY"] = _from_file(path, problems, demo=bool(values.get("DEMO")), create=create)
    return f"{path}"


def _from_environment(raw: str, problems: list[str], *, demo: bool) -> str:
    key = raw.strip()
    if _weak(key) and not demo:
        problems.append(
            f"{PREFIX}SECRET_KEY: looks like a placeholder; use at least {MIN_SECRET_LENGTH} random characters "
            "(e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
        )
    if _leaked(key):
        problems.append(f"{PREFIX}SECRET_KEY: this key was published once; generate a new one")
    return key


def _from_file(path: Path, problems: list[str], *, demo: bool, create: bool) -> str:
    """The key in the data dir's key file; a new one if there is none and ``create``, else empty."""
    if path.exists() and demo and create and _leaked(path.read_text(encoding="ascii")):
        path.unlink()  # demo data only: a fresh key is generated below (share codes made with the old one end)
    if path.exists():
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            problems.append(
                f"{PREFIX}SECRET_KEY: the key file {path} is readable by others; `chmod 600 {path}` "
                "(and check who could read it: if anyone, generate a new key)"
            )
        key = path.read_text(encoding="ascii").strip()
        if _leaked(key):
            problems.append(
                f"{PREFIX}SECRET_KEY: the key file {path} holds a key that was published once; delete it"
            )
        return key
    if create:
        return _create_key_file(path)
    return ""


def _create_key_file(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # O_EXCL: two processes starting at once must not write different keys.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return key
