"""``radshare status``: the readiness checks of ``/readyz`` as a table an operator reads, with what is waiting.

Exit code 0 when every part works, 1 when one fails (for cron or a monitoring agent).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from django.db.models import Count, Min
from django.utils import timezone

from radshare.core.health import DATABASE, Readiness, check_readiness, format_age
from radshare.delivery.models import Notification
from radshare.shares.destruction import next_retention_end
from radshare.shares.models import Share
from radshare.studies.indexer import backlogs


class Command(BaseCommand):
    help = (
        "Print whether each part works (database, storage, worker, queue, DICOM SCP) as /readyz checks it, the "
        "shares by status, failed notifications and the next destruction due; exit code 1 when a part fails."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        readiness = check_readiness()
        self._parts(readiness)
        self.stdout.write("")
        if readiness.check(DATABASE).ok:
            try:
                rows = _summary(timezone.now())
            except DatabaseError as exc:
                rows = [("counts", f"not available: {exc}")]
        else:
            rows = [("counts", "not available: the database does not answer")]
        width = max(len(label) for label, _ in rows)
        for label, value in rows:
            self.stdout.write(f"{label.ljust(width)}  {value}")
        stuck = self._journals() if readiness.check(DATABASE).ok else []
        if not readiness.ok:
            raise CommandError(f"not ready: {', '.join(readiness.failing)}", returncode=1)
        if stuck:
            raise CommandError(f"journal not filed: {', '.join(stuck)}", returncode=1)

    def _journals(self) -> list[str]:
        """Journal mode: what each journal folder on this machine still has to file; the stuck ones' names."""
        now = timezone.now()
        stuck = []
        for backlog in backlogs(Path(settings.RADSHARE.data_dir) / "journal"):
            state = "nothing waiting"
            if backlog.waiting_bytes:
                state = f"{backlog.waiting_bytes / 1e6:.1f} MB waiting"
            if backlog.last_filed is not None:
                state += f", last filed {format_age(now - backlog.last_filed)} ago"
            if backlog.held:
                state += f"; {backlog.held} held images (`radshare held`)"
            if backlog.stuck(now):
                stuck.append(backlog.folder)
                state = self.style.ERROR(state)
            self.stdout.write(f"journal {backlog.folder}  {state}")
        return stuck

    def _parts(self, readiness: Readiness) -> None:
        rows = [("part", "state", "detail")] + [
            (check.part, "ok" if check.ok else "failing", check.detail) for check in readiness.checks
        ]
        part_width = max(len(part) for part, _, _ in rows)
        state_width = max(len(state) for _, state, _ in rows)
        for part, state, detail in rows:
            shown = state.ljust(state_width)
            if state == "failing":
                shown = self.style.ERROR(shown)
            self.stdout.write(f"{part.ljust(part_width)}  {shown}  {detail}")


def _summary(now: dt.datetime) -> list[tuple[str, str]]:
    """Shares by status, failed notifications, and when the next share ends and the next unshared study's
    retention runs out (four queries)."""
    by_status = dict(Share.objects.order_by().values_list("status").annotate(count=Count("id")))
    shares = ", ".join(
        f"{status.value} {by_status[status.value]}" for status in Share.Status if by_status.get(status.value)
    )
    failed = Notification.objects.filter(state=Notification.State.FAILED).count()
    next_expiry = Share.objects.live(now).aggregate(at=Min("expires_at"))["at"]
    return [
        ("shares", shares or "none"),
        ("failed notifications", str(failed)),
        ("next share expiry", _when(next_expiry, now)),
        ("next unshared study retention end", _when(next_retention_end(now), now)),
    ]


def _when(at: dt.datetime | None, now: dt.datetime) -> str:
    if at is None:
        return "none"
    shown = timezone.localtime(at).strftime("%Y-%m-%d %H:%M %Z")
    if at >= now:
        return f"{shown} (in {format_age(at - now)})"
    return f"{shown} ({format_age(now - at)} overdue)"
