"""Worker heartbeats: what a dead worker held (running tasks, render and retrieve claims) goes to the live ones.

The last test is the outside attack run's case: a real ``radshare worker`` is SIGKILLed in the middle of preparing
a share, and a second one makes the share ready (before: "preparing" for about 13 minutes).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection
from django.db.models.functions import Now
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from radshare.core import workers
from radshare.core.models import Worker
from radshare.core.storage import get_storage, instance_key
from radshare.core.tasks import PERIODIC
from radshare.core.workers import Heartbeat, release_dead_workers
from radshare.imaging import services as imaging
from radshare.imaging.models import InstanceRender
from radshare.imaging.tasks import render_pending
from radshare.shares.models import Share, ShareStudy
from radshare.shares.tasks import prepare_share
from tests.cli_runner import radshare_env
from tests.shares.helpers import ANNA, make_share, make_study

SECOND = timedelta(seconds=1)
logger = logging.getLogger(__name__)


@pytest.fixture(autouse=True)
def _no_current_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test process is no worker; a test that registers one does not leak it into the next."""
    monkeypatch.setattr(workers, "_current", None)


def _worker(worker_id: str, alive_for: timedelta) -> Worker:
    return Worker.objects.create(
        id=worker_id, host="node-1", pid=1, started_at=timezone.now(), alive_until=timezone.now() + alive_for
    )


def _running(worker_ids: list[str], path: str = render_pending.module_path) -> DBTaskResult:
    result = render_pending.enqueue()
    DBTaskResult.objects.filter(id=result.id).update(
        status=TaskResultStatus.RUNNING, worker_ids=worker_ids, task_path=path
    )
    return DBTaskResult.objects.get(id=result.id)


def test_the_reaper_runs_inline_every_15_seconds() -> None:
    [job] = [job for job in PERIODIC if job.name == "core.release_dead_workers"]
    assert job.inline
    assert job.every == timedelta(seconds=15)


@pytest.mark.django_db
def test_a_heartbeat_renews_the_lease_by_the_database_clock() -> None:
    heartbeat = Heartbeat("w1", timedelta(seconds=30))
    heartbeat.register()
    assert workers.current_worker_id() == "w1"
    row = Worker.objects.get()
    assert (row.host, row.pid) != ("", 0)
    assert timedelta(seconds=28) < row.alive_until - timezone.now() <= timedelta(seconds=31)
    Worker.objects.update(alive_until=timezone.now())
    heartbeat.beat()
    assert Worker.objects.get().alive_until > timezone.now() + timedelta(seconds=28)
    heartbeat.retire()
    assert workers.current_worker_id() == ""
    assert Worker.objects.filter(alive_until__lte=Now()).count() == 1  # ended: reaped at the next run


@pytest.mark.django_db
def test_a_lapsed_heartbeat_registers_again(caplog: pytest.LogCaptureFixture) -> None:
    heartbeat = Heartbeat("w1")
    heartbeat.register()
    Worker.objects.all().delete()  # others found it dead
    with caplog.at_level(logging.WARNING, logger="radshare.core.workers"):
        heartbeat.beat()
    assert Worker.objects.filter(id="w1").exists()
    assert "heartbeat lapsed" in caplog.text


@pytest.mark.django_db
def test_dead_workers_are_forgotten_and_their_tasks_and_claims_given_back(organisation: Any) -> None:
    _worker("dead", -SECOND)
    _worker("alive", timedelta(seconds=30))
    study = make_study(organisation, ANNA)
    share = make_share(organisation, [study]).share
    renders = list(InstanceRender.objects.filter(instance__series__study=study))
    InstanceRender.objects.filter(pk=renders[0].pk).update(status="rendering", claimed_by="dead")
    InstanceRender.objects.filter(pk=renders[1].pk).update(status="rendering", claimed_by="alive")
    ShareStudy.objects.filter(share=share).update(
        retrieve_claimed_at=timezone.now(), retrieve_claimed_by="dead"
    )
    DBTaskResult.objects.all().delete()
    taken_over = _running(["other", "dead"])
    still_running = _running(["alive"])
    poisoned = _running(["a", "b", "dead"], path=prepare_share.module_path)

    assert release_dead_workers() == 1

    assert set(Worker.objects.values_list("id", flat=True)) == {"alive"}
    statuses = dict(DBTaskResult.objects.values_list("id", "status"))
    assert statuses[taken_over.id] == TaskResultStatus.READY
    assert statuses[still_running.id] == TaskResultStatus.RUNNING
    assert statuses[poisoned.id] == TaskResultStatus.FAILED  # its workers died three times: not again
    released = InstanceRender.objects.get(pk=renders[0].pk)
    assert (released.status, released.claimed_by, released.claimed_at) == ("pending", "", None)
    assert InstanceRender.objects.get(pk=renders[1].pk).status == "rendering"
    assert ShareStudy.objects.filter(retrieve_claimed_at__isnull=True, retrieve_claimed_by="").count() == 1
    # A render is asked for the released claims (the requeued one counts: it has not started yet).
    assert DBTaskResult.objects.ready().filter(task_path=render_pending.module_path).exists()
    assert release_dead_workers() == 0  # nothing more to do


@pytest.mark.django_db
def test_no_one_is_declared_dead_by_a_worker_just_back_from_a_database_outage() -> None:
    _worker("dead", -SECOND)
    heartbeat = Heartbeat("me", timedelta(seconds=30))
    heartbeat.register()
    heartbeat._failed_at = time.monotonic()  # its last heartbeat did not reach the database
    assert release_dead_workers() == 0
    assert Worker.objects.filter(id="dead").exists()
    heartbeat._failed_at = time.monotonic() - 31  # renewed for a whole lease since
    assert release_dead_workers() == 1


@pytest.mark.django_db
def test_time_limits_apply_only_to_claims_made_outside_a_worker(organisation: Any) -> None:
    make_study(organisation, ANNA)
    long_ago = timezone.now() - timedelta(hours=1)
    first, second = InstanceRender.objects.order_by("pk")
    InstanceRender.objects.filter(pk=first.pk).update(status="rendering", claimed_at=long_ago)
    InstanceRender.objects.filter(pk=second.pk).update(
        status="rendering", claimed_at=long_ago, claimed_by="w1"
    )
    assert imaging.release_stale_claims() == 1
    assert InstanceRender.objects.get(pk=second.pk).status == "rendering"  # its worker's heartbeat decides


# --- a real worker killed in the middle of preparing a share ---------------------------------------------------

TAKEOVER_LIMIT = 60  # seconds; before: about 13 minutes (a 10-minute stale claim, then the poll delays)


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = quote(db["USER"]) + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _wait(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def start_worker(tmp_path: Path, settings: Any) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """``radshare worker`` processes on this test's database and storage, each in a process group of its own."""
    started: list[subprocess.Popen[bytes]] = []
    env = radshare_env(
        tmp_path / "data",
        database_url=_database_url(),
        storage_url=settings.RADSHARE.storage_url,
        secret_key=settings.RADSHARE.secret_key,
        render_processes="1",
        log_level="INFO",
    )

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        with (tmp_path / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "radshare", "worker", *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.mark.django_db(transaction=True)  # the workers are other processes: they see committed rows only
def test_a_killed_worker_s_share_is_taken_over_within_a_minute(
    organisation: Any, start_worker: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    study = make_study(organisation, ANNA)
    # The first image's storage hangs (a hard NFS mount that stopped answering, say): the render blocks reading it,
    # so the first worker is reliably in the middle of the share's preparation when it is killed.
    first = InstanceRender.objects.filter(instance__series__study=study).order_by("pk").first()
    assert first is not None
    stored = get_storage().local_path(instance_key(first.instance.storage_key))
    kept = stored.with_name("kept")
    stored.rename(kept)
    os.mkfifo(stored)
    share = make_share(organisation, [study], delivery="url").share

    doomed = start_worker("first", "--heartbeat-timeout", "4")
    claimer = _wait(
        "the first worker to claim the renders",
        lambda: (
            InstanceRender.objects.filter(pk=first.pk, status="rendering")
            .exclude(claimed_by="")
            .values_list("claimed_by", flat=True)
            .first()
        ),
        60,
    )
    os.killpg(doomed.pid, signal.SIGKILL)  # the worker and its render process, as a lost machine would
    doomed.wait(timeout=10)
    killed = time.monotonic()
    stored.unlink()
    kept.rename(stored)  # the storage answers again
    assert Share.objects.get(pk=share.pk).status == "preparing"
    assert DBTaskResult.objects.running().filter(task_path=render_pending.module_path).exists()

    start_worker("second")
    _wait(
        "the dead worker's claims to be given back",
        lambda: not InstanceRender.objects.filter(claimed_by=claimer).exists(),
        TAKEOVER_LIMIT,
    )
    released_after = time.monotonic() - killed
    _wait("the share to be ready", lambda: Share.objects.get(pk=share.pk).status == "ready", TAKEOVER_LIMIT)
    ready_after = time.monotonic() - killed
    assert ready_after < TAKEOVER_LIMIT
    assert not Worker.objects.filter(id=claimer).exists()
    # A re-queued task keeps its history of workers and may be running again on the second worker when the share
    # turns ready: what must not remain is a running task whose current worker is the dead one.
    assert not [r for r in DBTaskResult.objects.running() if r.worker_ids and r.worker_ids[-1] == claimer]
    assert InstanceRender.objects.filter(instance__series__study=study, status="done").count() == 2
    log = (tmp_path / "second.log").read_text(encoding="utf-8", errors="replace")
    assert "1 worker(s) stopped sending heartbeats" in log
    assert "Traceback" not in log, log[-4000:]
    logger.info("claims released %.1f s and share ready %.1f s after the kill", released_after, ready_after)
