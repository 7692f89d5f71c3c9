"""Delivering the outbox in the background (docs/security.md R3)."""

from __future__ import annotations

from datetime import timedelta

from django.db import DatabaseError
from django.tasks import TaskContext, task

from radshare.core.tasks import Periodic, retry
from radshare.delivery import outbox
from radshare.delivery.models import Notification


@task(takes_context=True)
def deliver_notification(context: TaskContext[..., str], notification_pk: int, attempt: int = 0) -> str:
    """Send one notification (the outbox re-enqueues it after a temporary failure of the mail server/gateway)."""
    try:
        if context.attempt > 1:
            # Started before by a worker that died (core/workers.py gave the task back): the row it claimed is
            # still "sending" and nobody else sends it (docs/security.md R4); at least once, as the outbox says.
            Notification.objects.filter(pk=notification_pk, state=Notification.State.SENDING).update(
                state=Notification.State.PENDING, claimed_at=None
            )
        return outbox.deliver(notification_pk)
    except DatabaseError:
        retry(deliver_notification, notification_pk, attempt=attempt)
        return "retrying"


@task()
def notifications_housekeeping() -> int:
    """Periodic: put back messages a crashed worker left half-sent."""
    return outbox.requeue_stale()


PERIODIC = (Periodic("notifications.housekeeping", timedelta(minutes=5), notifications_housekeeping),)
