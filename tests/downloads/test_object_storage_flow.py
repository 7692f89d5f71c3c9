"""The whole share flow on object storage (RADSHARE_STORAGE_URL=s3://..., docs/operations.md "Object storage"),
against a real S3 API on loopback (tests/s3.py): instances stored as received, rendered, shared, downloaded as a
DICOM ZIP byte for byte and as JPEGs, nothing of them on the local disk, and destroyed from the bucket when the
share ends."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pydicom
import pytest
from django.conf import settings

from radshare.shares.destruction import destroy_due
from radshare.shares.services import Actor, revoke
from radshare.studies.models import Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import ct_series, encode
from tests import s3
from tests.downloads.test_downloads import get
from tests.recipients.conftest import logged_in_client, ready_share
from tests.shares.helpers import ANNA

pytestmark = pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume:Warning")


@pytest.mark.django_db
def test_store_share_download_and_destroy_on_object_storage(organisation: Any, radshare_config: Any) -> None:
    bucket = s3.new_bucket("hospital")
    radshare_config(storage_url=s3.storage_url(bucket))
    sent: dict[str, bytes] = {}
    for ds in ct_series(ANNA, count=3, size=64):
        data = encode(ds)
        result = store_instance(organisation, data, source="upload")
        sent[str(ds.SOPInstanceUID)] = data
    study = Study.objects.get(organisation=organisation, study_instance_uid=result.study_instance_uid)
    share, _ = ready_share(organisation, [study], delivery="url", email="")
    stored = list(bucket.iterate())
    assert sum(key.startswith("instances/") for key in stored) == 3
    assert any(key.startswith("renders/") for key in stored)

    client = logged_in_client(share)
    response, data = get(client, "/r/download/dicom.zip")
    assert response.status_code == 200
    assert int(response["Content-Length"]) == len(data)
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    received = {}
    for name in archive.namelist():
        member = archive.read(name)
        if name.rsplit("/", 1)[-1] != "DICOMDIR" and member[128:132] == b"DICM":
            received[str(pydicom.dcmread(io.BytesIO(member), stop_before_pixels=True).SOPInstanceUID)] = (
                member
            )
    assert received == sent  # byte for byte as the PACS sent them

    response, data = get(client, "/r/download/jpeg.zip")
    assert response.status_code == 200
    jpegs = [n for n in zipfile.ZipFile(io.BytesIO(data)).namelist() if n.lower().endswith(".jpg")]
    assert len(jpegs) == 3

    local = Path(settings.RADSHARE.data_dir)
    assert [p for p in local.rglob("*") if p.is_file() and p.suffix in (".dcm", ".jpg")] == []

    revoke(share, Actor())
    destroy_due()
    assert [key for key in bucket.iterate() if key.startswith(("instances/", "renders/"))] == []
    assert not Study.objects.filter(pk=study.pk).exists()
