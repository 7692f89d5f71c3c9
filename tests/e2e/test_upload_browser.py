"""The upload page in a real browser (Debian's Chromium through Playwright): the script's path with progress and
the report, and the plain form without script, both with a CD/DVD folder picked by the folder button."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from pydicom.fileset import FileSet

from radshare.organisations.models import Sender
from radshare.studies.models import Instance
from radshare.studies.synthetic import FakePatient, ct_series
from tests.e2e.conftest import log_in


@pytest.fixture
def dvd(tmp_path: Path) -> tuple[Path, set[str]]:
    """A CD/DVD export: DICOMDIR, the images it lists, and the usual extras of such a disc."""
    patient = FakePatient("P100", "Jansen^Anna", dt.date(1968, 3, 14), sex="F")
    fs = FileSet()
    datasets = ct_series(patient, count=3, size=32)
    for ds in datasets:
        ds.StudyID = "1"
        fs.add(ds)
    root = tmp_path / "DVD"
    fs.write(root)
    (root / "AUTORUN.INF").write_text("[autorun]\r\nopen=viewer.exe\r\n")
    return root, {ds.SOPInstanceUID for ds in datasets}


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
def test_folder_upload_with_progress_and_report(
    browser: Any, live_server: Any, sender: Sender, dvd: tuple[Path, set[str]]
) -> None:
    root, uids = dvd
    context = browser.new_context(locale="en-GB", extra_http_headers={"Accept-Language": "en"})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    log_in(page, live_server.url, sender)
    page.goto(f"{live_server.url}/portal/upload/")
    assert page.is_visible("#upload-drop")  # the script runs (drag and drop offered)

    page.set_input_files("#upload-folder", str(root))
    assert "5 files selected" in page.inner_text("#upload-selection")
    page.click("#upload-submit")
    page.wait_for_selector("#upload-result h2")

    report = page.inner_text("#upload-result")
    assert "3\nstored" in report or "3 stored" in report
    assert "Done. The report is below." in page.inner_text("#upload-status")
    assert page.evaluate("document.activeElement.id") == "upload-report-title"
    assert set(Instance.objects.values_list("sop_instance_uid", flat=True)) == uids
    page.click("summary:has-text('All files')")
    rows = page.inner_text("#upload-result table.files >> nth=-1")
    assert "DVD/PT000000/ST000000/SE000000/IM000000" in rows
    assert "DVD/DICOMDIR" in rows
    assert problems == []
    context.close()


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
def test_folder_upload_without_script_keeps_relative_paths(
    browser: Any, live_server: Any, sender: Sender, dvd: tuple[Path, set[str]]
) -> None:
    root, uids = dvd
    context = browser.new_context(java_script_enabled=False, extra_http_headers={"Accept-Language": "nl"})
    page = context.new_page()
    log_in(page, live_server.url, sender)
    page.goto(f"{live_server.url}/portal/upload/")
    assert page.is_hidden("#upload-drop")

    page.set_input_files("#upload-folder", str(root))
    page.click("#upload-submit")
    page.wait_for_selector("#upload-report-title")

    assert "Uploadverslag" in page.inner_text("#upload-report-title")
    assert set(Instance.objects.values_list("sop_instance_uid", flat=True)) == uids
    # The browser sent each file's path inside the folder, so the DICOMDIR's references were found.
    html = page.content()
    assert "DVD/PT000000/ST000000/SE000000/IM000002" in html
    assert "Staat in de DICOMDIR, maar niet in de upload." not in html
    context.close()
