"""Many processes, one PostgreSQL and one object store (docs/operations.md "Reference deployment"): two ``radshare
web``, two ``radshare scp`` and two ``radshare worker`` processes, sharing nothing but the database and an S3 bucket
(moto's S3 server on loopback, tests/s3.py), as on several machines.

Two PACS send two studies at the same time, each to its own SCP. Twenty shares of them are prepared once each and
e-mailed once each (a real SMTP server). Recipients log in with their requests spread over both web processes
(code on one, date of birth on the other, ...) and download the DICOM ZIP, which holds exactly the bytes the PACS
sent.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import http.client
import io
import re
import socket
import subprocess
import threading
import time
import urllib.parse
import zipfile
from collections import Counter
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pydicom
import pytest

from radshare.audit.actions import Action
from radshare.audit.models import AuditEvent
from radshare.delivery.models import Notification
from radshare.organisations.services import add_pacs_node
from radshare.shares.models import Share
from radshare.shares.services import create_share
from radshare.studies.models import Study
from radshare.studies.synthetic import FakePatient, ct_series, encode
from tests import s3
from tests.conftest import free_port, require, require_program
from tests.delivery.test_outbox import SmtpServer
from tests.interop.test_dcmtk_store import DCMTK_ENV, dataset_bytes
from tests.recipients.conftest import sms_codes
from tests.runtime.processes import START_TIMEOUT, is_postgres, log_of, process_env, start, stop, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SHARES = 20
IMAGES = 12
PATIENTS = [
    FakePatient("MANY-1", "Multi^Anna", dt.date(1961, 2, 3)),
    FakePatient("MANY-2", "Multi^Bert", dt.date(1972, 4, 5)),
]
CALLING = ["PACS_ONE", "PACS_TWO"]
FINISH_TIMEOUT = 120


def address(i: int) -> str:
    return f"many{i:02d}@example.org"


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def healthy(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False


class Browser:
    """A recipient's browser whose requests go to one web process or the other, with one cookie jar."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.cookies: dict[str, str] = {}
        self.turn = 0

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
        port = self.ports[self.turn % len(self.ports)]
        self.turn += 1
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Host": "localhost", "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        connection.close()
        for header in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        return response.status, response.headers, data


def csrf(page: bytes) -> str:
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match is not None, page[:2000]
    return match[1].decode()


def send(files: list[Path], port: int, calling: str) -> None:
    done = subprocess.run(
        [
            require_program("storescu"),
            "-aet",
            calling,
            "-aec",
            "RADSHARE",
            "127.0.0.1",
            str(port),
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=DCMTK_ENV,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_web_scp_and_worker_twice_over_on_one_database_and_one_bucket(
    organisation: Any, radshare_config: Any, tmp_path: Path
) -> None:
    require(is_postgres(), "PostgreSQL (RADSHARE_DATABASE_URL=postgres://...)")
    bucket = s3.new_bucket("many")
    radshare_config(storage_url=s3.storage_url(bucket))
    for calling in CALLING:
        add_pacs_node(organisation, calling)
    smtp = SmtpServer(free_port())
    smtp.start()
    sms = tmp_path / "sms.jsonl"
    web_ports, scp_ports = [free_port(), free_port()], [free_port(), free_port()]
    procs = []
    try:
        for n in range(2):
            common = {"email_url": f"smtp://127.0.0.1:{smtp.port}", "sms_url": f"file://{sms}"}
            procs.append(
                start(
                    "web",
                    env=process_env(tmp_path / f"web{n}", http_port=str(web_ports[n]), **common),
                    log=tmp_path / f"web{n}.log",
                )
            )
            procs.append(
                start(
                    "scp",
                    env=process_env(tmp_path / f"scp{n}", dicom_port=str(scp_ports[n]), **common),
                    log=tmp_path / f"scp{n}.log",
                )
            )
            procs.append(
                start(
                    "worker",
                    env=process_env(tmp_path / f"worker{n}", render_processes="1", **common),
                    log=tmp_path / f"worker{n}.log",
                )
            )
        for port in web_ports:
            wait_for(f"web on {port}", lambda port=port: healthy(port), START_TIMEOUT, *procs)
        for port in scp_ports:
            wait_for(f"SCP on {port}", lambda port=port: listening(port), START_TIMEOUT, *procs)

        # Two PACS, two studies, two SCPs, at the same time.
        sent: dict[str, bytes] = {}
        folders = []
        for n, patient in enumerate(PATIENTS):
            folder = tmp_path / f"study{n}"
            folder.mkdir()
            for i, ds in enumerate(ct_series(patient, count=IMAGES, size=128)):
                data = encode(ds)
                (folder / f"{i:03d}.dcm").write_bytes(data)
                sent[str(ds.SOPInstanceUID)] = data
            folders.append(sorted(folder.iterdir()))
        senders = [
            threading.Thread(target=send, args=(folders[n], scp_ports[n], CALLING[n])) for n in range(2)
        ]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join()

        # Acknowledged from each SCP's journal; their indexers file them within a second or so.
        def filed() -> list[int]:
            studies = Study.objects.filter(organisation=organisation).order_by("patient__patient_id")
            return [s.number_of_instances for s in studies]

        wait_for("both studies filed", lambda: filed() == [IMAGES, IMAGES], 30, *procs)
        studies = list(Study.objects.filter(organisation=organisation).order_by("patient__patient_id"))
        assert len([k for k in bucket.iterate() if k.startswith("instances/")]) == 2 * IMAGES

        # Twenty shares, prepared by whichever worker claims them, e-mailed once each.
        codes = {}
        for i in range(SHARES):
            study = studies[i % 2]
            new = create_share(
                organisation,
                [study.pk],
                recipient_type="patient",
                phone="0612345678",
                email=address(i),
                language="en",
            )
            codes[new.share.pk] = (new.code, PATIENTS[i % 2], study)
        wait_for(
            "every share notified",
            lambda: not Share.objects.exclude(status=Share.Status.NOTIFIED).exists(),
            FINISH_TIMEOUT,
            *procs,
        )
        time.sleep(2)  # room for a second copy of any e-mail
        received = Counter(rcpt for rcpts, _raw in smtp.inbox.messages for rcpt in rcpts)
        assert received == Counter({address(i): 1 for i in range(SHARES)})
        ready = Counter(
            AuditEvent.objects.filter(action=Action.SHARE_READY).values_list("detail__share", flat=True)
        )
        assert set(ready.values()) == {1}, ready
        assert Notification.objects.filter(kind="share_link", state="sent").count() == SHARES
        links = {
            re.search(
                r"\?code=([\w-]+)",
                email.message_from_bytes(raw, policy=email.policy.default).get_body(("plain",)).get_content(),
            )[1]  # type: ignore[union-attr,index]
            for _rcpts, raw in smtp.inbox.messages
        }
        assert len(links) == SHARES

        # Two recipients log in across both web processes and download their study's DICOM ZIP.
        for share_pk in list(codes)[:2]:
            code, patient, study = codes[share_pk]
            browser = Browser(web_ports)
            status, headers, _ = browser.request("GET", f"/?code={code}")
            assert (status, headers["Location"]) == (302, "/r/birth-date")
            _, _, page = browser.request("GET", "/r/birth-date")
            form = {
                "csrfmiddlewaretoken": csrf(page),
                "accept_terms": "on",
                "birth_date": patient.birth_date.strftime("%d-%m-%Y"),
            }
            before = len(sms_codes(sms))
            status, headers, _ = browser.request("POST", "/r/birth-date", form)
            assert (status, headers["Location"]) == (302, "/r/sms-code")
            wait_for(
                "the SMS code",
                lambda before=before: sms.exists() and len(sms_codes(sms)) > before,
                30,
                *procs,
            )
            _, _, page = browser.request("GET", "/r/sms-code")
            status, headers, _ = browser.request(
                "POST", "/r/sms-code", {"csrfmiddlewaretoken": csrf(page), "code": sms_codes(sms)[-1]}
            )
            assert (status, headers["Location"]) == (302, "/r/studies")
            status, _, page = browser.request("GET", "/r/studies")
            assert status == 200
            status, headers, data = browser.request("GET", "/r/download/dicom.zip")
            assert status == 200
            assert int(headers["Content-Length"]) == len(data)
            archive = zipfile.ZipFile(io.BytesIO(data))
            members = {}
            for name in archive.namelist():
                member = archive.read(name)
                if member[128:132] == b"DICM" and not name.endswith("DICOMDIR"):
                    uid = str(pydicom.dcmread(io.BytesIO(member), stop_before_pixels=True).SOPInstanceUID)
                    members[uid] = dataset_bytes(member)
            expected = {uid: dataset_bytes(data) for uid, data in sent.items() if uid in members}
            assert len(members) == IMAGES
            assert members == expected  # the data sets byte for byte as that PACS sent them
    finally:
        for proc in procs:
            stop(proc)
        smtp.stop()
    for n in range(2):
        for name in ("web", "scp", "worker"):
            assert "Traceback" not in log_of(tmp_path / f"{name}{n}.log"), log_of(
                tmp_path / f"{name}{n}.log"
            )[-3000:]
