from __future__ import annotations

import argparse
import contextlib
import logging
import threading
import time
from argparse import ArgumentParser
from datetime import timedelta
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand
from django.db import DatabaseError, close_old_connections, connection
from django.utils.crypto import get_random_string
from django_tasks_db.management.commands.db_worker import Worker

from radshare.core.workers import LEASE, Heartbeat, give_back_tasks_of
from radshare.imaging.services import shutdown_pool, start_render_processes
from radshare.runtime.scheduler import enqueue_due_periodic

logger = logging.getLogger("radshare.worker")

# How often the scheduler looks for due periodic jobs; the shortest period (taking over dead workers) is 15 s.
PERIODIC_POLL = 5.0
# Signals this close together are one stop: Ctrl-C reaches the whole process group of `radshare serve`, which
# then also sends its own SIGTERM. The task queue's worker takes a second signal as "abort the current task".
SAME_STOP_SECONDS = 2.0
# While the database is away, the worker looks again after 0.5 s, doubling up to 5 s.
DATABASE_RETRY_FIRST = 0.5
DATABASE_RETRY_MAX = 5.0


class _Worker(Worker):
    _stop_at: float | None = None

    def run(self) -> None:
        """django-tasks-db's loop ends at the first database error it does not expect. A database that is away for
        a while (a restart, a failover) must not end the worker: it waits for the database, puts back the task that
        was cut short (tasks can run again) and goes on (docs/security.md R8)."""
        while True:
            try:
                super().run()
            except DatabaseError:
                if not self.running:
                    return  # stopping anyway: the task cut short goes back once this worker's lease ends
                logger.warning("the database is away; the worker waits for it, then goes on")
                self.running_task = False
                self.startup_delay = False
                self._wait_for_database()
            else:
                return

    def _wait_for_database(self) -> None:
        delay = DATABASE_RETRY_FIRST
        while self.running:
            with contextlib.suppress(DatabaseError):
                connection.close()
            try:
                given_back = give_back_tasks_of(self.worker_id)
            except DatabaseError:
                time.sleep(delay)
                delay = min(delay * 2, DATABASE_RETRY_MAX)
            else:
                logger.warning(
                    "the database is back; %d task(s) cut short went back to the queue", given_back
                )
                return

    def shutdown(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if self._stop_at is not None and now - self._stop_at < SAME_STOP_SECONDS:
            return
        self._stop_at = self._stop_at or now
        super().shutdown(signum, frame)


def run_periodic(stop: threading.Event, interval: float) -> None:
    """Enqueue due periodic jobs every ``interval`` seconds until ``stop`` is set."""
    while not stop.is_set():
        close_old_connections()
        try:
            enqueue_due_periodic()
        except DatabaseError:
            logger.exception("cannot enqueue periodic jobs; will try again")
        finally:
            connection.close()
        stop.wait(interval)


def seconds(value: str) -> float:
    number = float(value)
    if not 1 <= number <= 3600:
        raise argparse.ArgumentTypeError("must be between 1 and 3600 seconds")
    return number


class Command(BaseCommand):
    help = "Run a task worker (django-tasks-db); any number may run on any number of machines."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--interval", type=float, default=0.5, help="seconds between polls when idle")
        parser.add_argument("--batch", action="store_true", help="run what is queued, then exit")
        parser.add_argument("--no-periodic", action="store_true", help="do not enqueue periodic jobs")
        parser.add_argument(
            "--heartbeat-timeout",
            type=seconds,
            default=LEASE.total_seconds(),
            help="seconds without a heartbeat from this worker after which the others take over its work "
            "(default %(default)s; it sends one every sixth of that)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        worker_id = get_random_string(32)
        heartbeat = Heartbeat(worker_id, timedelta(seconds=options["heartbeat_timeout"]))
        heartbeat.register()  # before the first claim: every claim names a registered worker
        beating = threading.Thread(target=heartbeat.run, args=(stop,), name="heartbeat", daemon=True)
        beating.start()
        if not options["no_periodic"] and not options["batch"]:
            threading.Thread(
                target=run_periodic, args=(stop, PERIODIC_POLL), name="periodic", daemon=True
            ).start()
        worker = _Worker(
            queue_names=["*"],
            interval=options["interval"],
            batch=options["batch"],
            backend_name="default",
            startup_delay=not options["batch"],
            max_tasks=None,
            worker_id=worker_id,
            excluded_queue_names=[],
        )
        worker.configure_signals()
        if not options["batch"]:
            start_render_processes()
        logger.info("worker started")
        try:
            worker.run()
        finally:
            stop.set()
            shutdown_pool()
            beating.join(timeout=5)
            heartbeat.retire()
