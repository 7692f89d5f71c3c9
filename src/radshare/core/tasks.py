"""Task plumbing on top of ``django.tasks`` (backend django-tasks-db).

* ``enqueue_on_commit``: tasks see committed rows only (docs/architecture.md "How to add a feature").
* ``retry``: nothing retries a failed task for us, so a task that meets a transient error re-enqueues
  itself with exponential backoff through ``run_after`` and an ``attempt`` counter.
* ``Periodic``: each app declares its periodic jobs as ``PERIODIC`` in its own ``tasks.py`` (this module's are core's);
  the scheduler of ``radshare.runtime`` finds them there and enqueues each once per period across all workers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.tasks import Task, task
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from radshare.core import workers
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
    task: Task[..., Any]
    # Run by the scheduler itself instead of the queue: taking over the work of dead workers must not wait behind
    # the long task that keeps the live ones busy.
    inline: bool = False


# --- periodic housekeeping -----------------------------------------------------------------------

FINISHED_TASK_RETENTION = timedelta(days=7)
STALE_INCOMING = timedelta(hours=1)


@task()
def prune_task_results() -> int:
    """Delete finished task rows older than a week (the queue table would otherwise only grow)."""
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


PERIODIC: tuple[Periodic, ...] = (
    Periodic("core.release_dead_workers", timedelta(seconds=15), release_dead_workers, inline=True),
    Periodic("core.prune_task_results", timedelta(hours=6), prune_task_results),
    Periodic("core.sweep_incoming", timedelta(hours=1), sweep_incoming),
)
