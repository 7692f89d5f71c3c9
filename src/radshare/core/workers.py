"""Worker heartbeats: the work of a worker that died (killed, machine lost) is taken over within a minute.

Each ``radshare worker`` process registers a ``Worker`` row and renews its lease every sixth of the lease (5 s by
default). Claims carry the claiming worker's id: a render, a PACS retrieve, and the django-tasks-db task it runs
(whose ``worker_ids`` name it). ``release_dead_workers`` runs every 15 s in one of the workers: it gives the
running tasks of workers whose lease ran out back to the queue, lets each app give back its own claims through
the ``worker_died`` signal, and then deletes those rows (docs/security.md R4: nothing waits on a dead worker,
and a task still never runs twice at once for the same share, because the worker that held it is gone).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from datetime import timedelta

from django.db import DatabaseError, close_old_connections, connection, transaction
from django.db.models.functions import Now
from django.dispatch import Signal
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from radshare.core.models import Worker

logger = logging.getLogger(__name__)

LEASE = timedelta(seconds=30)
BEATS_PER_LEASE = 6  # a heartbeat every 5 s with the default lease: two may be lost before others take over
# A task whose worker died this many times is not started again: it is more likely the cause than the victim.
MAX_TASK_TAKEOVERS = 3

# Sent with ``worker_ids`` (workers found dead); receivers give back what those workers had claimed.
worker_died = Signal()

_current: Heartbeat | None = None


def current_worker_id() -> str:
    """The id of this process's worker, or "" outside a worker (its claims then fall back to a time limit)."""
    return _current.worker_id if _current is not None else ""


class Heartbeat:
    """The lease of one worker process, renewed from a thread of its own (``run``)."""

    def __init__(self, worker_id: str, lease: timedelta = LEASE) -> None:
        self.worker_id = worker_id
        self.lease = lease
        self.interval = lease.total_seconds() / BEATS_PER_LEASE
        self._failed_at: float | None = (
            None  # monotonic time of the last heartbeat that did not reach the database
        )

    def register(self) -> None:
        """Announce this worker before it claims anything; it then counts as the current one."""
        global _current
        Worker.objects.update_or_create(
            id=self.worker_id,
            defaults={
                "host": socket.gethostname()[:255],
                "pid": os.getpid(),
                "started_at": timezone.now(),
                "alive_until": Now() + self.lease,
            },
        )
        _current = self

    def beat(self) -> None:
        if not Worker.objects.filter(id=self.worker_id).update(alive_until=Now() + self.lease):
            # Our lease ran out (the process stood still, or the database was away) and others took our work.
            logger.warning("this worker's heartbeat lapsed; other workers may have taken over its work")
            self.register()

    def run(self, stop: threading.Event) -> None:
        """Renew the lease until ``stop`` is set; a database that is away is retried, and logged once."""
        while not stop.is_set():
            close_old_connections()
            try:
                self.beat()
            except DatabaseError:
                if self._failed_at is None:
                    logger.warning(
                        "cannot reach the database to renew this worker's heartbeat; will try again"
                    )
                self._failed_at = time.monotonic()
            finally:
                connection.close()
            stop.wait(self.interval)

    @property
    def steady(self) -> bool:
        """True once the heartbeat has reached the database for a whole lease. After an outage every lease may
        have run out: waiting a lease lets the live workers renew theirs before anyone is declared dead."""
        failed = self._failed_at
        return failed is None or time.monotonic() - failed >= self.lease.total_seconds()

    def retire(self) -> None:
        """A clean stop: the lease ends now, so anything left behind is given back by the next release run."""
        global _current
        if _current is self:
            _current = None
        try:
            Worker.objects.filter(id=self.worker_id).update(alive_until=Now())
        except DatabaseError:
            logger.warning("cannot reach the database to end this worker's lease; it runs out by itself")


def _requeue_tasks(dead: Sequence[str]) -> int:
    """Running tasks of dead workers go back to the queue; tasks are idempotent (docs/security.md R4)."""
    requeued = 0
    for result in DBTaskResult.objects.running().only("id", "task_path", "worker_ids"):
        if not result.worker_ids or result.worker_ids[-1] not in dead:
            continue
        running = DBTaskResult.objects.filter(id=result.id, status=TaskResultStatus.RUNNING)
        if len(result.worker_ids) >= MAX_TASK_TAKEOVERS:
            running.update(
                status=TaskResultStatus.FAILED,
                finished_at=timezone.now(),
                exception_class_path="radshare.core.workers.WorkerDied",
                traceback=f"the workers running this task died {len(result.worker_ids)} times; not started again",
            )
            logger.error(
                "task %s given up: its workers died %d times", result.task_path, len(result.worker_ids)
            )
        else:
            requeued += running.update(status=TaskResultStatus.READY)
    return requeued


def give_back_tasks_of(worker_id: str) -> int:
    """The tasks a live worker was running when the database went away: those runs were cut short, so the tasks go
    back to the queue, as a dead worker's do (docs/security.md R4, R8)."""
    with transaction.atomic():
        return _requeue_tasks([worker_id])


def release_dead_workers() -> int:
    """Give back everything held by workers whose lease ran out, then forget them; returns how many died."""
    if _current is not None and not _current.steady:
        return 0
    dead = dict(Worker.objects.filter(alive_until__lt=Now()).values_list("id", "host"))
    if not dead:
        return 0
    with transaction.atomic():
        tasks = _requeue_tasks(list(dead))
    failed = False
    for receiver, result in worker_died.send_robust(sender=Worker, worker_ids=list(dead)):
        if isinstance(result, Exception):
            failed = True  # the rows stay: the next run tries again
            logger.error("cannot give back the claims of dead workers (%r)", receiver, exc_info=result)
    if failed:
        return 0
    Worker.objects.filter(id__in=list(dead), alive_until__lt=Now()).delete()
    logger.warning(
        "%d worker(s) stopped sending heartbeats (on %s); %d running task(s) and their claims were given back",
        len(dead),
        ", ".join(sorted(set(dead.values()))),
        tasks,
    )
    return len(dead)
