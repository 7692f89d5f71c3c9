"""The whole recipient flow through HTTP, as the issue names it: code -> terms + date of birth -> the SMS code
from the file:// backend -> study list -> a viewer image -> the DICOM ZIP and the JPEG ZIP."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from PIL import Image
from pydicom.fileset import FileSet

from radshare.core.storage import get_storage, instance_key
from radshare.shares.models import Share
from radshare.studies.models import Instance
from tests.downloads.test_downloads import body, unzip
from tests.recipients.conftest import log_in, ready_share
from tests.shares.helpers import ANNA, make_study


class Links(HTMLParser):
    """Every href and src of a page: INDEX.HTM must point only at files inside the ZIP."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.targets |= {
            v.split("#")[0] for k, v in attrs if k in ("href", "src") and v and not v.startswith("#")
        }


@pytest.mark.django_db
def test_code_birth_date_sms_list_viewer_and_both_zips(
    organisation: Any, radshare_config: Any, tmp_path: Path
) -> None:
    sms = tmp_path / "sms.jsonl"
    radshare_config(sms_url=f"file://{sms}")
    studies = [make_study(organisation, ANNA), make_study(organisation, ANNA, kind="cr")]
    share, code = ready_share(organisation, studies, delivery="url", email="")
    client = Client(HTTP_ACCEPT_LANGUAGE="en", HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64)")
    log_in(client, code, sms)

    listing = client.get("/r/studies").content.decode()
    ct = studies[0]
    assert f'href="/r/studies/{ct.pk}/"' in listing

    viewer = client.get(f"/r/studies/{ct.pk}/").content.decode()
    data = json.loads(
        re.search(r'<script id="viewer-data" type="application/json">(.*?)</script>', viewer, re.S)[1]
    )
    first = data["series"][0]["images"][0]
    url = first if isinstance(first, str) else first.get("url") or first.get("src")
    image = client.get(url)
    assert image.status_code == 200
    assert image["Content-Type"] == "image/jpeg"

    dicom = client.get("/r/download/dicom.zip")
    assert dicom.status_code == 200
    archive = unzip(body(dicom), tmp_path / "dicom")
    stored = {i.sop_instance_uid: i for i in Instance.objects.filter(series__study__in=studies)}
    fileset = FileSet(tmp_path / "dicom" / "DICOMDIR")
    assert sorted(i.SOPInstanceUID for i in fileset) == sorted(stored)
    storage = get_storage()
    for record in fileset:
        with storage.open(instance_key(stored[record.SOPInstanceUID].storage_key)) as original:
            assert Path(record.path).read_bytes() == original.read()
    links = Links()
    links.feed((tmp_path / "dicom" / "INDEX.HTM").read_text(encoding="utf-8"))
    names = set(archive.namelist())
    assert links.targets
    assert all(target in names for target in links.targets), links.targets - names

    jpeg = client.get("/r/download/jpeg.zip")
    assert jpeg.status_code == 200
    jpegs = [n for n in unzip(body(jpeg), tmp_path / "jpeg").namelist() if n.lower().endswith(".jpg")]
    assert len(jpegs) == len(stored)  # one frame per instance here: 2 CT + 1 CR
    for name in jpegs:
        with Image.open(tmp_path / "jpeg" / name) as img:
            assert img.format == "JPEG"
    share.refresh_from_db()
    assert share.status == Share.Status.DOWNLOADED
