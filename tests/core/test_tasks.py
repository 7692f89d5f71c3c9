"""Task plumbing: enqueue on commit, retry with backoff, periodic work once per period, housekeeping tasks,
and ``radshare worker --batch`` running what is queued."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import transaction
from django.tasks import task
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from radshare.core.tasks import (
    MAX_ATTEMPTS,
    STALE_INCOMING,
    backoff,
    enqueue_on_commit,
    prune_task_results,
    retry,
    sweep_incoming,
)


@task()
def add(a: int, b: int, *, attempt: int = 0) -> int:
    """A task for these tests (the worker imports it by its module path)."""
    return a + b


def queued() -> list[DBTaskResult]:
    return list(DBTaskResult.objects.order_by("enqueued_at"))


@pytest.fixture
def restore_signals() -> Iterator[None]:
    """The worker installs its own SIGINT/SIGTERM handlers; give pytest its own back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.django_db(transaction=True)
def test_enqueue_on_commit_waits_for_the_commit() -> None:
    with transaction.atomic():
        enqueue_on_commit(add, 1, 2)
        assert queued() == []  # not even inside the transaction
    [result] = queued()
    assert result.task_path == f"{__name__}.add"
    assert result.args_kwargs == {"args": [1, 2], "kwargs": {}}


@pytest.mark.django_db(transaction=True)
def test_enqueue_on_commit_enqueues_nothing_on_rollback() -> None:
    def failing_work() -> None:
        with transaction.atomic():
            enqueue_on_commit(add, 1, 2)
            raise RuntimeError("the surrounding work failed")

    with pytest.raises(RuntimeError):
        failing_work()
    assert queued() == []
    enqueue_on_commit(add, 3, 4)  # no transaction: at once
    assert [r.args_kwargs["args"] for r in queued()] == [[3, 4]]


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n).total_seconds() for n in range(4)] == [10, 20, 40, 80]
    assert backoff(30) == timedelta(hours=1)
    assert backoff(-3) == timedelta(seconds=10)


@pytest.mark.django_db
def test_retry_enqueues_the_next_attempt_after_the_backoff() -> None:
    before = timezone.now()
    assert retry(add, 1, 2, attempt=2) is True
    after = timezone.now()
    [result] = queued()
    assert result.task_path == f"{__name__}.add"
    assert result.args_kwargs == {"args": [1, 2], "kwargs": {"attempt": 3}}
    assert before + backoff(2) <= result.run_after <= after + backoff(2)
    assert not DBTaskResult.objects.ready().exists()  # not due yet


@pytest.mark.django_db
def test_retry_gives_up_after_max_attempts() -> None:
    assert retry(add, 1, 2, attempt=MAX_ATTEMPTS - 2) is True
    assert retry(add, 1, 2, attempt=MAX_ATTEMPTS - 1) is False
    assert [r.args_kwargs["kwargs"]["attempt"] for r in queued()] == [MAX_ATTEMPTS - 1]


def _age(path: Path, age: timedelta) -> None:
    then = time.time() - age.total_seconds()
    os.utime(path, (then, then))


def test_sweep_incoming_removes_only_stale_partial_files(storage_root: Path) -> None:
    root = storage_root
    incoming = root / "incoming"
    incoming.mkdir(parents=True)
    stale = incoming / "crashed.part"
    fresh = incoming / "arriving.part"
    other = incoming / "not-ours.dcm"
    for path in (stale, fresh, other):
        path.write_bytes(b"DICM")
    _age(stale, STALE_INCOMING + timedelta(minutes=1))
    _age(other, STALE_INCOMING + timedelta(minutes=1))
    instance = root / "instances" / "ab" / "cd" / "old.dcm"
    instance.parent.mkdir(parents=True)
    instance.write_bytes(b"DICM")
    _age(instance, timedelta(days=30))
    assert sweep_incoming.call() == 1
    assert not stale.exists()
    assert fresh.exists()
    assert other.exists()
    assert instance.exists()


def test_sweep_incoming_without_incoming_folder() -> None:
    assert sweep_incoming.call() == 0


@pytest.mark.django_db
def test_prune_task_results_deletes_only_old_finished_rows() -> None:
    old_done = add.enqueue(1, 1)
    new_done = add.enqueue(2, 2)
    old_waiting = add.enqueue(3, 3)
    long_ago = timezone.now() - timedelta(days=8)
    DBTaskResult.objects.filter(id__in=[old_done.id, new_done.id]).update(
        status="SUCCESSFUL", finished_at=timezone.now()
    )
    DBTaskResult.objects.filter(id=old_done.id).update(finished_at=long_ago)
    DBTaskResult.objects.filter(id=old_waiting.id).update(enqueued_at=long_ago)
    assert prune_task_results.call() == 1
    assert {str(pk) for pk in DBTaskResult.objects.values_list("id", flat=True)} == {
        new_done.id,
        old_waiting.id,
    }


@pytest.mark.django_db(transaction=True)  # the worker manages its own connection and transactions
def test_worker_batch_runs_queued_tasks(restore_signals: None, storage_root: Path) -> None:
    incoming = storage_root / "incoming"
    incoming.mkdir(parents=True)
    crashed = incoming / "crashed.part"
    crashed.write_bytes(b"DICM")
    _age(crashed, STALE_INCOMING * 2)
    summed = add.enqueue(20, 22)
    swept = sweep_incoming.enqueue()
    later = add.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(1, 1)
    call_command("worker", "--batch")
    results = {str(r.id): r for r in DBTaskResult.objects.all()}
    assert (results[summed.id].status, results[summed.id].return_value) == ("SUCCESSFUL", 42)
    assert (results[swept.id].status, results[swept.id].return_value) == ("SUCCESSFUL", 1)
    assert results[later.id].status == "READY"  # not due: left for later
    assert not crashed.exists()
