"""Defaults worked out from other settings, and the refusals that weigh one setting against another.

Runs after every value is parsed: fills in the settings declared with a default of None (the database, base URL,
storage, the message outboxes, the sender) and refuses combinations that cannot work, such as more DICOM
associations than database connections.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from radshare.core.config.parsers import email_from
from radshare.core.config.table import PREFIX
from radshare.core.config.urls import url_flag


def derive(values: dict[str, Any], env: Mapping[str, str], problems: list[str]) -> None:
    """Fill in the derived defaults in ``values`` (parsed, by setting name); add a line to ``problems`` for each
    combination that is refused."""
    data_dir = Path(values["DATA_DIR"]).expanduser().resolve()
    values["DATA_DIR"] = str(data_dir)
    if values.get("DATABASE_URL") is None:
        values["DATABASE_URL"] = f"sqlite:///{data_dir / 'radshare.sqlite3'}"
    if values.get("BASE_URL") is None:
        values["BASE_URL"] = f"http://localhost:{values.get('HTTP_PORT', 8000)}"
    if values.get("STORAGE_URL") is None:
        values["STORAGE_URL"] = f"file://{data_dir / 'storage'}"
    if values.get("DICOM_ACCEPT_ANY") is None:
        values["DICOM_ACCEPT_ANY"] = bool(values.get("DEMO"))
    elif values["DICOM_ACCEPT_ANY"] and not values.get("DEMO"):
        problems.append(f"{PREFIX}DICOM_ACCEPT_ANY: may only be on in demo mode ({PREFIX}DEMO=1)")
    associations, pool = values.get("DICOM_MAX_ASSOCIATIONS"), values.get("DATABASE_POOL_SIZE")
    postgres = not str(values["DATABASE_URL"]).startswith("sqlite")
    if postgres and associations is not None and pool is not None and associations > pool:
        problems.append(
            f"{PREFIX}DICOM_MAX_ASSOCIATIONS: {associations} is more than {PREFIX}DATABASE_POOL_SIZE ({pool}); "
            "each association holds a database connection: raise the pool size or lower the associations"
        )
    storage, refused = (
        str(values["STORAGE_URL"]),
        any(p.startswith(f"{PREFIX}STORAGE_URL=") for p in problems),
    )
    shared = refused or not storage.startswith("file:") or url_flag(storage, "shared", False)
    if postgres and not shared and not values.get("DEMO"):
        problems.append(
            f"{PREFIX}STORAGE_URL: with a shared database every web, SCP and worker process must see the same "
            "files: use s3://, or add ?shared=1 to the file:// URL if that folder is the same one for all of them"
        )
    # Demo mode keeps what would be sent in files, for the demo outbox page; elsewhere the console.
    outbox = data_dir / "outbox"
    for name, demo_target in (("EMAIL_URL", outbox / "mail"), ("SMS_URL", outbox / "sms.jsonl")):
        if values.get(name) is None and PREFIX + name not in env:
            values[name] = f"file://{demo_target}" if values.get("DEMO") else "console://"
    if values.get("EMAIL_FROM") is None and PREFIX + "EMAIL_FROM" not in env:
        host = urlsplit(values["BASE_URL"]).hostname or "localhost"
        if _is_ip(host):
            host = "localhost"
        default_from = f"radshare <noreply@{host}>"
        try:
            values["EMAIL_FROM"] = email_from(default_from)
        except ValueError:
            problems.append(
                f"{PREFIX}EMAIL_FROM: the default {default_from!r} (from {PREFIX}BASE_URL) is not a valid "
                'address; set it, e.g. "Hospital A <noreply@hospital-a.nl>"'
            )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
