"""Delivering the outbox in the background (SECURITY.md R3)."""

from __future__ import annotations

from django.db import DatabaseError
from django.tasks import task

from radshare.core.tasks import retry
from radshare.notifications import outbox


@task()
def deliver_notification(notification_pk: int, attempt: int = 0) -> str:
    """Send one notification (the outbox re-enqueues it after a temporary failure of the mail server/gateway)."""
    try:
        return outbox.deliver(notification_pk)
    except DatabaseError:
        retry(deliver_notification, notification_pk, attempt=attempt)
        return "retrying"


@task()
def notifications_housekeeping() -> int:
    """Periodic: put back messages a crashed worker left half-sent."""
    return outbox.requeue_stale()
