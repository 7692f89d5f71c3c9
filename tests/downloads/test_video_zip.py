"""Videos in the downloads (docs/architecture.md "Renders", "Downloads"): the JPEG ZIP holds a run's MP4 beside
its frames, from its recorded size and CRC-32; the DICOM ZIP is the same with or without it."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db.models import F
from django.urls import reverse

from radshare.core.storage import get_storage, video_key
from radshare.downloads.media import cache
from radshare.imaging.models import InstanceRender
from radshare.shares.destruction import destroy_due
from radshare.shares.services import SYSTEM, revoke
from tests import s3
from tests.downloads.test_downloads import get
from tests.imaging.test_video import assert_plays_like, store_run
from tests.recipients.conftest import logged_in_client, ready_share

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume:Warning"),
]


def test_the_jpeg_zip_holds_the_run_as_mp4_beside_its_frames(organisation: Any, tmp_path: Path) -> None:
    study, instance = store_run(organisation, frames=24, size=64, frame_time=40)
    share, _ = ready_share(organisation, [study], delivery="url", email="")
    client = logged_in_client(share)

    response, data = get(client, "/r/download/jpeg.zip")
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None  # every CRC right, the MP4's as recorded at render time
    names = archive.namelist()
    [mp4] = [n for n in names if n.endswith(".mp4")]
    frames = sorted(n for n in names if n.endswith(".jpg"))
    assert len(frames) == 24
    folder = mp4.rsplit("/", 1)[0]
    assert mp4 == f"{folder}/image-0001.mp4"
    assert all(n.startswith(f"{folder}/image-") for n in frames)  # the same folder as its frames
    assert archive.read(mp4) == get_storage().open(video_key(instance.pk)).read()
    assert_plays_like(archive.read(mp4), 24, 0.04)
    assert "video (MP4)" in archive.read("README.txt").decode()


def test_the_dicom_zip_is_the_same_with_or_without_the_video(organisation: Any) -> None:
    study, instance = store_run(organisation, frames=12, size=64, frame_time=40)
    share, _ = ready_share(organisation, [study], delivery="url", email="")
    client = logged_in_client(share)
    response, with_video = get(client, "/r/download/dicom.zip")
    assert response.status_code == 200
    assert not any(n.endswith(".mp4") for n in zipfile.ZipFile(io.BytesIO(with_video)).namelist())

    # The same study as it was before videos were made: no MP4, nothing recorded of one; its layout made again.
    get_storage().delete(video_key(instance.pk))
    InstanceRender.objects.filter(instance=instance).update(
        jpeg_size=F("jpeg_size") - F("video_size"), video_size=0, video_crc32=0, video_frame_rate=0
    )
    cache.forget([share.pk])
    cache._RECENT.clear()
    response, without = get(client, "/r/download/dicom.zip")
    assert response.status_code == 200
    assert without == with_video  # byte for byte

    _response, jpeg = get(client, "/r/download/jpeg.zip")
    assert not any(n.endswith(".mp4") for n in zipfile.ZipFile(io.BytesIO(jpeg)).namelist())
    assert "video (MP4)" not in zipfile.ZipFile(io.BytesIO(jpeg)).read("README.txt").decode()


def test_on_object_storage_the_video_is_stored_served_zipped_and_destroyed(
    organisation: Any, radshare_config: Any
) -> None:
    bucket = s3.new_bucket("hospital")
    radshare_config(storage_url=s3.storage_url(bucket))
    study, instance = store_run(organisation, frames=10, size=64, frame_time=50)
    share, _ = ready_share(organisation, [study], delivery="url", email="")
    data = bucket.open(video_key(instance.pk)).read()
    assert_plays_like(data, 10, 0.05)
    client = logged_in_client(share)
    url = reverse("viewer:video", args=[instance.render.pk])
    part = client.get(url, headers={"range": "bytes=8-99"})
    assert (part.status_code, part.content) == (206, data[8:100])
    whole = client.get(url)
    assert (whole.status_code, b"".join(whole.streaming_content)) == (200, data)  # type: ignore[attr-defined]

    _response, zipped = get(client, "/r/download/jpeg.zip")
    archive = zipfile.ZipFile(io.BytesIO(zipped))
    assert archive.testzip() is None
    [mp4] = [n for n in archive.namelist() if n.endswith(".mp4")]
    assert archive.read(mp4) == data
    local = Path(settings.RADSHARE.data_dir)
    assert [p for p in local.rglob("*") if p.is_file() and p.suffix in (".mp4", ".jpg")] == []

    revoke(share, SYSTEM)
    destroy_due()
    assert not bucket.exists(video_key(instance.pk))
    assert [key for key in bucket.iterate() if key.startswith("renders/")] == []
