"""What counts as a download, and what a counted one may fetch again (docs/security.md R5, A18, A24;
docs/architecture.md "Downloads").

* The daily counter: at most ``RADSHARE_DOWNLOADS_PER_DAY`` downloads per share and calendar day (Europe/Amsterdam),
  one ``DownloadDay`` row per share and day raised by a conditional UPDATE. The ZIP downloads count here, and so
  do the viewer's DICOMweb retrieves (radshare.viewer.dicomweb.wado).
* Range grants: the bytes a counted ZIP download lets its browser session fetch again that day (``DownloadGrant``):
  one copy of that ZIP plus a margin, drawn by each range request and refunded for what it did not send.

``today`` is looked up through this module on every call: tests move the day by replacing it here.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from django.conf import settings
from django.db import OperationalError
from django.db.models import F
from django.utils import timezone

from radshare.downloads.models import DownloadDay, DownloadGrant
from radshare.shares.models import Share

LOCK_RETRIES = 6  # SQLite: a writer that still finds the database locked after its 30 s timeout tries again
# Bytes a counted download may be fetched beyond one copy of the ZIP: what was sent but lost in flight (socket and
# proxy buffers) when the connection broke. A quarter of the ZIP, at most 16 MiB.
GRANT_MARGIN = 16 * 1024 * 1024


def today() -> dt.date:
    """The calendar day downloads are counted on (TIME_ZONE, Europe/Amsterdam); tests move it."""
    return timezone.localdate()


# --- the daily counter --------------------------------------------------------------------------------------


def daily_limit() -> int:
    return settings.RADSHARE.downloads_per_day


def downloads_left(share: Share) -> int:
    used = DownloadDay.objects.filter(share=share, day=today()).values_list("count", flat=True).first() or 0
    return max(daily_limit() - used, 0)


def count_download(share: Share) -> bool:
    """Count one download today if the limit allows (R5): one row per share and day, raised by a conditional
    UPDATE, so concurrent requests on any number of processes cannot pass the limit together. Call it inside a
    transaction (on PostgreSQL the row lock then holds until commit; SQLite writes one transaction at a time)."""
    day = today()
    DownloadDay.objects.get_or_create(share=share, day=day)  # a concurrent create: IntegrityError, then get
    raised = DownloadDay.objects.filter(share=share, day=day, count__lt=daily_limit()).update(
        count=F("count") + 1
    )
    return raised == 1


def lock_day(share: Share, day: dt.date) -> None:
    """Take the share's counter row for ``day`` (made if missing) for the rest of the transaction: one decision at
    a time per share and day (the row lock on PostgreSQL; SQLite transactions are IMMEDIATE, so writers queue
    already)."""
    DownloadDay.objects.get_or_create(share=share, day=day)
    list(DownloadDay.objects.select_for_update().filter(share=share, day=day).values_list("pk"))


def retry_locked[T](write: Callable[[], T]) -> T:
    """Run ``write`` (a transaction that counts), again when SQLite reports the database locked."""
    for attempt in range(LOCK_RETRIES):
        try:
            return write()
        except OperationalError as exc:
            if "locked" not in str(exc) or attempt == LOCK_RETRIES - 1:
                raise
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


# --- Range grants (A24) -------------------------------------------------------------------------------------


def grant_budget(size: int) -> int:
    return size + min(size // 4, GRANT_MARGIN)


def draw_grant(share: Share, session: str, etag: str, length: int) -> int | None:
    """Draw ``length`` bytes from a grant of the same session, ZIP (``etag``) and day (one conditional UPDATE, so
    concurrent ranges cannot overdraw it); the grant's id, or None when none has room."""
    grants = DownloadGrant.objects.filter(share=share, session_hash=session, etag=etag, day=today())
    for pk in grants.order_by("-pk").values_list("pk", flat=True)[:3]:
        drawn = DownloadGrant.objects.filter(pk=pk, drawn__lte=F("budget") - length).update(
            drawn=F("drawn") + length
        )
        if drawn:
            return pk
    return None


def open_grant(share: Share, session: str, etag: str, size: int, drawn: int) -> int:
    """The grant of a download just counted, of a ZIP of ``size`` bytes, ``drawn`` of them by this request; its id."""
    grant = DownloadGrant.objects.create(
        share=share, session_hash=session, etag=etag, day=today(), budget=grant_budget(size), drawn=drawn
    )
    return grant.pk


def refund_grant(grant: int, unsent: int) -> None:
    """What was not sent goes back to the grant: the client may ask for it again."""
    DownloadGrant.objects.filter(pk=grant).update(drawn=F("drawn") - unsent)
