from __future__ import annotations

import logging
import threading
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand
from django.db import DatabaseError, close_old_connections, connection
from django.utils.crypto import get_random_string
from django_tasks_db.management.commands.db_worker import Worker

from radshare.core.tasks import enqueue_due_periodic
from radshare.imaging.services import shutdown_pool

logger = logging.getLogger("radshare.worker")


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


class Command(BaseCommand):
    help = "Run a task worker (django-tasks-db); any number may run on any number of machines."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--interval", type=float, default=0.5, help="seconds between polls when idle")
        parser.add_argument("--batch", action="store_true", help="run what is queued, then exit")
        parser.add_argument("--no-periodic", action="store_true", help="do not enqueue periodic jobs")

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        if not options["no_periodic"] and not options["batch"]:
            threading.Thread(target=run_periodic, args=(stop, 30.0), name="periodic", daemon=True).start()
        worker = Worker(
            queue_names=["*"],
            interval=options["interval"],
            batch=options["batch"],
            backend_name="default",
            startup_delay=not options["batch"],
            max_tasks=None,
            worker_id=get_random_string(32),
            excluded_queue_names=[],
        )
        worker.configure_signals()
        logger.info("worker started")
        try:
            worker.run()
        finally:
            stop.set()
            shutdown_pool()
