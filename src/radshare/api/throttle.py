"""Refused API keys, throttled per client address across every web process (docs/security.md A11).

An address with ``LIMIT`` refused keys in the last ``WINDOW`` is answered 429 with Retry-After for every API
request, before any key is looked at, until enough of those failures have left the window. A key that works is
never counted. A key is 256 random bits, so the limit is not what keeps it from being guessed: it stops a scanner
or a misconfigured PACS from costing a key check, a database write and an audit entry per request, and makes it
visible. 20 in 10 minutes leaves a person setting up a PACS room for a few typing errors a minute.

The counts live in the database (``RefusedMinute``, one row per address and minute), so the limit holds however
many web processes share it, and the trail is not flooded: each row becomes one audit entry with the minute's
counts once that minute is over, written by the next refused request or by the periodic job (``tasks.py``),
whichever comes first.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone

from radshare.api.models import RefusedMinute
from radshare.audit.actions import Action
from radshare.audit.services import ActorType, Outcome, record
from radshare.core.net import client_address

LIMIT = 20
WINDOW = timedelta(minutes=10)
MINUTE = timedelta(minutes=1)
# A minute's row is reported this long after the minute ended: a request counted by another process in the
# minute's last moment (clocks a little apart) still lands before the row is closed.
SETTLE = timedelta(seconds=5)
KEEP = timedelta(days=1)  # reported rows, long past the window (the audit trail keeps the record)
FLUSH_BATCH = 500


def _minute(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0)


def retry_after(address: str) -> int | None:
    """Seconds until ``address`` may present keys again; None when it may now.

    The window is this minute and the nine before it: a minute's failures count until ten minutes after its start.
    """
    now = timezone.now()
    counts = (
        RefusedMinute.objects.filter(client_address=address, minute__gt=_minute(now) - WINDOW, failures__gt=0)
        .order_by("-minute")
        .values_list("minute", "failures")
    )
    total = 0
    for minute, failures in counts:
        total += failures
        if total >= LIMIT:  # this minute keeps the address at the limit until it leaves the window
            return max(1, math.ceil((minute + WINDOW - now).total_seconds()))
    return None


def count_failure(request: HttpRequest, reason: str) -> None:
    """A request refused for its key (wrong, revoked, missing or malformed)."""
    _count(request, failures=1, reason=reason)
    report_closed_minutes()


def count_throttled(request: HttpRequest) -> None:
    """A request refused unchecked, because its address is throttled."""
    _count(request, throttled=1, reason="")


def _count(request: HttpRequest, *, failures: int = 0, throttled: int = 0, reason: str) -> None:
    address = client_address(request)[:64]
    minute = _minute(timezone.now())
    user_agent = request.headers.get("user-agent", "")[:300]
    changes = {
        "failures": F("failures") + failures,
        "throttled": F("throttled") + throttled,
        "user_agent": user_agent,
        **({"reason": reason} if reason else {}),
    }
    row = RefusedMinute.objects.filter(client_address=address, minute=minute)
    if row.update(**changes):
        return
    try:
        with transaction.atomic():
            RefusedMinute.objects.create(
                client_address=address,
                minute=minute,
                failures=failures,
                throttled=throttled,
                reason=reason,
                user_agent=user_agent,
            )
    except IntegrityError:  # another process made the minute's row first
        row.update(**changes)


def report_closed_minutes(now: datetime | None = None) -> int:
    """One audit entry for each address's minute that is over and not yet reported; the number written.

    Each row is claimed by a conditional UPDATE in the transaction that writes its entry, so two processes never
    report the same minute, and a failed write (the audit fails closed) leaves it for the next try."""
    due_before = (now or timezone.now()) - MINUTE - SETTLE
    written = 0
    due = RefusedMinute.objects.filter(reported=False, minute__lte=due_before).order_by("minute")
    for pk in due.values_list("pk", flat=True)[:FLUSH_BATCH]:
        with transaction.atomic():
            if not RefusedMinute.objects.filter(pk=pk, reported=False).update(reported=True):
                continue  # another process reported it
            row = RefusedMinute.objects.get(pk=pk)
            record(
                Action.API_AUTH_THROTTLED if row.throttled else Action.API_AUTH_FAILED,
                outcome=Outcome.DENIED,
                actor_type=ActorType.ANONYMOUS,
                client=row.client_address,
                detail={
                    "minute": row.minute.isoformat(),
                    "failures": row.failures,
                    "throttled": row.throttled,
                    "reason": row.reason,
                    "user_agent": row.user_agent,
                },
            )
        written += 1
    return written


def prune(now: datetime | None = None) -> int:
    """Reported rows long past the window; the number deleted."""
    cutoff = (now or timezone.now()) - KEEP
    deleted, _ = RefusedMinute.objects.filter(reported=True, minute__lt=cutoff).delete()
    return deleted
