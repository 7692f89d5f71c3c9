"""The database restarts under a running ``radshare worker`` (docs/security.md R4, R6, R8).

A private PostgreSQL cluster of the test's own (initdb into a temporary folder, ``pg_ctl`` on a free port; the
machine's shared server is never touched) holds a radshare database with ten shares (e-mail delivery) whose renders
are still to be made. While the worker renders them, the cluster is stopped and, a few seconds later, started
again. The tasks that were running fail, are tried again, and nothing is lost: every share becomes ready, and every
recipient gets the e-mail exactly once (a real SMTP server, aiosmtpd on loopback).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.cli_runner import run_radshare
from tests.conftest import free_port, require
from tests.delivery.test_outbox import SmtpServer
from tests.runtime.processes import START_TIMEOUT, log_of, process_env, start, stop, wait_for

pytestmark = pytest.mark.postgres

SHARES = 10
IMAGES = 12  # per study: 120 renders, a second or two of work for one render process
SIZE = 256
DOWN_SECONDS = 3
FINISH_TIMEOUT = 90


def _postgres_program(name: str) -> str | None:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(found[-1]) if found else shutil.which(name)


@dataclass
class Cluster:
    """A PostgreSQL cluster of this test's own."""

    folder: Path
    port: int
    as_user: list[str]  # ``runuser -u postgres --`` when the test runs as root (initdb refuses root)
    pg_ctl: str

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "radshare") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.as_user, self.pg_ctl, "-D", str(self.data), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        done = self._pg_ctl("-o", options, "-l", str(self.folder / "server.log"), "-w", "start")
        assert done.returncode == 0, done.stderr + log_of(self.folder / "server.log")[-2000:]

    def stop(self, mode: str = "fast") -> None:
        done = self._pg_ctl("-m", mode, "-w", "stop")
        assert done.returncode == 0, done.stderr

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as conn:
            return list(conn.execute(sql, params).fetchall())


def _make_cluster(folder: Path) -> Cluster | str:
    """A cluster initialised and started in ``folder``, or why that cannot be done here."""
    initdb, pg_ctl = _postgres_program("initdb"), _postgres_program("pg_ctl")
    if initdb is None or pg_ctl is None:
        return "PostgreSQL's initdb and pg_ctl (/usr/lib/postgresql/*/bin)"
    as_user: list[str] = []
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            return "an OS user `postgres` to run initdb as (it refuses root)"
        if runuser is None:
            return "`runuser` to run initdb as the OS user postgres"
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        as_user = [runuser, "-u", "postgres", "--"]
    options = ["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"]
    init = subprocess.run(
        [*as_user, initdb, "-D", str(folder / "data"), *options],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if init.returncode != 0:
        return f"a private PostgreSQL cluster (initdb failed: {init.stderr.strip()[-300:]})"
    cluster = Cluster(folder, free_port(), as_user, pg_ctl)
    cluster.start()
    return cluster


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    # Not under pytest's tmp_path: the OS user postgres must be able to reach the folder.
    folder = Path(tempfile.mkdtemp(prefix="radshare-pg-"))
    try:
        made = _make_cluster(folder)
        require(isinstance(made, Cluster), made if isinstance(made, str) else "")
        assert isinstance(made, Cluster)
        with psycopg.connect(made.url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE radshare")
        yield made
        made._pg_ctl("-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# Run in `radshare shell` against the private cluster: the same services a sender's request runs.
SETUP = textwrap.dedent(
    """
    import datetime as dt
    from radshare.organisations.services import create_organisation
    from radshare.shares.services import create_share
    from radshare.studies.services import store_instance
    from radshare.studies.synthetic import FakePatient, ct_series, encode
    from radshare.studies.models import Study

    organisation = create_organisation("hospital-a", "Hospital A")
    for i in range({shares}):
        patient = FakePatient(f"DB-{{i:02d}}", f"Patient^{{i:02d}}", dt.date(1950 + i, 1, 2))
        for ds in ct_series(patient, count={images}, size={size}):
            result = store_instance(organisation, encode(ds), source="upload")
        study = Study.objects.get(study_instance_uid=result.study_instance_uid)
        create_share(
            organisation, [study.pk], recipient_type="patient", phone="0612345678",
            email=f"recipient{{i:02d}}@example.org", language="en",
        )
    """
).format(shares=SHARES, images=IMAGES, size=SIZE)


def address(i: int) -> str:
    return f"recipient{i:02d}@example.org"


def test_a_database_restart_under_a_worker_loses_nothing(
    cluster: Cluster, smtp: SmtpServer, tmp_path: Path
) -> None:
    env = process_env(
        tmp_path / "data",
        database=cluster.url(),
        email_url=f"smtp://127.0.0.1:{smtp.port}",
        render_processes="1",
    )
    migrated = run_radshare("migrate", "--verbosity", "0", env=env, timeout=180)
    assert migrated.returncode == 0, migrated.stderr
    made = run_radshare("shell", "-c", SETUP, env=env, timeout=180)
    assert made.returncode == 0, made.stderr

    def rendering() -> bool:
        rows = dict(cluster.query("SELECT status, count(*) FROM imaging_instancerender GROUP BY status"))
        return bool(rows.get("rendering")) and rows.get("pending", 0) >= 32  # more batches to come

    def shares_by_status() -> dict[str, int]:
        return dict(cluster.query("SELECT status, count(*) FROM shares_share GROUP BY status"))

    log = tmp_path / "worker.log"
    worker = start("worker", env=env, log=log)
    try:
        wait_for("the worker to render", rendering, START_TIMEOUT, worker)
        cluster.stop()
        stopped_at = time.monotonic()
        time.sleep(DOWN_SECONDS)
        cluster.start()
        assert worker.poll() is None, log_of(log)[-4000:]  # it waited for the database, it did not give up
        wait_for(
            "every share ready and its e-mail sent",
            lambda: shares_by_status() == {"notified": SHARES},
            FINISH_TIMEOUT,
            worker,
        )
        took = time.monotonic() - stopped_at
        time.sleep(2)  # room for a second copy of any e-mail to arrive
    finally:
        stop(worker)
    output = log_of(log)

    # The task that was running failed with the database; the worker waited for it and put the task back.
    assert "the database is away" in output, output[-4000:]
    assert re.search(r"the database is back; [1-9]\d* task\(s\) cut short went back to the queue", output)
    assert took < FINISH_TIMEOUT
    # Every share is ready, every render made, and each recipient got the e-mail exactly once.
    assert set(cluster.query("SELECT status, claimed_by FROM imaging_instancerender")) == {("done", "")}
    notifications = cluster.query("SELECT state, message_id FROM notifications_notification")
    assert len(notifications) == SHARES
    assert {state for state, _id in notifications} == {"sent"}
    received = Counter(rcpt for rcpts, _raw in smtp.inbox.messages for rcpt in rcpts)
    assert received == Counter({address(i): 1 for i in range(SHARES)})
    running = cluster.query(
        "SELECT count(*) FROM django_tasks_database_dbtaskresult WHERE status = 'RUNNING'"
    )
    assert running == [(0,)]
