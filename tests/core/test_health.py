"""Readiness (``/readyz``): 200 when every part works, 503 naming the part that does not, never hanging.

Real parts: radshare's storage SCP on a free loopback port, a worker's real heartbeat, real task rows, the real
storage, and for the database a real ``radshare web`` whose SQLite database another process locks, then loses.
The checks read through a connection of their own, so the tests commit for real (``transactional_db``).
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import stat
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from radshare.audit.models import AuditEvent
from radshare.core import health, workers
from radshare.core.health import (
    CHECK_TIMEOUT,
    PARTS,
    QUEUE_WAIT,
    WORKER_SILENCE,
    Check,
    check_readiness,
    check_scp,
    database_checks,
    format_age,
)
from radshare.core.storage import get_storage
from radshare.core.tasks import prune_task_results
from radshare.core.workers import Heartbeat
from radshare.organisations.services import add_pacs_node
from radshare.studies.scp import StorageSCP
from tests.cli_runner import migrated_data_dir, radshare_env, start_radshare, stop_group
from tests.conftest import free_port
from tests.runtime.test_serve import START_TIMEOUT, c_echo, healthz, wait_for

ALL_OK = {"status": "ok", "failing": [], "checks": dict.fromkeys(PARTS, "ok")}


@pytest.fixture(autouse=True)
def _fresh_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test process is no worker, and what was logged as failing before is forgotten."""
    monkeypatch.setattr(workers, "_current", None)
    monkeypatch.setattr(health, "_logged_failing", ())


@pytest.fixture
def heartbeat(transactional_db: None) -> Heartbeat:
    """A worker that has just sent its heartbeat (the real registration of ``radshare worker``)."""
    beat = Heartbeat("readiness-test")
    beat.register()
    return beat


def readyz(client: Client) -> tuple[int, dict[str, Any]]:
    response = client.get("/readyz")
    return response.status_code, response.json()


def failing_with(client: Client, part: str) -> Check:
    """/readyz answers 503 naming ``part`` alone; the check's detail (what ``radshare status`` prints)."""
    status, body = readyz(client)
    assert (status, body["status"], body["failing"]) == (503, "unavailable", [part]), body
    assert body["checks"] == {p: "failing" if p == part else "ok" for p in PARTS}
    return check_readiness().check(part)


def file_modes_bind() -> bool:
    """Whether a read-only folder stops this process (not so for root with CAP_DAC_OVERRIDE)."""
    with tempfile.TemporaryDirectory() as folder:
        Path(folder).chmod(stat.S_IRUSR | stat.S_IXUSR)
        try:
            (Path(folder) / "probe").touch()
        except PermissionError:
            return True
        finally:
            Path(folder).chmod(stat.S_IRWXU)
        return False


@pytest.mark.django_db(transaction=True)  # the checks read through a connection of their own
@pytest.mark.usefixtures("scp", "heartbeat")
def test_ready_when_every_part_works(client: Client) -> None:
    assert readyz(client) == (200, ALL_OK)
    readiness = check_readiness()
    assert readiness.ok
    assert readiness.check("worker").detail.startswith("last heartbeat ")
    assert readiness.check("scp").detail.endswith("accepts connections")
    assert list(get_storage().iterate()) == []  # the probe was deleted
    assert not AuditEvent.objects.exists()  # the SCP saw a connection, not an association to audit


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("scp")
def test_a_stopped_worker_fails_readiness_two_minutes_after_its_last_heartbeat(
    client: Client, heartbeat: Heartbeat
) -> None:
    heartbeat.retire()  # a clean stop: the lease ends now
    assert readyz(client) == (200, ALL_OK)  # its last heartbeat is recent (a restart takes seconds)
    with time_machine.travel(timezone.now() + WORKER_SILENCE, tick=True):
        check = failing_with(client, "worker")
    assert check.detail.startswith("last heartbeat 2 min ago; 0 worker(s) with a live lease")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("scp")
def test_no_worker_at_all_fails_readiness(client: Client) -> None:
    check = failing_with(client, "worker")
    assert check.detail == "no worker is registered (none started, or all stopped)"
    assert client.get("/healthz").json() == {"status": "ok"}  # liveness stays a bare answer


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("scp", "heartbeat")
def test_a_task_ready_for_five_minutes_fails_readiness(client: Client) -> None:
    waiting = prune_task_results.enqueue()
    backing_off = prune_task_results.using(run_after=timezone.now() + timedelta(hours=1)).enqueue()
    assert readyz(client) == (200, ALL_OK)
    assert re.fullmatch(
        r"oldest ready task waiting \d s \(1 ready\)", check_readiness().check("queue").detail
    )

    # No worker took it for five minutes (the one whose heartbeat we see is stuck behind something else).
    DBTaskResult.objects.filter(id=waiting.id).update(
        enqueued_at=timezone.now() - QUEUE_WAIT - timedelta(seconds=5)
    )
    check = failing_with(client, "queue")
    assert check.detail == "oldest ready task waiting 5 min (1 ready)"

    # A retry counts from the end of its backoff, not from when it was enqueued.
    DBTaskResult.objects.filter(id=waiting.id).delete()
    DBTaskResult.objects.filter(id=backing_off.id).update(
        enqueued_at=timezone.now() - timedelta(hours=2), run_after=timezone.now() - timedelta(minutes=3)
    )
    assert readyz(client) == (200, ALL_OK)
    assert check_readiness().check("queue").detail == "oldest ready task waiting 3 min (1 ready)"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("heartbeat")
def test_a_stopped_scp_fails_readiness(client: Client, radshare_config: Any) -> None:
    port = free_port()
    # Configured to listen on every interface: readiness connects to loopback. (The test's SCP listens on loopback
    # only, so that nothing outside this machine can reach it.)
    radshare_config(dicom_bind="0.0.0.0", dicom_port=port)  # noqa: S104
    server = StorageSCP(bind="127.0.0.1", port=port)
    server.start(block=False)
    try:
        assert readyz(client) == (200, ALL_OK)
    finally:
        server.shutdown()
    check = failing_with(client, "scp")
    assert check.detail == f"nothing accepts connections on 127.0.0.1:{port} (Connection refused)"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("heartbeat")
def test_polling_readiness_leaves_the_scp_every_association_for_senders(
    radshare_config: Any, organisation: Any
) -> None:
    """Each check opens a TCP connection and closes it without asking for an association. pynetdicom would keep
    such a connection's thread waiting for the request for 30 s, counted against the SCP's associations; the
    SCP ends it at once, so polling every few seconds never turns a sender away."""
    add_pacs_node(organisation, "MODALITY")
    port = free_port()
    radshare_config(dicom_bind="127.0.0.1", dicom_port=port, dicom_max_associations=1)
    server = StorageSCP(port=port)
    server.start(block=False)
    try:
        for _ in range(5):
            assert check_scp().ok
        # Under load the server may take up a poll's closed connection only after the last poll returned: wait
        # until no association has been open for half a second.
        deadline, quiet_since = time.monotonic() + 5, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since < 0.5:
            if server.server.active_associations:
                quiet_since = time.monotonic()
            time.sleep(0.05)
        assert server.server.active_associations == []
        assert c_echo(port, calling="MODALITY")
    finally:
        server.shutdown()
    assert not AuditEvent.objects.exists()  # no association was asked for, so none was rejected


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("scp", "heartbeat")
def test_storage_that_cannot_be_written_fails_readiness(
    client: Client, radshare_config: Any, tmp_path: Path
) -> None:
    """Root (as these tests run in CI's containers) writes into read-only folders, so a read-only folder proves
    nothing there. A storage folder below a regular file refuses every write to everyone, root included: what a
    mount point replaced by a file, or a wrong ``RADSHARE_STORAGE_URL``, does to a real installation."""
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    radshare_config(storage_url=f"file://{blocker}/storage")
    check = failing_with(client, "storage")
    assert check.detail.startswith("cannot write: [Errno 20] Not a directory")


@pytest.mark.skipif(
    not file_modes_bind(), reason="this process writes into read-only folders (root; see the test above)"
)
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("scp", "heartbeat")
def test_read_only_storage_fails_readiness(client: Client, storage_root: Path) -> None:
    (storage_root / "incoming").mkdir(parents=True)
    for folder in (storage_root / "incoming", storage_root):
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        check = failing_with(client, "storage")
    finally:
        for folder in (storage_root, storage_root / "incoming"):
            folder.chmod(stat.S_IRWXU)
    assert check.detail.startswith("cannot write: [Errno 13] Permission denied")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("scp")
def test_a_failing_part_is_logged_once_and_its_recovery_too(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="radshare.core.health"):
        for _ in range(3):
            assert readyz(client)[0] == 503
        Heartbeat("readiness-test").register()
        for _ in range(3):
            assert readyz(client)[0] == 200
    assert [r.getMessage() for r in caplog.records if r.name == "radshare.core.health"] == [
        "not ready: worker: no worker is registered (none started, or all stopped)",
        "ready again: every part answers",
    ]


@pytest.mark.once  # about SQLite's locks
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("scp", "heartbeat")
def test_a_database_that_does_not_answer_fails_readiness_within_the_timeout(client: Client) -> None:
    """Another process holds the SQLite database exclusively (a stuck writer, a careless backup tool): radshare's
    connection waits up to 30 s for it, readiness only CHECK_TIMEOUT; and while that check still waits, the next
    poll answers at once instead of starting another."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's exclusive lock")
    path = connection.settings_dict["NAME"]
    connection.close()  # this thread's connection would keep the lock from being taken
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        response = client.get("/readyz")
        took = time.monotonic() - started
        assert (response.status_code, response.json()["failing"]) == (503, ["database", "worker", "queue"])
        assert CHECK_TIMEOUT <= took < CHECK_TIMEOUT + 1
        started = time.monotonic()
        again = check_readiness()
        assert time.monotonic() - started < CHECK_TIMEOUT
    finally:
        holder.close()
    assert [(c.part, c.detail) for c in again.checks if not c.ok] == [
        ("database", "still no answer to the check started 2 s ago"),
        ("worker", "not checked: database did not answer"),
        ("queue", "not checked: database did not answer"),
    ]
    deadline = time.monotonic() + 10
    while not check_readiness().ok:  # the waiting check gets its answer once the lock is gone
        assert time.monotonic() < deadline
        time.sleep(0.1)


@pytest.mark.django_db
def test_the_database_part_is_three_queries(django_assert_num_queries: Any) -> None:
    found: list[Check] = []
    with django_assert_num_queries(3):
        database_checks(found)
    assert [check.part for check in found] == ["database", "worker", "queue"]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-3, "0 s"),
        (12, "12 s"),
        (119, "119 s"),
        (180, "3 min"),
        (7199, "119 min"),
        (7200, "2 h"),
        (3 * 86400, "3 days"),
    ],
)
def test_ages_read_as_a_person_says_them(seconds: int, shown: str) -> None:
    assert format_age(timedelta(seconds=seconds)) == shown


# --- the database, through a real web process ------------------------------------------------------------


def get_readyz(port: int) -> tuple[int, dict[str, Any], float]:
    """Status, body and seconds taken of a real GET /readyz."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    return status, json.loads(raw), time.monotonic() - started


def database_state(port: int) -> str:
    return str(get_readyz(port)[1]["checks"]["database"])


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path, Path]]:
    """``radshare web`` with its SQLite database in a folder of its own; no worker or SCP runs beside it."""
    database = tmp_path / "database" / "radshare.sqlite3"
    database.parent.mkdir()
    port = free_port()
    settings = {
        "database_url": f"sqlite:///{database}",
        "http_port": str(port),
        "dicom_port": str(free_port()),
    }
    env = radshare_env(migrated_data_dir(tmp_path / "data", **settings), **settings)
    log = tmp_path / "web.log"
    proc = start_radshare("web", env=env, log=log)
    try:
        wait_for("/healthz", lambda: healthz(port), START_TIMEOUT, proc)
        yield proc, port, database, log
    finally:
        stop_group(proc)


def test_a_lost_database_fails_readiness(
    web: tuple[subprocess.Popen[bytes], int, Path, Path], tmp_path: Path
) -> None:
    """The database's folder goes away under a running web process (a volume that came loose), and comes back."""
    proc, port, database, log = web
    status, body, _ = get_readyz(port)
    assert (status, body["checks"]["database"], body["failing"]) == (
        503,
        "ok",
        ["worker", "scp"],
    )  # none runs here

    away = database.parent.rename(tmp_path / "elsewhere")
    status, body, took = get_readyz(port)
    assert (status, body["failing"]) == (503, ["database", "worker", "queue", "scp"])
    assert took < CHECK_TIMEOUT
    away.rename(database.parent)
    wait_for("the database back", lambda: database_state(port) == "ok", 30, proc)

    output = log.read_text(encoding="utf-8", errors="replace")
    assert (
        "not ready: database: no answer: unable to open database file; "
        "worker: not checked: the database does not answer; queue: not checked: the database does not answer; "
        "scp: nothing accepts connections on 127.0.0.1:"
    ) in output
    assert "Traceback" not in output, output[-4000:]
