"""The periodic scheduler (docs/architecture.md "Processes"): each worker runs it in a thread; a job is enqueued
once per period across all workers.

Each app declares its own jobs as ``PERIODIC`` in its ``tasks.py`` (``radshare.core.tasks.Periodic``); the
scheduler finds them the way Django's admin finds ``admin.py`` modules, so no app names the apps above it.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module

from django.apps import apps
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import module_has_submodule

from radshare.core.models import PeriodicJob
from radshare.core.tasks import Periodic, enqueue_on_commit


@cache
def periodic_jobs() -> tuple[Periodic, ...]:
    """Every installed app's ``tasks.PERIODIC``, in the order of INSTALLED_APPS. Names are unique."""
    jobs: list[Periodic] = []
    for config in apps.get_app_configs():
        if config.module is not None and module_has_submodule(config.module, "tasks"):
            jobs.extend(getattr(import_module(f"{config.name}.tasks"), "PERIODIC", ()))
    names = [job.name for job in jobs]
    if len(names) != len(set(names)):
        raise RuntimeError(f"periodic job names must be unique: {sorted(names)}")
    return tuple(jobs)


def enqueue_due_periodic(jobs: tuple[Periodic, ...] | None = None) -> list[str]:
    """Enqueue (or run, when inline) every periodic job that is due; safe from any number of workers at once."""
    enqueued = []
    inline = []
    now = timezone.now()
    jobs = periodic_jobs() if jobs is None else jobs
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
                    enqueue_on_commit(job.task)
                enqueued.append(job.name)
    for job in inline:
        job.task.call()
    return enqueued
