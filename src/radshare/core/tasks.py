"""Task plumbing on top of ``django.tasks`` (backend django-tasks-db).

* ``enqueue_on_commit``: tasks see committed rows only (docs/architecture.md "How to add a feature").
* ``retry``: nothing retries a failed task for us, so a task that meets a transient error re-enqueues
  itself with exponential backoff through ``run_after`` and an ``attempt`` counter.
* ``PERIODIC`` + ``enqueue_due_periodic``: the worker enqueues periodic work itself, once per period
  across all workers. An ``inline`` job runs in the scheduling thread instead of the queue: taking over the work
  of dead workers must not wait behind the long task that keeps the live ones busy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.tasks import Task, task
from django.utils import timezone

from radshare.core import workers
from radshare.core.models import PeriodicJob
from radshare.core.storage import get_storage

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BASE_DELAY = timedelta(seconds=10)
MAX_DELAY = timedelta(hours=1)


def enqueue_on_commit(task_obj: Task[..., Any], *args: Any, **kwargs: Any) -> None:
    """Enqueue once the surrounding transaction commits (immediately when there is none)."""
    transaction.on_commit(lambda: task_obj.enqueue(*args, **kwargs), robust=False)


def backoff(attempt: int) -> timedelta:
    """10 s, 20 s, 40 s, ... capped at one hour."""
    delay: timedelta = BASE_DELAY * (2 ** max(attempt, 0))
    return min(delay, MAX_DELAY)


def retry(task_obj: Task[..., Any], *args: Any, attempt: int, **kwargs: Any) -> bool:
    """Re-enqueue ``task_obj`` for attempt ``attempt + 1`` after a backoff. False when attempts ran out."""
    if attempt + 1 >= MAX_ATTEMPTS:
        logger.error("task %s gave up after %d attempts", task_obj.module_path, attempt + 1)
        return False
    delay = backoff(attempt)
    task_obj.using(run_after=timezone.now() + delay).enqueue(*args, attempt=attempt + 1, **kwargs)
    logger.warning(
        "task %s will retry in %ss (attempt %d)",
        task_obj.module_path,
        int(delay.total_seconds()),
        attempt + 2,
    )
    return True


@dataclass(frozen=True)
class Periodic:
    name: str
    every: timedelta
    task: Callable[[], Task[..., Any]]  # resolved lazily: tasks live in the apps
    inline: bool = False  # run by the scheduler itself (it must not wait in the queue), not enqueued


def enqueue_due_periodic(jobs: tuple[Periodic, ...] | None = None) -> list[str]:
    """Enqueue (or run, when inline) every periodic job that is due; safe from any number of workers at once."""
    enqueued = []
    inline = []
    now = timezone.now()
    jobs = PERIODIC if jobs is None else jobs
    # One read says what is due: the scheduler looks every few seconds, and usually nothing is.
    known = dict(
        PeriodicJob.objects.filter(name__in=[j.name for j in jobs]).values_list("name", "next_run_at")
    )
    for job in jobs:
        if job.name not in known:
            PeriodicJob.objects.get_or_create(name=job.name, defaults={"next_run_at": now})
        elif known[job.name] > now:
            continue
        with transaction.atomic():
            # The conditional UPDATE is the claim: only one worker sees rowcount 1 for this period.
            won = PeriodicJob.objects.filter(name=job.name, next_run_at__lte=now).update(
                next_run_at=now + job.every, last_enqueued_at=now
            )
            if won:
                if job.inline:
                    inline.append(job)
                else:
                    enqueue_on_commit(job.task())
                enqueued.append(job.name)
    for job in inline:
        job.task().call()
    return enqueued


# --- periodic housekeeping -----------------------------------------------------------------------

FINISHED_TASK_RETENTION = timedelta(days=7)
STALE_INCOMING = timedelta(hours=1)


@task()
def prune_task_results() -> int:
    """Delete finished task rows older than a week (the queue table would otherwise only grow)."""
    from django_tasks_db.models import DBTaskResult

    cutoff = timezone.now() - FINISHED_TASK_RETENTION
    deleted, _ = DBTaskResult.objects.finished().filter(finished_at__lt=cutoff).delete()
    return deleted


@task()
def sweep_incoming() -> int:
    """Remove half-written files a crash left in the storage's temporary area (never a committed instance)."""
    return get_storage().sweep_temporary(STALE_INCOMING)


@task()
def release_dead_workers() -> int:
    """Periodic (inline): what workers that stopped sending heartbeats held goes to the live ones (R4)."""
    return workers.release_dead_workers()


def _render_housekeeping() -> Task[..., Any]:
    from radshare.imaging.tasks import render_housekeeping

    return render_housekeeping


def _expire_shares() -> Task[..., Any]:
    from radshare.shares.tasks import expire_shares

    return expire_shares


def _prune_login_rows() -> Task[..., Any]:
    from radshare.recipients.tasks import prune_login_rows

    return prune_login_rows


def _notifications_housekeeping() -> Task[..., Any]:
    from radshare.delivery.tasks import notifications_housekeeping

    return notifications_housekeeping


PERIODIC: tuple[Periodic, ...] = (
    Periodic("core.release_dead_workers", timedelta(seconds=15), lambda: release_dead_workers, inline=True),
    Periodic("imaging.render_housekeeping", timedelta(minutes=1), _render_housekeeping),
    Periodic("shares.expire", timedelta(minutes=1), _expire_shares),
    Periodic("notifications.housekeeping", timedelta(minutes=5), _notifications_housekeeping),
    Periodic("recipients.prune_login_rows", timedelta(hours=6), _prune_login_rows),
    Periodic("core.prune_task_results", timedelta(hours=6), lambda: prune_task_results),
    Periodic("core.sweep_incoming", timedelta(hours=1), lambda: sweep_incoming),
)
