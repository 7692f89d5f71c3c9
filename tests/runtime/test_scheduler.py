"""The periodic scheduler: each app's jobs are found, and each is enqueued once per period across workers."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from radshare.core.models import PeriodicJob
from radshare.core.tasks import Periodic
from radshare.runtime.scheduler import enqueue_due_periodic, periodic_jobs
from tests.core.test_tasks import add


def queued() -> list[DBTaskResult]:
    return list(DBTaskResult.objects.order_by("enqueued_at"))


def test_each_app_declares_its_own_periodic_jobs() -> None:
    jobs = {job.name: job for job in periodic_jobs()}
    assert set(jobs) == {
        "core.release_dead_workers",
        "core.prune_task_results",
        "core.sweep_incoming",
        "imaging.render_housekeeping",
        "shares.expire",
        "shares.destroy_studies",
        "notifications.housekeeping",
        "recipients.prune_login_rows",
        "studies.storage_held",
        "downloads.prune_grants",
        "api.report_refused_keys",
        "audit.checkpoint",
        "audit.prune",
    }
    # Each job's task lives in the app that declares it; only taking over dead workers runs inline.
    assert jobs["shares.expire"].task.module_path == "radshare.shares.tasks.expire_shares"
    assert [name for name, job in jobs.items() if job.inline] == ["core.release_dead_workers"]


JOB = Periodic("test.add", timedelta(hours=1), add)


@pytest.mark.django_db(transaction=True)
def test_periodic_job_is_enqueued_once_per_period() -> None:
    assert enqueue_due_periodic((JOB,)) == ["test.add"]
    assert enqueue_due_periodic((JOB,)) == []
    assert len(queued()) == 1
    job = PeriodicJob.objects.get(name="test.add")
    assert timedelta(minutes=59) < job.next_run_at - timezone.now() <= timedelta(hours=1)
    PeriodicJob.objects.filter(name="test.add").update(next_run_at=timezone.now() - timedelta(seconds=1))
    assert enqueue_due_periodic((JOB,)) == ["test.add"]
    assert len(queued()) == 2


@pytest.mark.django_db(transaction=True)
def test_periodic_job_is_enqueued_once_by_concurrent_workers() -> None:
    workers = 4
    barrier = threading.Barrier(workers)
    won: list[list[str]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait(timeout=10)
            won.append(enqueue_due_periodic((JOB,)))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert sorted(won) == [[]] * (workers - 1) + [["test.add"]]
    assert len(queued()) == 1
