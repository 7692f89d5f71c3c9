"""``kill -9`` of a real ``radshare scp`` process while DCMTK's storescu sends a study (docs/security.md R1).

What the SCP acknowledged must survive the crash whole: every instance storescu was told is stored is indexed, and
its file, read through the storage interface, holds the data set that was sent. The crash leaves nothing half
written outside the storage's temporary area, and after a restart the sender simply sends everything again: what
arrived before is acknowledged as a duplicate, the rest is stored, and the study is complete.
"""

from __future__ import annotations

import hashlib
import random
import re
import socket
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pydicom
import pytest
from django.db.models import Sum

from radshare.audit.models import AuditEvent
from radshare.core.storage import get_storage, instance_key
from radshare.core.storage.filesystem import PARTIAL_SUFFIX, TEMPORARY
from radshare.organisations.services import add_pacs_node
from radshare.studies.models import Instance, Series, Study
from tests.conftest import free_port, require_program, storage_dir
from tests.interop.test_dcmtk_store import (
    CALLING,
    DCMTK_ENV,
    TIMEOUT,
    dataset_bytes,
    storescu,
    storescu_args,
    storescu_outcomes,
    write_study,
)
from tests.runtime.processes import START_TIMEOUT, kill, log_of, process_env, start, stop, wait_for
from tests.runtime.test_serve import c_echo

pytestmark = [pytest.mark.interop, pytest.mark.django_db(transaction=True)]

COUNT = 200
KILL_AFTER = 50  # acknowledged instances before the SCP is killed
SUCCESS = "I: Received Store Response (Success)"
SENDING = "I: Sending Store Request"
IN_FLIGHT = 0.02  # seconds: longer than one instance takes from request to response here


def start_scp(tmp_path: Path, port: int, run: str) -> subprocess.Popen[bytes]:
    # The synchronous path: what it acknowledged is in the index at once (journal mode: test_journal_scp.py).
    env = process_env(
        tmp_path / f"scp-{run}", dicom_port=str(port), dicom_bind="127.0.0.1", ingest_journal="0"
    )
    proc = start("scp", env=env, log=tmp_path / f"scp-{run}.log")
    wait_for("the SCP to answer C-ECHO", lambda: _answers(port), START_TIMEOUT, proc)
    return proc


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()  # listening yet? (quietly)
    except OSError:
        return False
    return c_echo(port, CALLING)


def send_and_kill(scp_proc: subprocess.Popen[bytes], port: int, files: list[Path]) -> str:
    """Run storescu over ``files`` and ``kill -9`` the SCP once ``KILL_AFTER`` of them were acknowledged;
    storescu's verbose log (what it was told) is returned."""
    peer = SimpleNamespace(ae_title="RADSHARE", address=("127.0.0.1", port))
    sender = subprocess.Popen(
        [require_program("storescu"), *storescu_args(peer, files)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=DCMTK_ENV,
    )
    watchdog = threading.Timer(TIMEOUT, sender.kill)  # a hung storescu fails the test, never hangs it
    watchdog.start()
    lines: list[str] = []
    acknowledged = 0
    try:
        assert sender.stderr is not None
        for line in sender.stderr:
            lines.append(line)
            if line.startswith(SUCCESS):
                acknowledged += 1
            elif line.startswith(SENDING) and acknowledged == KILL_AFTER and scp_proc.poll() is None:
                # The crash, at a random point of the next instance's path: receiving, writing, fsyncing,
                # renaming, indexing, committing or answering.
                time.sleep(random.uniform(0, IN_FLIGHT))  # noqa: S311 - a moment, not a secret
                kill(scp_proc)
        sender.wait(timeout=TIMEOUT)
    finally:
        watchdog.cancel()
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    assert scp_proc.poll() is not None, "storescu finished before the SCP was killed"
    return "".join(lines)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored_bytes(instance: Instance) -> bytes:
    """The instance's file, through the storage interface (as the viewer and downloads read it)."""
    with get_storage().open(instance_key(instance.storage_key)) as stored:
        return stored.read()


def check_index_against_storage(sent: dict[str, str]) -> list[str]:
    """Every row names a whole file holding what was sent; every file outside the temporary area is whole.
    Returns the files no row names (a crash between the rename and the commit: never acknowledged)."""
    storage = get_storage()
    rows = {i.storage_key: i for i in Instance.objects.all()}
    for instance in rows.values():
        data = stored_bytes(instance)
        assert sha256(data) == instance.sha256
        assert sha256(dataset_bytes(data)) == sent[instance.sop_instance_uid]
    unindexed = []
    for key in storage.iterate():
        # No temporary name leaked out of the temporary area.
        assert key.startswith("instances/"), key
        assert key.endswith(".dcm"), key
        if key.removeprefix("instances/") in rows:
            continue
        with storage.open(key) as stored:
            data = stored.read()
        ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))  # whole: it reads to the end of its pixels
        assert sha256(dataset_bytes(data)) == sent[str(ds.SOPInstanceUID)], key
        unindexed.append(key)
    return unindexed


def test_killed_scp_keeps_what_it_acknowledged_and_a_resend_completes_the_study(
    organisation: Any, tmp_path: Path
) -> None:
    require_program("storescu")
    add_pacs_node(organisation, CALLING)
    files = write_study(tmp_path / "study", count=COUNT)
    sent = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): f for f in files}
    sent_sha = {uid: sha256(dataset_bytes(f.read_bytes())) for uid, f in sent.items()}
    port = free_port()

    scp_proc = start_scp(tmp_path, port, "first")
    try:
        log = send_and_kill(scp_proc, port, files)
    finally:
        kill(scp_proc)
    crash_output = log_of(tmp_path / "scp-first.log")

    outcomes = storescu_outcomes(log)
    acknowledged = [path for path, status in outcomes.items() if status == "Success"]
    assert KILL_AFTER <= len(acknowledged) < COUNT, log[-3000:]
    assert set(outcomes.values()) <= {"Success", None}, log[-3000:]  # nothing refused before the crash
    # Everything acknowledged is indexed, and its file holds the bytes that were sent.
    indexed = {i.sop_instance_uid: i for i in Instance.objects.all()}
    for path in acknowledged:
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        assert uid in indexed, f"{path.name} was acknowledged but is not in the index"
        assert sha256(dataset_bytes(stored_bytes(indexed[uid]))) == sent_sha[uid]
    # At most the one instance in flight was indexed without its answer reaching storescu.
    assert len(acknowledged) <= len(indexed) <= len(acknowledged) + 1
    unindexed = check_index_against_storage(sent_sha)
    assert len(unindexed) <= 1, unindexed  # only the one instance that was in flight
    study = Study.objects.get()
    assert study.number_of_instances == len(indexed)  # counters committed with the rows
    partial = [p for p in (storage_dir() / TEMPORARY).glob("*") if p.is_file()]
    assert all(p.name.endswith(PARTIAL_SUFFIX) for p in partial), partial
    assert len(partial) <= 1, partial

    # The SCP comes back; the sender sends the whole study again.
    scp_proc = start_scp(tmp_path, port, "again")
    try:
        peer = SimpleNamespace(ae_title="RADSHARE", address=("127.0.0.1", port))
        again = storescu(peer, files)
        wait_for(
            "the association's audit entry",
            lambda: AuditEvent.objects.filter(action="dicom.store").exists(),
            30,
            scp_proc,
        )
    finally:
        stop(scp_proc)
    assert again.returncode == 0, again.stderr[-3000:]
    assert list(storescu_outcomes(again.stderr).values()) == ["Success"] * COUNT
    entry = AuditEvent.objects.get(action="dicom.store")
    assert entry.detail == {
        "stored": COUNT - len(indexed),
        "duplicate": len(indexed),  # acknowledged again, not stored twice
        "refused": 0,
        "patients": 1,
    }
    study.refresh_from_db()
    instances = Instance.objects.filter(series__study=study)
    assert study.number_of_instances == instances.count() == COUNT
    assert set(instances.values_list("sop_instance_uid", flat=True)) == set(sent)
    assert Series.objects.get(study=study).number_of_instances == COUNT
    assert study.size == instances.aggregate(total=Sum("size"))["total"]
    assert check_index_against_storage(sent_sha) == unindexed
    # What the crash left in the temporary area is swept (after an hour in production).
    get_storage().sweep_temporary(older_than=timedelta(0))
    assert [p for p in (storage_dir() / TEMPORARY).glob("*") if p.is_file()] == []
    assert "Traceback" not in log_of(tmp_path / "scp-again.log")
    assert "Traceback" not in crash_output
    assert re.search(r"listening on 127\.0\.0\.1:\d+", log_of(tmp_path / "scp-again.log"))
