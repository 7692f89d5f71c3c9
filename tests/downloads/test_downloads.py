"""Downloads (docs/requirements.md S4.6-S4.8, B6.3, B6.5; docs/security.md A10, A14, A16, A18, R5): the
dialog, the DICOM media ZIP and the JPEG ZIP read back, Content-Length, Range resumption, the daily limit (also
under concurrent requests), phones and tablets, and scoping to the session's share."""

from __future__ import annotations

import datetime as dt
import http.client
import io
import re
import threading
import zipfile
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.test import Client
from PIL import Image
from pydicom.fileset import FileSet

from radshare.audit.models import AuditEvent
from radshare.core.storage import get_storage, instance_key
from radshare.downloads import media, services, views
from radshare.downloads.media import archive
from radshare.downloads.models import DownloadDay
from radshare.imaging.models import InstanceRender
from radshare.imaging.reports import attach_pdf_report
from radshare.recipients import session
from radshare.shares.models import Share
from radshare.studies.models import Instance, Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import encode
from tests.imaging.test_reports import sr_dataset
from tests.recipients.conftest import Recipient, logged_in_client, ready_share
from tests.shares.helpers import ANNA, PIET, make_study

pytestmark = pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume:Warning")

DESKTOP = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1"
)
ANDROID_TABLET = "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"
# Several studies: "radiology" and the newest study's date (docs/security.md A14).
SAFE_NAME = re.compile(r'attachment; filename="radiology-\d{4}-\d{2}-\d{2}-(dicom|jpeg)\.zip"')


def body(response: Any) -> bytes:
    """The whole body of a (streamed, async) response, consumed as the ASGI handler does."""
    if not response.streaming:
        return bytes(response.content)

    async def collect() -> bytes:
        return b"".join([part async for part in response])

    return async_to_sync(collect)()


def get(client: Client, url: str, **headers: str) -> tuple[Any, bytes]:
    response = client.get(url, headers={"user-agent": DESKTOP, **headers})
    return response, body(response)


def text(response: Any, data: bytes) -> str:
    return re.sub(r"\s+", " ", data.decode())


def unzip(data: bytes, to: Path) -> zipfile.ZipFile:
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None  # every CRC right
    archive.extractall(to)
    return archive


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        self.links += [v for k, v in attrs if k in ("href", "src") and v]


def _all_instances(studies: list[Study]) -> list[Instance]:
    return list(Instance.objects.filter(series__study__in=studies).order_by("pk"))


@pytest.fixture
def with_reports(organisation: Any) -> Recipient:
    """A share of a CT with a PDF report attached by the sender and an SR report, and a CR."""
    ct = make_study(organisation, ANNA)
    attach_pdf_report(ct, b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", title="Verslag CT")
    sr = sr_dataset(ANNA, ct.study_instance_uid, finding="Small nodule <left>", conclusion="No change")
    store_instance(organisation, encode(sr), source="upload")
    studies = [ct, make_study(organisation, ANNA, kind="cr")]
    share, code = ready_share(organisation, studies, delivery="url", email="")
    return Recipient(logged_in_client(share), share, code, studies)


# --- the dialog ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_dialog_explains_both_formats_with_sizes_and_downloads_left(recipient: Recipient) -> None:
    response, data = get(recipient.client, "/r/download")
    assert response.status_code == 200
    page = text(response, data)
    for expected in ("DICOM: the original images", "JPEG: pictures", "Weasis", "MicroDicom", "INDEX.HTM"):
        assert expected in page
    assert "Not suitable for diagnosis" in page
    assert "Size: about" in page
    assert "You can download 10 more times today." in page
    assert 'href="/r/download/dicom.zip"' in data.decode()
    assert 'href="/r/download/jpeg.zip"' in data.decode()
    assert "Questions? Contact Hospital A" in page  # the organisation's contact details in the footer

    study = recipient.studies[0]
    response, data = get(recipient.client, f"/r/download?study={study.pk}")
    assert response.status_code == 200
    assert f'href="/r/studies/{study.pk}/download/dicom.zip"' in data.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("user_agent", [PHONE, ANDROID_TABLET])
def test_phones_and_tablets_get_no_buttons_and_the_zip_refuses(
    recipient: Recipient, user_agent: str, radshare_config: Any
) -> None:
    response, data = get(recipient.client, "/r/download", **{"user-agent": user_agent})
    page = text(response, data)
    assert "Downloading works on a computer" in page
    assert ".zip" not in data.decode()
    response, data = get(recipient.client, "/r/download/dicom.zip", **{"user-agent": user_agent})
    assert response.status_code == 403
    assert "Downloading works on a computer" in text(response, data)
    assert not DownloadDay.objects.filter(count__gt=0).exists()

    radshare_config(download_on_mobile=True)
    response, data = get(recipient.client, "/r/download/jpeg.zip", **{"user-agent": user_agent})
    assert response.status_code == 200
    assert zipfile.ZipFile(io.BytesIO(data)).namelist()


@pytest.mark.django_db
def test_not_logged_in_goes_to_the_start_page(recipient: Recipient) -> None:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    for url in (
        "/r/download",
        "/r/download/dicom.zip",
        f"/r/studies/{recipient.studies[0].pk}/download/jpeg.zip",
    ):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"] == "/"


@pytest.mark.django_db
def test_another_shares_study_is_not_found(recipient: Recipient, organisation: Any) -> None:
    other, _ = ready_share(organisation, [make_study(organisation, PIET)], delivery="url", email="")
    foreign = other.share_studies.get().study_id
    for url in (f"/r/studies/{foreign}/download/dicom.zip", f"/r/download?study={foreign}"):
        response, _ = get(recipient.client, url)
        assert response.status_code == 404
    response, _ = get(recipient.client, f"/r/studies/{recipient.studies[0].pk}/download/exe.zip")
    assert response.status_code == 404
    assert AuditEvent.objects.filter(action="recipient.download.start", outcome="denied").count() == 2
    assert not DownloadDay.objects.exists()


# --- the DICOM media ZIP ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_dicom_zip_is_portable_media_with_every_instance(with_reports: Recipient, tmp_path: Path) -> None:
    response, data = get(with_reports.client, "/r/download/dicom.zip")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert int(response["Content-Length"]) == len(data)
    assert SAFE_NAME.fullmatch(response["Content-Disposition"])
    assert response["Cache-Control"] == "no-store"
    assert response["Accept-Ranges"] == "bytes"

    archive = unzip(data, tmp_path)
    names = archive.namelist()
    assert names[:3] == ["DICOMDIR", "README.TXT", "INDEX.HTM"]
    assert all(i.compress_type == zipfile.ZIP_STORED for i in archive.infolist())
    for name in names:
        if name.startswith("DICOM/"):  # PS3.10/PS3.12 file ids: uppercase, components of at most 8 characters
            assert all(re.fullmatch(r"[A-Z0-9_]{1,8}", part) for part in name.split("/")), name

    # Every instance of the share (the PDF report, which has no render, too) through the DICOMDIR, byte for byte.
    storage = get_storage()
    stored = {i.sop_instance_uid: instance_key(i.storage_key) for i in _all_instances(with_reports.studies)}
    fileset = FileSet(tmp_path / "DICOMDIR")
    assert sorted(i.SOPInstanceUID for i in fileset) == sorted(stored)
    for instance in fileset:
        with storage.open(stored[instance.SOPInstanceUID]) as original:
            assert Path(instance.path).read_bytes() == original.read()
    assert {i.DirectoryRecordType for i in fileset} == {"IMAGE", "ENCAP DOC", "SR DOCUMENT"}
    sr_record = next(i for i in fileset if i.DirectoryRecordType == "SR DOCUMENT")
    assert "ContentSequence" not in sr_record.node._record  # the report's text stays out of the DICOMDIR
    referenced = {Path(i.path).relative_to(tmp_path).as_posix() for i in fileset}
    assert referenced == {n for n in names if n.startswith("DICOM/")}

    # The offline viewer: relative links to files inside the ZIP only, no script.
    pages = [n for n in names if n == "INDEX.HTM" or (n.startswith("IHE_PDI/") and n.endswith(".HTM"))]
    assert len(pages) >= 1 + 2 + 2  # the index, a page per study, a page per image series
    for page in pages:
        parser = _Links()
        parser.feed((tmp_path / page).read_text(encoding="utf-8"))
        assert parser.scripts == 0
        for link in parser.links:
            assert "://" not in link, (page, link)
            assert not link.startswith(("/", "mailto:", "tel:")), (page, link)
            target = (PurePosixPath(page).parent / link).as_posix()
            resolved = Path(tmp_path / target).resolve()
            assert resolved.is_relative_to(tmp_path.resolve()), (page, link)
            assert resolved.is_file(), (page, link)
    index = (tmp_path / "INDEX.HTM").read_text(encoding="utf-8")
    assert "X thorax" in index
    assert "CT thorax" in index
    assert any(n.endswith(".PDF") for n in names)  # the PDF report, openable from the study page
    study_page = (tmp_path / "IHE_PDI/ST0001.HTM").read_text(encoding="utf-8")
    assert "Small nodule &lt;left&gt;" in study_page  # the SR as HTML, escaped
    previews = [n for n in names if n.startswith("IHE_PDI/") and n.endswith(".JPG")]
    assert len(previews) == 3  # 2 CT images and 1 CR


@pytest.mark.django_db
def test_dicomdir_derives_what_the_files_lack(organisation: Any, tmp_path: Path) -> None:
    """An image without Instance Number and a study without Study ID (FileSet.add would refuse both)."""
    from radshare.studies.synthetic import ct_series

    datasets = ct_series(ANNA, count=2, size=32)
    for ds in datasets:
        del ds.InstanceNumber
        result = store_instance(organisation, encode(ds), source="upload")
    study = Study.objects.get(study_instance_uid=result.study_instance_uid)
    share, _ = ready_share(organisation, [study], delivery="url", email="")
    response, data = get(logged_in_client(share), "/r/download/dicom.zip")
    assert response.status_code == 200
    unzip(data, tmp_path)
    fileset = FileSet(tmp_path / "DICOMDIR")
    assert len(fileset) == 2
    assert sorted(int(i.InstanceNumber) for i in fileset) == [1, 2]


# --- the JPEG ZIP -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_jpeg_zip_has_one_full_size_jpeg_per_frame(with_reports: Recipient, tmp_path: Path) -> None:
    response, data = get(with_reports.client, "/r/download/jpeg.zip")
    assert response.status_code == 200
    assert int(response["Content-Length"]) == len(data)
    assert SAFE_NAME.fullmatch(response["Content-Disposition"])
    archive = unzip(data, tmp_path)
    names = archive.namelist()
    assert all(n.isascii() for n in names)
    jpegs = [n for n in names if n.endswith(".jpg")]
    renders = InstanceRender.objects.filter(
        instance__series__study__in=with_reports.studies, status=InstanceRender.Status.DONE
    )
    assert len(jpegs) == sum(r.frames for r in renders) == 3
    sizes = sorted((r.columns, r.rows) for r in renders)
    opened = []
    for name in jpegs:
        with Image.open(tmp_path / name) as image:
            image.load()
            assert image.format == "JPEG"
            opened.append(image.size)
    assert sorted(opened) == sizes  # full size, not previews
    today = dt.date.today().strftime("%Y-%m-%d")
    assert f"{today} CT thorax/Series 2 - Axial 5 mm/image-0001.jpg" in names
    assert f"{today} X thorax/Series 1 - PA/image-0001.jpg" in names
    assert any(n.endswith(".pdf") for n in names)
    text_reports = [n for n in names if n.endswith(".txt") and n != "README.txt"]
    assert len(text_reports) == 1
    assert "Small nodule <left>" in archive.read(text_reports[0]).decode()
    assert "README.txt" in names


@pytest.mark.django_db
def test_per_study_zip_holds_that_study_only(with_reports: Recipient, tmp_path: Path) -> None:
    cr = with_reports.studies[1]
    response, data = get(with_reports.client, f"/r/studies/{cr.pk}/download/dicom.zip")
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="CR-{cr.study_date:%Y-%m-%d}-dicom.zip"'
    unzip(data, tmp_path)
    assert [i.SOPInstanceUID for i in FileSet(tmp_path / "DICOMDIR")] == [
        i.sop_instance_uid for i in _all_instances([cr])
    ]


# --- Range, determinism ------------------------------------------------------------------------------------


def get_cut_off(client: Client, url: str, keep: int, **headers: str) -> tuple[Any, bytes]:
    """Start a download and break it off after at least ``keep`` bytes, as a dropped connection does: the
    server's stream is closed (its end recorded) with the rest unsent. Its end is written from another thread
    (asgiref's choice after ``aclose``): tests using this need ``transaction=True``."""
    response = client.get(url, headers={"user-agent": DESKTOP, **headers})
    assert response.streaming, response.status_code

    async def take() -> bytes:
        stream = response._iterator  # the view's own generator, closed as the server closes it
        got = b""
        async for chunk in stream:
            got += chunk
            if len(got) >= keep:
                break
        await stream.aclose()
        return got

    return response, async_to_sync(take)()


def counted(share: Share) -> int:
    return DownloadDay.objects.get(share=share).count


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["dicom", "jpeg"])
def test_an_interrupted_download_resumes_with_the_same_bytes(
    recipient: Recipient, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive, "READ_SIZE", 4096)  # several pieces even for this small ZIP
    url = f"/r/download/{kind}.zip"
    response, full = get(recipient.client, url)
    assert response.status_code == 200
    etag = response["ETag"]
    response, start = get_cut_off(recipient.client, url, keep=len(full) // 3)
    assert response.status_code == 200
    cut = len(start)
    assert 0 < cut < len(full)
    assert counted(recipient.share) == 2
    response, rest = get(recipient.client, url, range=f"bytes={cut}-", **{"if-range": etag})
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {cut}-{len(full) - 1}/{len(full)}"
    assert int(response["Content-Length"]) == len(rest)
    assert start + rest == full
    response, middle = get(recipient.client, url, range="bytes=100-199")
    assert (response.status_code, middle) == (206, full[100:200])
    response, tail = get(recipient.client, url, range="bytes=-22")  # the end of central directory record
    assert (response.status_code, tail) == (206, full[-22:])
    response, _ = get(recipient.client, url, range=f"bytes={len(full)}-")
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(full)}"
    head = recipient.client.head(url, headers={"user-agent": DESKTOP})
    assert (head.status_code, int(head["Content-Length"]), head["ETag"]) == (200, len(full), etag)
    # The continuations of the broken-off download (and the HEAD) did not count.
    assert counted(recipient.share) == 2
    response, again = get(recipient.client, url)
    assert again == full  # deterministic: a new request gives the same bytes
    assert counted(recipient.share) == 3


@pytest.mark.django_db
def test_a_range_beyond_what_a_download_paid_for_counts(recipient: Recipient) -> None:
    """A24: once a counted download's bytes were sent, ``Range: bytes=1-`` is a new download (it was free)."""
    url = "/r/download/dicom.zip"
    response, full = get(recipient.client, url)
    assert counted(recipient.share) == 1
    for n in range(2, 5):
        response, rest = get(recipient.client, url, range="bytes=1-")
        assert (response.status_code, rest) == (206, full[1:])
        assert counted(recipient.share) == n
    starts = AuditEvent.objects.filter(action="recipient.download.start", outcome="success")
    assert [e.detail["counted"] for e in starts.order_by("pk")] == [True] * 4


@pytest.mark.django_db
def test_ranges_at_the_daily_limit_are_refused(recipient: Recipient, radshare_config: Any) -> None:
    """The attack run's case: after the last download of the day, ranges not starting at 0 went through."""
    radshare_config(downloads_per_day=2)
    study = recipient.studies[0]
    for url in ("/r/download/dicom.zip", f"/r/studies/{study.pk}/download/dicom.zip"):
        response, _ = get(recipient.client, url)
        assert response.status_code == 200
    for url in ("/r/download/dicom.zip", f"/r/studies/{study.pk}/download/dicom.zip", "/r/download/jpeg.zip"):
        for header in ("bytes=1-", "bytes=-100000000"):
            response, data = get(recipient.client, url, range=header)
            assert response.status_code == 429, (url, header)
            assert data.startswith(b"<!doctype html>")  # the refusal page, no ZIP bytes
    assert counted(recipient.share) == 2


@pytest.mark.django_db(transaction=True)
def test_another_session_cannot_continue_a_download(
    recipient: Recipient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive, "READ_SIZE", 4096)
    url = "/r/download/jpeg.zip"
    _, start = get_cut_off(recipient.client, url, keep=5000)
    other = logged_in_client(recipient.share)  # the same share, logged in in another browser
    response, _ = get(other, url, range=f"bytes={len(start)}-")
    assert response.status_code == 206
    assert counted(recipient.share) == 2  # a range of its own: a download of its own
    response, _ = get(recipient.client, url, range=f"bytes={len(start)}-")
    assert response.status_code == 206
    assert counted(recipient.share) == 2  # the first browser's continuation is free


@pytest.mark.django_db
def test_a_changed_zip_is_sent_whole_on_if_range(recipient: Recipient) -> None:
    response, full = get(recipient.client, "/r/download/jpeg.zip")
    response, data = get(recipient.client, "/r/download/jpeg.zip", range="bytes=10-", **{"if-range": '"old"'})
    assert response.status_code == 200
    assert data == full


# --- the daily limit ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_daily_limit_then_tomorrow_again(
    recipient: Recipient, monkeypatch: pytest.MonkeyPatch, radshare_config: Any
) -> None:
    radshare_config(downloads_per_day=3)
    study = recipient.studies[0]
    for url in ("/r/download/jpeg.zip", f"/r/studies/{study.pk}/download/dicom.zip", "/r/download/dicom.zip"):
        response, _ = get(recipient.client, url)
        assert response.status_code == 200
    response, data = get(recipient.client, "/r/download/jpeg.zip")
    assert response.status_code == 429
    page = text(response, data)
    assert "Try again tomorrow" in page
    assert "Download all studies" in page
    response, data = get(recipient.client, "/r/download")
    page = text(response, data)
    assert "Try again tomorrow" in page
    assert ".zip" not in data.decode()

    recipient.share.refresh_from_db()
    assert recipient.share.status == Share.Status.DOWNLOADED
    starts = AuditEvent.objects.filter(action="recipient.download.start")
    assert starts.filter(outcome="success").count() == 3
    assert starts.filter(outcome="denied", detail__reason="daily limit").count() == 1
    assert AuditEvent.objects.filter(action="recipient.download.end", outcome="success").count() == 3
    entry = starts.filter(outcome="success").first()
    assert entry is not None
    assert entry.detail["size"] > 0
    assert entry.actor_label == f"share {recipient.share.pk}"
    assert recipient.code.replace("-", "") not in str([e.detail for e in AuditEvent.objects.all()])

    tomorrow = services.today() + dt.timedelta(days=1)
    monkeypatch.setattr(services, "today", lambda: tomorrow)
    response, data = get(recipient.client, "/r/download")
    assert "You can download 3 more times today." in text(response, data)
    response, _ = get(recipient.client, "/r/download/jpeg.zip")
    assert response.status_code == 200


@pytest.mark.django_db
def test_no_download_when_the_audit_entry_cannot_be_written(
    recipient: Recipient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("audit store down")

    monkeypatch.setattr("radshare.recipients.session.record", broken)
    client = logged_in_client(recipient.share)
    client.raise_request_exception = False
    response = client.get("/r/download/dicom.zip", headers={"user-agent": DESKTOP})
    assert response.status_code == 500
    assert not response.streaming
    assert not DownloadDay.objects.filter(count__gt=0).exists()  # the count went back with the failed entry
    recipient.share.refresh_from_db()
    assert recipient.share.status != Share.Status.DOWNLOADED


@pytest.mark.django_db
def test_a_missing_stored_file_gives_a_clear_page_not_a_broken_zip(recipient: Recipient) -> None:
    instance = _all_instances(recipient.studies)[0]
    get_storage().delete(instance_key(instance.storage_key))
    response, data = get(recipient.client, "/r/download/dicom.zip")
    assert response.status_code == 500
    assert "could not be read" in text(response, data)
    assert not DownloadDay.objects.filter(count__gt=0).exists()
    response, _ = get(recipient.client, "/r/download/jpeg.zip")  # the JPEG download needs only the renders
    assert response.status_code == 200


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_get_exactly_the_remaining_downloads(
    live_server: Any, organisation: Any, radshare_config: Any
) -> None:
    radshare_config(downloads_per_day=7)
    share, _ = ready_share(organisation, [make_study(organisation, ANNA)], delivery="url", email="")
    DownloadDay.objects.create(share=share, day=services.today(), count=2)  # 5 left
    cookie = logged_in_client(share).cookies[settings.SESSION_COOKIE_NAME].value
    statuses: list[int] = []
    barrier = threading.Barrier(20)

    host, port = live_server.thread.host, live_server.thread.port

    def fetch() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=60)
        barrier.wait()
        try:
            connection.request(
                "GET",
                "/r/download/jpeg.zip",
                headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={cookie}", "User-Agent": DESKTOP},
            )
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
        finally:
            connection.close()

    threads = [threading.Thread(target=fetch) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(statuses) == [200] * 5 + [429] * 15
    assert DownloadDay.objects.get(share=share).count == 7


@pytest.mark.django_db
def test_session_of_another_stage_cannot_download(recipient: Recipient) -> None:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    engine = __import__(settings.SESSION_ENGINE, fromlist=["SessionStore"])
    store = engine.SessionStore()
    now = dt.datetime.now().timestamp()
    store[session.KEY] = {
        "share": recipient.share.pk,
        "stage": session.Stage.SMS_CODE,
        "started": now,
        "seen": now,
    }
    store.save()
    client.cookies[settings.SESSION_COOKIE_NAME] = store.session_key
    response = client.get("/r/download/dicom.zip")
    assert response.status_code == 302


def test_safe_names_and_ranges() -> None:
    assert media.safe_name("Ct thorax/abdomen: 3D <cor>") == "Ct thorax abdomen 3D cor"
    assert media.safe_name("Röntgen Thorax") == "Rontgen Thorax"
    assert media.safe_name("../..") == ""
    assert media.safe_name("con") == "_con"
    parse = views.parse_range
    assert parse("", 100) is None
    assert parse("bytes=0-", 100) == (0, 99)
    assert parse("bytes=10-19", 100) == (10, 19)
    assert parse("bytes=90-200", 100) == (90, 99)
    assert parse("bytes=-10", 100) == (90, 99)
    assert parse("bytes=-500", 100) == (0, 99)
    assert parse("bytes=0-1,5-6", 100) is None
    assert parse("items=0-1", 100) is None
    assert parse("bytes=5-1", 100) is None
    with pytest.raises(views.UnsatisfiableRangeError):
        parse("bytes=100-", 100)
    with pytest.raises(views.UnsatisfiableRangeError):
        parse("bytes=-0", 100)


def test_file_names_say_modality_and_date_not_an_id() -> None:
    def study(modalities: str, date: dt.date | None) -> Study:
        return Study(modalities_in_study=modalities, study_date=date)

    name = views._filename
    ct_with_reports = study("CT\\DOC\\SR", dt.date(2025, 3, 14))
    # The images' modality, not the reports'.
    assert name("dicom", [ct_with_reports]) == "CT-2025-03-14-dicom.zip"
    assert name("jpeg", [study("CT\\PT", dt.date(2025, 3, 14))]) == "CT-PT-2025-03-14-jpeg.zip"
    assert name("dicom", [study("MR", None)]) == "MR-dicom.zip"
    assert name("dicom", [study("SR", dt.date(2025, 1, 2))]) == "radiology-2025-01-02-dicom.zip"
    assert name("dicom", [study("M/R é<x>", dt.date(2025, 1, 2))]) == "MRX-2025-01-02-dicom.zip"  # ASCII only
    several = [ct_with_reports, study("CR", dt.date(2024, 11, 2)), study("MR", None)]
    assert name("jpeg", several) == "radiology-2025-03-14-jpeg.zip"  # the newest study's date
