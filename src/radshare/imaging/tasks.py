"""Background rendering (docs/architecture.md "Ingest path": renders are made at ingest, so sharing is quick)."""

from __future__ import annotations

from datetime import timedelta

from django.db import DatabaseError
from django.tasks import task

from radshare.core.tasks import Periodic, retry
from radshare.imaging import services


@task()
def render_pending(attempt: int = 0) -> int:
    """Render every pending instance in the worker's process pool; retried with backoff on database errors."""
    try:
        return services.render_pending_now()
    except DatabaseError:
        retry(render_pending, attempt=attempt)
        return 0


@task()
def render_housekeeping() -> int:
    """Periodic: give back stale claims made outside a worker, and make sure nothing due waits without a task
    (a render postponed by a full disk is asked for again once its delay has passed)."""
    released = services.release_stale_claims()
    if services.work_waiting():
        services.request_render()
    return released


PERIODIC = (Periodic("imaging.render_housekeeping", timedelta(minutes=1), render_housekeeping),)
