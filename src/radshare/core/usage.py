"""Usage counters per organisation and day (``UsageCount``): the one door through which radshare counts what it
did for whom, for the usage report (``radshare report usage``, the operator's usage page) and the metrics.

``count`` adds to a counter in the caller's transaction (one upsert), so a count commits with what it counts and
never twice; ``gauge`` sets a day's value (storage held). Counters are kept apart from the audit trail: they are
not pruned, hold no patient data and are cheap to sum over a month.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from enum import StrEnum

from django.db import connection
from django.utils import timezone

INSTALLATION = 0  # the organisation id of what belongs to no organisation


class Usage(StrEnum):
    STUDIES_RECEIVED = "studies_received"  # new studies, by any ingest (C-STORE, upload, PACS retrieve)
    INSTANCES_RECEIVED = "instances_received"
    BYTES_RECEIVED = "bytes_received"
    SHARES_CREATED = "shares_created"  # with ``kind``: "<delivery>.<recipient type>"
    SHARES_OPENED = "shares_opened"  # first login of the recipient
    DOWNLOADS = "downloads"  # ZIP downloads as the daily limit counts them, with ``kind``: "dicom" or "jpeg"
    DOWNLOAD_BYTES = "download_bytes"
    SMS_SENT = "sms_sent"
    EMAILS_SENT = "emails_sent"
    NOTIFICATIONS_FAILED = "notifications_failed"
    RECIPIENT_LOCKOUTS = "recipient_lockouts"
    STORAGE_BYTES = "storage_bytes"  # a gauge: what the organisation's studies hold, once a day
    SHARE_PREPARATION = (
        "share_preparation"  # a histogram (``observe``): seconds from a share's creation to ready
    )


# Upper bounds of the histogram buckets, in seconds (Prometheus' "le"); "+Inf" is the count itself.
BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


def key(usage: Usage, kind: str = "") -> str:
    return f"{usage.value}:{kind}" if kind else usage.value


# The same statements on SQLite (3.24 and newer) and PostgreSQL, with one row of values per counter.
_INSERT = "INSERT INTO core_usagecount (organisation_id, day, name, value) VALUES "
_ROW = "(%s, %s, %s, %s)"
_ADD = (
    " ON CONFLICT (organisation_id, day, name) DO UPDATE SET value = core_usagecount.value + excluded.value"
)
_SET = " ON CONFLICT (organisation_id, day, name) DO UPDATE SET value = excluded.value"

_Row = tuple[int, dt.date, str, int]


def _upsert(rows: list[_Row], *, add: bool) -> None:
    """One statement for all of ``rows`` (organisation, day, counter, value): added to, or set."""
    sql = _INSERT + ", ".join([_ROW] * len(rows)) + (_ADD if add else _SET)
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for row in rows for value in row])


def count(
    usage: Usage, n: int = 1, *, organisation: int | None, kind: str = "", day: dt.date | None = None
) -> None:
    """Add ``n`` to the organisation's counter of ``usage`` (and ``kind``) for ``day`` (today)."""
    if n:
        _upsert([(organisation or INSTALLATION, day or timezone.localdate(), key(usage, kind), n)], add=True)


def count_each(counts: Mapping[Usage, int], *, organisation: int | None) -> None:
    """``count`` of several counters at once, in one statement: for every instance stored, where one statement
    more per image shows in the ingest rate (docs/architecture.md "C-STORE ingest")."""
    org, day = organisation or INSTALLATION, timezone.localdate()
    rows = [(org, day, key(usage), n) for usage, n in counts.items() if n]
    if rows:
        _upsert(rows, add=True)


def gauge(usage: Usage, value: int, *, organisation: int | None, day: dt.date | None = None) -> None:
    """Set the organisation's value of ``usage`` for ``day`` (today), replacing an earlier one of that day."""
    _upsert([(organisation or INSTALLATION, day or timezone.localdate(), key(usage), value)], add=False)


def observe(usage: Usage, seconds: float, *, organisation: int | None) -> None:
    """One observation of a histogram: every bucket it falls in, the count and the sum (in milliseconds)."""
    for bound in BUCKETS:
        if seconds <= bound:
            count(usage, organisation=organisation, kind=f"le_{bound:g}")
    count(usage, organisation=organisation, kind="count")
    count(usage, round(seconds * 1000), organisation=organisation, kind="sum_ms")
