"""ZIP downloads from recorded CRC-32s and kept layouts (docs/architecture.md "Downloads"): the CRC and size of
every stored file are recorded at ingest and at render time; the ZIP is the same on every request, any range of
it is that slice, its Content-Length is exact, ``unzip -t`` and DCMTK's ``dcmdump`` accept it; a file changed on
disk never makes a silently corrupt ZIP; instances stored before CRCs were kept still download; the layout is
kept per share and variant and goes with the share."""

from __future__ import annotations

import io
import random
import shutil
import subprocess
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from django_tasks_db.models import DBTaskResult

from radshare.core.storage import get_storage, instance_key, layout_folder, render_key
from radshare.downloads.media import cache, dicom
from radshare.downloads.models import DownloadDay
from radshare.downloads.tasks import keep_layouts
from radshare.imaging.models import InstanceRender
from radshare.shares.models import Share
from radshare.shares.services import SYSTEM, revoke
from radshare.shares.signals import share_ready
from radshare.studies.models import Instance
from tests.downloads.test_downloads import get, get_cut_off
from tests.recipients.conftest import Recipient

pytestmark = pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume:Warning")

URL = "/r/download/{kind}.zip"


def _instances(recipient: Recipient) -> list[Instance]:
    return list(Instance.objects.filter(series__study__in=recipient.studies).order_by("pk"))


def _kept(recipient: Recipient) -> list[str]:
    return list(get_storage().iterate(layout_folder(recipient.share.pk)))


@pytest.mark.django_db
def test_ingest_and_rendering_record_what_the_zip_needs(recipient: Recipient) -> None:
    storage = get_storage()
    for instance in _instances(recipient):
        with storage.open(instance_key(instance.storage_key)) as f:
            data = f.read()
        assert (instance.size, instance.crc32) == (len(data), zlib.crc32(data))
    for render in InstanceRender.objects.filter(instance__in=_instances(recipient)):
        for kind in {render.kept_as("full"), render.kept_as("preview")}:
            recorded = render.checksums[kind]
            assert len(recorded) == render.frames
            for frame, (size, crc) in enumerate(recorded):
                with storage.open(render_key(render.instance_id, frame, kind)) as f:
                    data = f.read()
                assert [size, crc] == [len(data), zlib.crc32(data)]


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["dicom", "jpeg"])
def test_the_same_bytes_every_time_and_any_range_is_their_slice(recipient: Recipient, kind: str) -> None:
    url = URL.format(kind=kind)
    response, full = get(recipient.client, url)
    assert response.status_code == 200
    assert int(response["Content-Length"]) == len(full)  # exact, from the index alone
    etag = response["ETag"]
    assert len(_kept(recipient)) == 1
    response, again = get(recipient.client, url)
    assert (again, response["ETag"]) == (full, etag)
    # Made again from scratch (the kept layout gone, the process's memory of it too): the same bytes.
    cache.forget([recipient.share.pk])
    response, rebuilt = get(recipient.client, url)
    assert (rebuilt, response["ETag"]) == (full, etag)
    rng = random.Random(15)  # noqa: S311 - offsets, not secrets
    for _ in range(12):
        first = rng.randrange(len(full))
        last = rng.randrange(first, len(full))
        response, part = get(recipient.client, url, range=f"bytes={first}-{last}", **{"if-range": etag})
        assert response.status_code == 206
        assert int(response["Content-Length"]) == len(part) == last - first + 1
        assert part == full[first : last + 1]
    head = recipient.client.head(url, headers={"user-agent": "Mozilla/5.0 (X11; Linux x86_64)"})
    assert int(head["Content-Length"]) == len(full)


@pytest.mark.django_db(transaction=True)
def test_a_resumed_download_is_the_full_one(recipient: Recipient) -> None:
    url = URL.format(kind="dicom")
    _, full = get(recipient.client, url)
    response, start = get_cut_off(recipient.client, url, keep=len(full) // 2)
    response, rest = get(
        recipient.client, url, range=f"bytes={len(start)}-", **{"if-range": response["ETag"]}
    )
    assert response.status_code == 206
    assert start + rest == full


@pytest.mark.django_db
@pytest.mark.skipif(not (shutil.which("unzip") and shutil.which("dcmdump")), reason="needs unzip and DCMTK")
def test_unzip_and_dcmdump_accept_the_dicom_zip(recipient: Recipient, tmp_path: Path) -> None:
    _, full = get(recipient.client, URL.format(kind="dicom"))
    path = tmp_path / "media.zip"
    path.write_bytes(full)
    tested = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True, check=False)
    assert tested.returncode == 0, tested.stdout
    assert "No errors detected" in tested.stdout
    subprocess.run(["unzip", "-q", str(path), "-d", str(tmp_path / "out")], check=True)
    dumped = subprocess.run(
        ["dcmdump", "-q", str(tmp_path / "out" / "DICOMDIR")], capture_output=True, text=True, check=False
    )
    assert dumped.returncode == 0, dumped.stderr
    assert dumped.stdout.count("(0004,1430) CS [IMAGE]") == len(_instances(recipient))
    assert "E: " not in dumped.stderr


@pytest.mark.django_db
def test_a_file_changed_on_disk_is_never_a_silently_corrupt_zip(recipient: Recipient) -> None:
    url = URL.format(kind="dicom")
    _, before = get(recipient.client, url)
    storage = get_storage()
    first, second = _instances(recipient)[:2]
    # The same size, other bytes: the ZIP carries the CRC recorded at ingest, so the unpacker reports that file.
    path = storage.local_path(instance_key(first.storage_key))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    _, after = get(recipient.client, url)
    assert len(after) == len(before)
    with zipfile.ZipFile(io.BytesIO(after)) as archive:
        damaged = archive.testzip()
    assert damaged is not None
    assert damaged.startswith("DICOM/")
    # Another size: refused before the first byte with the page that says a file could not be read, not counted.
    days = DownloadDay.objects.get(share=recipient.share).count
    path = storage.local_path(instance_key(second.storage_key))
    path.write_bytes(path.read_bytes() + b"extra")
    response, page = get(recipient.client, url)
    assert response.status_code == 500
    assert b"could not be read" in page
    assert DownloadDay.objects.get(share=recipient.share).count == days


@pytest.mark.django_db
def test_instances_and_renders_without_recorded_crcs_still_download(recipient: Recipient) -> None:
    """Rows stored before CRCs were kept: the layout reads each file once and keeps what it found."""
    Instance.objects.filter(series__study__in=recipient.studies).update(crc32=None)
    InstanceRender.objects.filter(instance__series__study__in=recipient.studies).update(checksums={})
    storage = get_storage()
    for kind in ("dicom", "jpeg"):
        response, full = get(recipient.client, URL.format(kind=kind))
        assert response.status_code == 200
        with zipfile.ZipFile(io.BytesIO(full)) as archive:
            assert archive.testzip() is None
            if kind == "dicom":
                files = sorted(n for n in archive.namelist() if n.startswith("DICOM/"))
                stored = []
                for instance in _instances(recipient):
                    with storage.open(instance_key(instance.storage_key)) as f:
                        stored.append(f.read())
                assert sorted(archive.read(n) for n in files) == sorted(stored)


@pytest.mark.django_db
def test_a_legacy_file_no_longer_what_was_received_is_refused(recipient: Recipient) -> None:
    """Without a recorded CRC the file's CRC is computed from its bytes: its SHA-256 is checked first."""
    Instance.objects.filter(series__study__in=recipient.studies).update(crc32=None)
    instance = _instances(recipient)[0]
    path = get_storage().local_path(instance_key(instance.storage_key))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    response, page = get(recipient.client, URL.format(kind="dicom"))
    assert response.status_code == 500
    assert b"could not be read" in page


@pytest.mark.django_db
def test_the_layout_is_built_once_and_goes_with_the_share(
    recipient: Recipient, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    url = URL.format(kind="dicom")
    _, full = get(recipient.client, url)
    cache._RECENT.clear()  # as another web process: it reads the kept layout

    def not_again(*args: Any) -> Any:
        raise AssertionError("the layout was built again")

    monkeypatch.setattr(dicom, "dicomdir", not_again)
    monkeypatch.setattr(dicom, "directory_entries", not_again)
    _, again = get(recipient.client, url)
    assert again == full
    get(recipient.client, URL.format(kind="jpeg"))  # another variant, kept beside it
    assert len(_kept(recipient)) == 2
    with django_capture_on_commit_callbacks(execute=True):
        revoke(recipient.share, SYSTEM)
    assert _kept(recipient) == []


@pytest.mark.django_db
def test_a_changed_share_gets_a_new_layout_and_the_old_one_goes(recipient: Recipient) -> None:
    url = URL.format(kind="dicom")
    _, full = get(recipient.client, url)
    (old,) = _kept(recipient)
    Instance.objects.filter(pk=_instances(recipient)[0].pk).update(broken_at="2026-01-01T00:00:00Z")
    _, smaller = get(recipient.client, url)
    (new,) = _kept(recipient)
    assert new != old
    assert len(smaller) < len(full)


@pytest.mark.django_db
def test_a_ready_share_gets_its_layouts_ahead(
    recipient: Recipient, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        share_ready.send(sender=Share, share=recipient.share)
    assert DBTaskResult.objects.filter(task_path=keep_layouts.module_path).exists()
    assert keep_layouts.call(recipient.share.pk) == 2
    assert len(_kept(recipient)) == 2  # DICOM and JPEG, in the share's language
    cache._RECENT.clear()

    def not_again(*args: Any) -> Any:
        raise AssertionError("the layout was built again")

    monkeypatch.setattr(dicom, "dicomdir", not_again)
    response, _ = get(recipient.client, URL.format(kind="dicom"))
    assert response.status_code == 200
