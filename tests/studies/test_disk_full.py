"""A full disk (docs/security.md R6, R8): every write through the storage interface fails with ENOSPC.

The fault is injected into the filesystem storage itself (``RADSHARE_STORAGE_URL`` selects only ``file://``, so
its methods are replaced for the test): a put writes part of its data into the real temporary file, then the disk
"fills up" and the write fails with ``ENOSPC``, as the kernel would; the storage's own clean-up runs as it would
then. Everything above it is real: a pynetdicom association to the storage SCP, the portal upload through the
request handler, the render task and the share's preparation, the recipient's viewer and ZIP download.
"""

from __future__ import annotations

import datetime as dt
import errno
import io
import os
import re
import zipfile
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import time_machine
from django.test import Client
from django.utils import timezone, translation
from django_tasks_db.models import DBTaskResult
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from radshare.audit.models import AuditEvent
from radshare.core.storage import FileSystemStorage
from radshare.core.storage.filesystem import TEMPORARY
from radshare.downloads.tasks import keep_layouts
from radshare.imaging import services as imaging
from radshare.imaging.models import InstanceRender
from radshare.imaging.tasks import render_housekeeping
from radshare.organisations.models import Sender
from radshare.organisations.services import add_pacs_node
from radshare.shares.models import Share
from radshare.shares.services import prepare
from radshare.shares.tasks import prepare_share
from radshare.shares.views import STATUS_REASONS
from radshare.studies.models import Instance, Patient, Series, Study
from radshare.studies.synthetic import FakePatient, ct_series, encode
from radshare.studies.upload import UploadImport
from tests.conftest import storage_dir
from tests.downloads.test_downloads import DESKTOP, body
from tests.recipients.conftest import Recipient, recipient
from tests.shares.helpers import ANNA, make_share, make_study
from tests.studies.test_upload import client_for, multipart, report_rows, upload

__all__ = ["recipient"]

PATIENT = FakePatient("FULL-1", "Vol^Schijf", dt.date(1961, 2, 3))
CALLING = "MODALITY"
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700


def _no_space() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if hasattr(data, "read"):
        return bytes(data.read())
    return b"".join(data)


class _FullFile:
    """A file on the full disk: it opens, but nothing more fits in it."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file

    def write(self, data: Any) -> int:
        raise _no_space()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def __enter__(self) -> _FullFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


class Disk:
    """The storage's disk: ``full`` makes every write fail part-way with ENOSPC (durable puts, render puts, new
    files and the temporary area alike); ``partial_writes`` counts the puts that had begun to write when it failed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        self.partial_writes = 0
        temporary = FileSystemStorage.temporary
        disk = self

        def filling(data: Any) -> Iterator[bytes]:
            whole = _as_bytes(data)
            yield whole[: len(whole) // 2]
            disk.partial_writes += 1
            raise _no_space()

        def on_disk(put: Callable[[FileSystemStorage, str, Any], int]) -> Callable[..., int]:
            def put_on_disk(storage: FileSystemStorage, key: str, data: Any) -> int:
                return put(storage, key, filling(data) if disk.full else data)

            return put_on_disk

        def temporary_on_disk(storage: FileSystemStorage) -> BinaryIO:
            file = temporary(storage)
            return _FullFile(file) if disk.full else file  # type: ignore[return-value]

        for name in ("put_durable", "put", "put_new"):
            monkeypatch.setattr(FileSystemStorage, name, on_disk(getattr(FileSystemStorage, name)))
        monkeypatch.setattr(FileSystemStorage, "temporary", temporary_on_disk)


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Disk:
    return Disk(monkeypatch)


def files_outside_temporary() -> list[Path]:
    root = storage_dir()
    return sorted(p for p in root.rglob("*") if p.is_file() and TEMPORARY not in p.relative_to(root).parts)


def temporary_files() -> list[Path]:
    return sorted(p for p in (storage_dir() / TEMPORARY).glob("*") if p.is_file())


def text_of(response: Any) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


# --- the storage SCP ------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_c_store_on_a_full_disk_answers_out_of_resources_and_leaves_nothing(
    scp: Any, organisation: Any, disk: Disk
) -> None:
    add_pacs_node(organisation, CALLING)
    first, second = ct_series(PATIENT, count=2, size=32)
    ae = AE(ae_title=CALLING)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", scp.address[1], ae_title=scp.ae_title)
    assert assoc.is_established
    try:
        disk.full = True
        assert assoc.send_c_store(first).Status == OUT_OF_RESOURCES
        assert disk.partial_writes == 1  # the file had begun to be written when the disk filled up
        assert not Instance.objects.exists()
        assert not Study.objects.exists()
        assert not Series.objects.exists()
        assert not Patient.objects.exists()
        assert files_outside_temporary() == []
        assert temporary_files() == []  # the half-written file went too

        disk.full = False  # space again: the sender's retry, on the same association, is stored
        assert assoc.send_c_store(first).Status == SUCCESS
        assert assoc.send_c_store(second).Status == SUCCESS
    finally:
        assoc.release()
        for thread in list(scp.server.active_associations):
            thread.join(timeout=30)
    assert Instance.objects.count() == Study.objects.get().number_of_instances == 2
    assert len(files_outside_temporary()) == 2
    assert temporary_files() == []
    entry = AuditEvent.objects.get(action="dicom.store")
    assert (entry.detail["stored"], entry.detail["refused"]) == (2, 1)


# --- the portal upload -------------------------------------------------------------------------------------------

FULL_WHILE_STORING = {
    "en": "Could not be saved: storage is full or unavailable. Tell the administrator, then upload again.",
    "nl": "Kon niet worden opgeslagen: de opslag is vol of niet beschikbaar.",
}


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["en", "nl"])
def test_upload_while_the_disk_fills_up_says_so_in_the_users_language(
    sender: Sender, disk: Disk, language: str
) -> None:
    """The upload arrived (in the temporary area), then each image fails to be written."""
    files = [(f"{i}.dcm", encode(ds)) for i, ds in enumerate(ct_series(PATIENT, count=3, size=32))]
    client = client_for(sender, language)

    # The disk fills up once the upload was received: the first store fails, and the rest is not tried.
    original = UploadImport.prepare

    def prepare_then_fill(self: UploadImport) -> int:
        steps = original(self)
        disk.full = True
        return steps

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(UploadImport, "prepare", prepare_then_fill)
        response = upload(client, files)

    assert response.status_code == 200
    rows = report_rows(response.content.decode())
    refused = {path for path, (outcome, _reason) in rows.items() if outcome == "refused"}
    assert refused == {"0.dcm", "1.dcm", "2.dcm"}
    assert all(reason.startswith(FULL_WHILE_STORING[language]) for _outcome, reason in rows.values())
    assert disk.partial_writes == 1  # the first file began to be written; the others were not tried
    assert not Instance.objects.exists()
    assert files_outside_temporary() == []
    assert temporary_files() == []


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["en", "nl"])
def test_upload_to_a_full_disk_says_so_in_the_users_language(
    sender: Sender, disk: Disk, language: str
) -> None:
    """The disk is full before the upload arrives: it cannot even be received into the temporary area."""
    files = [(f"{i}.dcm", encode(ds)) for i, ds in enumerate(ct_series(PATIENT, count=2, size=32))]
    disk.full = True

    response = upload(client_for(sender, language), files)

    assert response.status_code == 503, response.content[:2000]
    assert FULL_WHILE_STORING[language] in text_of(response)
    assert not Instance.objects.exists()
    assert files_outside_temporary() == []
    event = AuditEvent.objects.get(action="portal.upload")
    assert (event.outcome, event.detail["reason"]) == ("failure", "storage_failed")

    # Streamed (the page's script): the same words, as its error event.
    disk.full = True
    body_bytes, content_type = multipart(files)
    streamed = client_for(sender, language).post(
        "/portal/upload/", body_bytes, content_type=content_type, headers={"accept": "application/x-ndjson"}
    )
    assert streamed.status_code == 503
    assert FULL_WHILE_STORING[language] in streamed.json()["message"]


# --- a share whose renders cannot be written ---------------------------------------------------------------------

NOT_WRITTEN = "The images cannot be saved: the storage is full or unavailable."


def reason_in(language: str) -> str:
    """The sender's words for a share whose renders cannot be written, as the catalogue of ``language`` has them."""
    with translation.override(language):
        return str(STATUS_REASONS["storage_unwritable"])


@pytest.mark.django_db
def test_preparation_on_a_full_disk_tells_the_sender_and_is_tried_again(
    organisation: Any, sender: Sender, disk: Disk
) -> None:
    study = make_study(organisation, ANNA)
    share = make_share(organisation, [study], created_by=sender).share
    disk.full = True

    imaging.render_pending_now(parallel=False)  # what the render task does: every render fails to be written
    assert disk.partial_writes == 2
    assert prepare_share.call(share.pk) == "preparing"

    share.refresh_from_db()
    assert (share.status, share.status_reason) == ("preparing", "storage_unwritable")
    renders = InstanceRender.objects.filter(instance__series__study=study)
    assert set(renders.values_list("status", "reason", "attempts")) == {("pending", "", 1)}  # never "broken"
    assert [p for p in files_outside_temporary() if "renders" in p.parts] == []  # no half-written JPEG
    for language in ("en", "nl"):
        page = client_for(sender, language).get(f"/portal/shares/{share.pk}/")
        assert page.status_code == 200
        assert reason_in(language) in text_of(page), language
    assert reason_in("en").startswith(NOT_WRITTEN)
    # Nothing went out, and a later look is queued.
    assert not share.notifications.exists()
    assert DBTaskResult.objects.filter(task_path=prepare_share.module_path, status="READY").exists()

    # Space again. Once the delay has passed, the periodic housekeeping asks for the renders and they are made;
    # the share becomes ready by itself, and the reason is gone.
    disk.full = False
    with time_machine.travel(timezone.now() + timedelta(seconds=11), tick=True):
        DBTaskResult.objects.all().delete()
        render_housekeeping.call()
        assert DBTaskResult.objects.filter(task_path="radshare.imaging.tasks.render_pending").exists()
        imaging.render_pending_now(parallel=False)
    share.refresh_from_db()
    assert (share.status, share.status_reason) == ("ready", "")
    assert set(renders.values_list("status", "attempts")) == {("done", 0)}
    assert share.notifications.count() == 1  # the e-mail with the link, queued once
    assert prepare(share.pk) == "ready"
    page = client_for(sender, "en").get(f"/portal/shares/{share.pk}/")
    assert NOT_WRITTEN not in text_of(page)


# --- a share that is ready keeps working -------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume:Warning")
def test_a_ready_share_keeps_serving_while_nothing_can_be_written(recipient: Recipient, disk: Disk) -> None:
    client: Client = recipient.client
    ct = recipient.studies[0]
    keep_layouts.call(recipient.share.pk)  # as the worker does when the share becomes ready
    disk.full = True

    viewer = client.get(f"/r/studies/{ct.pk}/")
    assert viewer.status_code == 200
    image_urls = re.findall(r'"(/r/images/\d+/\d+/preview\.jpg)"', viewer.content.decode())
    assert image_urls
    image = client.get(image_urls[0])
    assert image.status_code == 200
    assert body(image)[:3] == b"\xff\xd8\xff"  # a JPEG
    response = client.get("/r/download/dicom.zip", headers={"user-agent": DESKTOP})
    assert response.status_code == 200
    data = body(response)
    assert len(data) == int(response["Content-Length"])
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    assert sum(1 for name in archive.namelist() if re.fullmatch(r"DICOM/ST\d+/SE\d+/IM\d+", name)) == 3
    assert disk.partial_writes == 0  # serving a share writes nothing to the storage
    recipient.share.refresh_from_db()
    assert recipient.share.status == Share.Status.DOWNLOADED
