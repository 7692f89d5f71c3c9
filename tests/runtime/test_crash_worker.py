"""``kill -9`` of one of two real ``radshare worker`` processes while shares are being prepared (docs/security.md R3,
R4), on PostgreSQL.

Twenty shares (e-mail delivery) wait for their studies' renders; the two workers render them and deliver the
e-mails to a real SMTP server (aiosmtpd on loopback). One worker is killed, with its render process, while it holds
claims. The other takes its claims over once its heartbeat has lapsed, and in the end every share is ready and its
recipient got the e-mail exactly once.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from radshare.core.models import Worker
from radshare.delivery.models import Notification
from radshare.imaging.models import InstanceRender
from radshare.shares.models import Share
from radshare.studies.models import Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import FakePatient, ct_series, encode
from tests.conftest import require
from tests.delivery.test_outbox import SmtpServer
from tests.runtime.processes import (
    START_TIMEOUT,
    is_postgres,
    kill,
    log_of,
    process_env,
    start,
    stop,
    wait_for,
)
from tests.shares.helpers import make_share

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SHARES = 20
IMAGES = 8  # per study: 160 renders in all, a few seconds of work for two render processes
SIZE = 256
HEARTBEAT_TIMEOUT = "3"  # seconds: the dead worker's claims are taken over within about 20 s
# Takeover: the lease (3 s), then the next run of core.release_dead_workers (every 15 s, looked for every 5 s).
FINISH_TIMEOUT = 90


def address(i: int) -> str:
    return f"recipient{i:02d}@example.org"


def make_shares(organisation: Any) -> list[Share]:
    """One share per patient, each of a study of its own whose renders are all still to be made."""
    shares = []
    for i in range(SHARES):
        patient = FakePatient(f"CRASH-{i:02d}", f"Patient^{i:02d}", dt.date(1950 + i, 1, 2))
        for ds in ct_series(patient, count=IMAGES, size=SIZE):
            result = store_instance(organisation, encode(ds), source="upload")
        study = Study.objects.get(organisation=organisation, study_instance_uid=result.study_instance_uid)
        shares.append(make_share(organisation, [study], email=address(i), language="en").share)
    return shares


def start_workers(tmp_path: Path, smtp: SmtpServer, count: int) -> list[Any]:
    procs = []
    for n in range(count):
        env = process_env(
            tmp_path / f"worker{n}",
            email_url=f"smtp://127.0.0.1:{smtp.port}",
            render_processes="1",
        )
        procs.append(
            start(
                "worker", "--heartbeat-timeout", HEARTBEAT_TIMEOUT, env=env, log=tmp_path / f"worker{n}.log"
            )
        )
    return procs


def holding_claims(procs: list[Any]) -> tuple[Any, str] | None:
    """A worker that is rendering now, with plenty left to render: (its process, its worker id)."""
    if InstanceRender.objects.filter(status="pending").count() < 2 * 32:
        return None  # less than two batches left: it may be about to stop rendering
    pids = {proc.pid: proc for proc in procs}
    claimers = set(InstanceRender.objects.filter(status="rendering").values_list("claimed_by", flat=True))
    for worker_id, pid in Worker.objects.filter(id__in=claimers).values_list("id", "pid"):
        if pid in pids:
            return pids[pid], worker_id
    return None


def all_notified() -> bool:
    return not Share.objects.exclude(status=Share.Status.NOTIFIED).exists()


def test_a_killed_worker_loses_nothing_and_no_email_goes_twice(
    organisation: Any, smtp: SmtpServer, tmp_path: Path
) -> None:
    require(is_postgres(), "PostgreSQL (RADSHARE_DATABASE_URL=postgres://...)")
    shares = make_shares(organisation)
    procs = start_workers(tmp_path, smtp, 2)
    try:
        victim, victim_id = wait_for(
            "a worker rendering", lambda: holding_claims(procs), START_TIMEOUT, *procs
        )
        kill(victim)  # with its render process: a crash, mid-batch
        held = InstanceRender.objects.filter(status="rendering", claimed_by=victim_id).count()
        survivor = next(proc for proc in procs if proc is not victim)
        wait_for("every share ready and its e-mail sent", all_notified, FINISH_TIMEOUT, survivor)
        time.sleep(2)  # room for a second copy of any e-mail to arrive
    finally:
        for proc in procs:
            stop(proc)
    survivor_log = log_of(tmp_path / f"worker{procs.index(survivor)}.log")

    # The dead worker held renders when it died: they were given back and made by the other.
    assert held > 0
    assert not Worker.objects.filter(id=victim_id).exists()
    assert "1 worker(s) stopped sending heartbeats" in survivor_log, survivor_log[-3000:]
    assert set(InstanceRender.objects.values_list("status", "claimed_by")) == {("done", "")}
    # Every share ready, and each recipient's e-mail sent exactly once, with its own stable Message-ID.
    assert Share.objects.filter(status=Share.Status.NOTIFIED, ready_at__isnull=False).count() == SHARES
    received = Counter(rcpt for rcpts, _raw in smtp.inbox.messages for rcpt in rcpts)
    assert received == Counter({address(i): 1 for i in range(SHARES)})
    notifications = Notification.objects.filter(kind="share_link")
    assert set(notifications.values_list("state", flat=True)) == {"sent"}
    assert notifications.count() == SHARES
    message_ids = [
        email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"]  # type: ignore[arg-type]
        for _rcpts, raw in smtp.inbox.messages
    ]
    assert sorted(message_ids) == sorted(notifications.values_list("message_id", flat=True))
    assert {s.pk for s in shares} == set(notifications.values_list("share_id", flat=True))
    assert "Traceback" not in survivor_log, survivor_log[-3000:]
