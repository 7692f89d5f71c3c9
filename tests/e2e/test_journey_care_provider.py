"""A care provider's journey on a desktop (issue 14c), in Dutch and in English: log in with the link, download the
studies as DICOM media and as JPEG pictures, check both ZIPs (every entry's CRC, a DICOMDIR that pydicom reads and
whose records point at the files), open INDEX.HTM from the unzipped media in the browser with the network off, and
find the download after the daily limit refused with its message. axe-core checks every page (tests/e2e/journey.py),
the offline pages too."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from PIL import Image
from pydicom import dcmread
from pydicom.fileset import FileSet

from radshare.shares import codes
from tests.e2e.journey import Journey, new_context, type_birth_date, type_sms_code
from tests.recipients.conftest import BIRTH, ready_share, sms_codes
from tests.shares.helpers import ANNA, make_study

IMAGES = 3  # a CT of 2 images and a CR of 1


def _download(page: Any, link: Any, target: Path) -> Path:
    with page.expect_download() as info:
        link.click()
    info.value.save_as(target)
    return target


def _check_dicom_zip(path: Path, into: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None  # every entry's CRC is right
        names = set(archive.namelist())
        assert {"DICOMDIR", "INDEX.HTM", "README.TXT"} <= names
        archive.extractall(into)
    fileset = FileSet(dcmread(into / "DICOMDIR"))
    instances = list(fileset)
    assert len(instances) == IMAGES
    for instance in instances:
        ds = instance.load()  # the record's file is there and is DICOM
        assert ds.PatientID == ANNA.patient_id
        assert (into / Path(instance.path).relative_to(fileset.path)).is_file()


def _check_jpeg_zip(path: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        pictures = [n for n in archive.namelist() if n.lower().endswith((".jpg", ".jpeg"))]
        assert len(pictures) == IMAGES
        for name in pictures:
            with archive.open(name) as f:
                Image.open(f).verify()


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("locale", ["nl-NL", "en-GB"])
# The test server is WSGI; radshare runs under ASGI, where a ZIP is streamed by an async iterator on purpose.
@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous iterators")
def test_a_care_provider_downloads_checks_the_media_and_meets_the_daily_limit(
    playwright: Any,
    browser: Any,
    live_server: Any,
    organisation: Any,
    radshare_config: Any,
    tmp_path: Path,
    locale: str,
) -> None:
    sms = tmp_path / "sms.jsonl"
    radshare_config(base_url=live_server.url, sms_url=f"file://{sms}")
    limit = settings.RADSHARE.downloads_per_day
    assert limit == 10  # RADSHARE_DOWNLOADS_PER_DAY's default
    language = locale[:2]
    studies = [make_study(organisation, ANNA), make_study(organisation, ANNA, kind="cr")]
    _share, code = ready_share(
        organisation,
        studies,
        recipient_type="care_provider",
        consent_confirmed=True,
        delivery="url",
        email="",
        language=language,
    )
    context = new_context(playwright, browser, "desktop", locale, accept_downloads=True)
    page = context.new_page()
    journey = Journey(page, f"care-provider-{language}", language)
    t = journey.t

    page.goto(codes.share_url(code))
    type_birth_date(page, BIRTH)
    page.wait_for_url(re.compile(r".*/r/sms-code$"))
    type_sms_code(page, sms_codes(sms)[-1])
    page.wait_for_url(re.compile(r".*/r/studies$"))
    journey.check("studies")
    page.get_by_role("link", name=t("Download all studies")).click()
    page.wait_for_url(re.compile(r".*/r/download$"))
    assert t("As a care provider, choose this one.") in journey.text()
    journey.check("download choice")

    dicom_link = page.get_by_role("link", name=t("Download DICOM (ZIP)"))
    dicom_url = f"{live_server.url}{dicom_link.get_attribute('href')}"
    media = tmp_path / "media"
    _check_dicom_zip(_download(page, dicom_link, tmp_path / "dicom.zip"), media)
    _check_jpeg_zip(
        _download(page, page.get_by_role("link", name=t("Download JPEG (ZIP)")), tmp_path / "jpeg.zip")
    )

    # The unzipped media in the browser, with the network off: the pages and previews come from the folder alone.
    offline = new_context(playwright, browser, "desktop", locale)
    offline.set_offline(True)
    folder = offline.new_page()
    fetched: list[str] = []
    folder.on("request", lambda r: fetched.append(r.url))
    on_disk = Journey(folder, f"care-provider-{language}-media", language)
    folder.goto((media / "INDEX.HTM").as_uri())
    on_disk.check("INDEX.HTM")
    with folder.expect_navigation():
        folder.locator("main a[href$='.HTM']").first.click()
    on_disk.check("study page")
    with folder.expect_navigation():
        folder.locator("main a[href$='.HTM']").first.click()
    image = folder.locator("main img").first
    image.scroll_into_view_if_needed()
    from playwright.sync_api import expect

    expect(image).to_have_js_property("complete", True)
    assert image.evaluate("img => img.naturalWidth") > 0
    on_disk.check("series page")
    assert [url for url in fetched if not url.startswith("file:")] == []
    offline.close()

    # The daily limit: two downloads so far; the rest of today's, then one more is refused.
    for _ in range(limit - 2):
        response = context.request.get(dicom_url)
        assert response.ok
        assert response.body()[:2] == b"PK"
    page.reload()
    used_up = t("You have used all downloads for today (%(limit)s a day). Try again tomorrow.") % {
        "limit": limit
    }
    assert used_up in journey.text()
    assert page.get_by_role("link", name=t("Download DICOM (ZIP)")).count() == 0
    journey.check("no downloads left")
    page.goto(dicom_url)
    assert page.locator("h1").inner_text() == t("No downloads left today")
    assert page.get_by_role("link", name=t("Back to your studies")).count() == 1
    journey.check("download refused")
    context.close()
