"""``RADSHARE_LOG_FORMAT=json``: web, SCP and worker (``radshare serve``) write one JSON object a line, with the
hygiene of plain logs (docs/security.md A21): a study arrives by C-STORE, the worker renders and prepares its
share, the recipient logs in and looks, and no line holds a name, birth date, BSN, code, phone number, e-mail
address or query string. Compare tests/core/test_middleware.py::test_access_log_never_holds_the_query_string."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from radshare.imaging.models import InstanceRender
from radshare.organisations.services import add_pacs_node, create_organisation, create_sender
from radshare.shares import codes
from radshare.shares.models import Share
from radshare.shares.services import create_share
from radshare.studies.models import Study
from radshare.studies.synthetic import FakePatient, ct_series
from tests.cli_runner import stop_group
from tests.conftest import free_port
from tests.recipients.conftest import sms_codes
from tests.runtime.processes import process_env, wait_for
from tests.runtime.test_serve import c_echo
from tests.security.conftest import healthy

PATIENT = FakePatient("LOG-PID-4711", "Geheimnaam^Annelies", dt.date(1968, 3, 14), bsn="999999990")
PHONE = "0612345678"
SENDER_EMAIL = "alice.geheim@hospital.example"
CALLING = "LOGMODALITY"


def form_token(page: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert found is not None, page[:500]
    return found.group(1)


@pytest.mark.once
@pytest.mark.django_db(transaction=True)  # the processes see committed rows only
def test_json_logs_of_web_scp_and_worker_hold_no_patient_data(tmp_path: Path) -> None:
    organisation = create_organisation("logs", "Log Hospital", require_two_factor=False)
    sender = create_sender(organisation, "alice", "correct horse battery staple", email=SENDER_EMAIL)
    add_pacs_node(organisation, CALLING)
    http_port, dicom_port = free_port(), free_port()
    sms_file = tmp_path / "sms.jsonl"
    env = process_env(
        tmp_path / "data",
        http_port=str(http_port),
        dicom_port=str(dicom_port),
        log_format="json",
        log_level="INFO",
        render_processes="1",
        sms_url=f"file://{sms_file}",
        email_url=f"file://{tmp_path / 'mail'}",
    )
    stdout, stderr = tmp_path / "serve.out", tmp_path / "serve.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        serve = subprocess.Popen(
            [sys.executable, "-m", "radshare", "serve"],
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_for("the web process", lambda: healthy(http_port), 60, serve)
        wait_for("the SCP", lambda: _echo(dicom_port), 60, serve)
        code = _share_a_stored_study(organisation, sender, dicom_port, serve)
        secrets = _recipient_flow(http_port, code, sms_file)
    finally:
        stop_group(serve, timeout=20)

    lines = [line for line in stderr.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = []
    for line in lines:
        record: dict[str, Any] = json.loads(line)  # every line is one JSON object
        assert {"time", "level", "logger", "message"} <= set(record), line
        records.append(record)
    loggers = {r["logger"] for r in records}
    assert {"radshare.access", "radshare.scp", "radshare.worker"} <= loggers, loggers
    access = [r for r in records if r["logger"] == "radshare.access"]
    assert {"method", "path", "status", "duration_ms"} <= set(access[0])
    assert any(r["path"] == "/r/studies" and r["status"] == 200 for r in access)
    assert not [r for r in records if r["level"] in ("ERROR", "CRITICAL")], lines

    text = "\n".join(lines)
    for secret in (
        *secrets,
        "Geheimnaam",
        "Annelies",
        "LOG-PID-4711",
        "1968-03-14",
        "14-03-1968",
        "19680314",
        "999999990",
        PHONE,
        PHONE[1:],
        SENDER_EMAIL,
        "?",
        "code=",
    ):
        assert secret not in text, secret


def _echo(port: int) -> bool:
    try:
        return c_echo(port, CALLING)
    except OSError:
        return False


def _share_a_stored_study(organisation: Any, sender: Any, port: int, serve: subprocess.Popen[bytes]) -> str:
    """Two CT images by C-STORE into the SCP; the worker renders them and prepares the share; its code."""
    ae = AE(ae_title=CALLING)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="RADSHARE")
    assert assoc.is_established
    statuses = [int(assoc.send_c_store(ds).Status) for ds in ct_series(PATIENT, count=2, size=32)]
    assoc.release()
    assert statuses == [0, 0]
    study = wait_for("the study", lambda: Study.objects.filter(organisation=organisation).first(), 30, serve)
    new = create_share(
        organisation,
        [study.pk],
        recipient_type="patient",
        phone=PHONE,
        delivery="url",
        email="",
        created_by=sender,
    )
    wait_for(
        "the share to be ready",
        lambda: Share.objects.get(pk=new.share.pk).status == Share.Status.READY,
        60,
        serve,
    )
    assert not InstanceRender.objects.exclude(status="done").exists()
    return new.code


def _recipient_flow(port: int, code: str, sms_file: Path) -> list[str]:
    """Link, terms and date of birth, SMS code, the study list and the viewer; the secrets it used."""
    base = f"http://127.0.0.1:{port}"
    browser = requests.Session()
    browser.headers["Accept-Language"] = "en"
    step = browser.get(f"{base}/", params={"code": codes.format_code(code)}, timeout=10)
    assert step.url == f"{base}/r/birth-date", step.url
    answer = browser.post(
        f"{base}/r/birth-date",
        data={"csrfmiddlewaretoken": form_token(step.text), "accept_terms": "on", "birth_date": "14-03-1968"},
        timeout=10,
    )
    assert answer.url == f"{base}/r/sms-code", answer.text[:500]
    [sms_code] = sms_codes(sms_file)
    listing = browser.post(
        f"{base}/r/sms-code",
        data={"csrfmiddlewaretoken": form_token(answer.text), "code": sms_code},
        timeout=10,
    )
    assert listing.url == f"{base}/r/studies", listing.text[:500]
    viewer = re.search(r'href="(/r/studies/\d+/)"', listing.text)
    assert viewer is not None
    assert browser.get(base + viewer.group(1), timeout=10).status_code == 200
    assert browser.get(f"{base}/no/such/page", params={"code": code}, timeout=10).status_code == 404
    return [code, codes.format_code(code), sms_code]
