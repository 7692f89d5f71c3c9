"""`radshare storage check [--hash] [--repair [--force]]` (studies/integrity.py, imaging/integrity.py): a real
study stored through ingest and rendered, real files damaged on disk, the command run as an operator runs it; then
what the sender and the recipient see, and the download without the broken instances."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from radshare.core.storage import instance_key, render_key
from radshare.imaging import services as imaging
from radshare.imaging.models import InstanceRender
from radshare.studies.models import Instance, Study
from tests.downloads.test_downloads import DESKTOP, body
from tests.recipients.conftest import logged_in_client, ready_share
from tests.shares.helpers import ANNA
from tests.studies.factories import make_study

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume:Warning"),
]

ORPHAN = "instances/ff/ee/ffee0000000000000000000000000000-0000000000000000.dcm"
YOUNG = "instances/ff/ee/ffee0000000000000000000000000000-1111111111111111.dcm"
TWO_HOURS = 2 * 3600


def check(*options: str) -> tuple[int, str]:
    """The command's exit code and what it printed (its last line is the error, as the console shows it)."""
    out = io.StringIO()
    try:
        call_command("storage", "check", *options, stdout=out)
    except CommandError as exc:
        return exc.returncode, f"{out.getvalue()}{exc}\n"
    return 0, out.getvalue()


def put_file(root: Path, key: str, data: bytes, age: float = 0) -> Path:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def page_text(response: Any) -> str:
    assert response.status_code == 200
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


@pytest.fixture
def study(organisation: Any) -> Study:
    """A CT of four images, stored through ingest, rendered, in a ready share."""
    made = make_study(organisation, ANNA, study_date=dt.date(2025, 3, 4), images=4)
    imaging.render_pending_now(parallel=False)
    return made


def instances(study: Study) -> list[Instance]:
    return list(Instance.objects.filter(series__study=study).order_by("pk"))


def test_a_clean_storage_passes_both_ways(study: Study) -> None:
    code, out = check("--hash")
    assert code == 0, out
    assert "instances: 4 files, 4 rows checked" in out
    assert "renders: " in out
    assert "The index and the storage agree." in out


def test_damage_is_found_repaired_and_shown_to_sender_and_recipient(
    study: Study, storage_root: Path, organisation: Any, sender: Any
) -> None:
    share, _ = ready_share(organisation, [study], delivery="url", email="")
    gone, changed, unrendered, whole = instances(study)
    (storage_root / instance_key(gone.storage_key)).unlink()
    original = (storage_root / instance_key(changed.storage_key)).read_bytes()
    damaged = original[:-1] + bytes([original[-1] ^ 0xFF])  # one byte of the pixels, the same size
    (storage_root / instance_key(changed.storage_key)).write_bytes(damaged)
    (storage_root / render_key(unrendered.pk, 0, "thumb")).unlink()
    put_file(storage_root, ORPHAN, b"left by a crash", age=TWO_HOURS)
    put_file(storage_root, YOUNG, b"an ingest in progress")

    code, out = check()  # sizes only: the changed byte goes unseen
    assert code == 1
    assert f"instance {gone.pk}: {instance_key(gone.storage_key)}" in out
    assert "orphans: 1 (files no row knows, older than 1 hour)" in out
    assert f"{ORPHAN} (2.0 h old)" in out
    assert "recent: 1 (files no row knows yet" in out
    assert YOUNG in out
    assert f"instance {unrendered.pk}: {render_key(unrendered.pk, 0, 'thumb')}" in out
    assert "changed" not in out.split("renders:")[0]
    assert "3 problems found; `radshare storage check --repair` deals with them" in out

    code, out = check("--hash")
    assert code == 1
    assert f"instance {changed.pk}: {instance_key(changed.storage_key)} (SHA-256 differs)" in out
    assert "4 problems found" in out
    # Internal ids and storage keys only: no name, no UID that could identify the patient.
    for secret in (
        "Jansen",
        "Anna",
        study.study_instance_uid,
        *(i.sop_instance_uid for i in instances(study)),
    ):
        assert secret not in out

    code, out = check("--hash", "--repair")
    assert code == 1  # what was found is reported, also when repaired
    assert "repaired: 1 deleted, 2 marked broken" in out
    assert "repaired: 1 rendered again" in out
    assert "4 problems found and repaired; run the check again to confirm" in out
    assert not (storage_root / ORPHAN).exists()
    assert (storage_root / YOUNG).exists()  # too young to judge
    assert {i.pk for i in Instance.objects.filter(broken_at__isnull=False)} == {gone.pk, changed.pk}
    assert InstanceRender.objects.get(instance=unrendered).status == InstanceRender.Status.PENDING
    imaging.render_pending_now(parallel=False)
    assert (storage_root / render_key(unrendered.pk, 0, "thumb")).exists()

    code, out = check("--hash")
    assert code == 0, out
    assert "known broken: 2 (marked broken before" in out
    assert f"instance {gone.pk}: {instance_key(gone.storage_key)} (missing)" in out
    assert f"instance {changed.pk}: {instance_key(changed.storage_key)} (changed)" in out
    assert "The index and the storage agree." in out

    # The sender's study page says so.
    portal = Client(headers={"accept-language": "en"})
    portal.force_login(sender)
    text = page_text(portal.get(f"/portal/studies/{study.pk}/"))
    assert "2 images of this study are damaged or missing in storage." in text

    # So do the recipient's study list and download page; the download leaves them out and tells why.
    recipient = logged_in_client(share)
    headers = {"user-agent": DESKTOP}
    text = page_text(recipient.get("/r/studies", headers=headers))
    assert "2 images of this study are damaged or missing and are left out of downloads." in text
    text = page_text(recipient.get("/r/download", headers=headers))
    assert "2 images are damaged or missing and are left out of the download." in text
    response = recipient.get("/r/download/dicom.zip", headers=headers)
    data = body(response)
    assert response.status_code == 200
    assert int(response["Content-Length"]) == len(data)
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    files = sorted(n for n in archive.namelist() if n.startswith("DICOM/"))
    assert [archive.read(n) for n in files] == [
        (storage_root / instance_key(i.storage_key)).read_bytes() for i in (unrendered, whole)
    ]
    note = "Not included: 2 images whose stored files are damaged or missing."
    assert note in archive.read("README.TXT").decode()
    assert note in archive.read("INDEX.HTM").decode()
    response = recipient.get("/r/download/jpeg.zip", headers=headers)
    archive = zipfile.ZipFile(io.BytesIO(body(response)))
    assert len([n for n in archive.namelist() if n.endswith(".jpg")]) == 2
    assert note in archive.read("README.txt").decode()

    # The file back from a backup: the check sees it whole, and a repair clears the mark.
    (storage_root / instance_key(changed.storage_key)).write_bytes(original)
    code, out = check()
    assert code == 1
    assert f"restored: 1 (marked broken, but the file is whole again)\n      instance {changed.pk}" in out
    check("--repair")
    assert list(Instance.objects.filter(broken_at__isnull=False)) == [gone]
    assert check()[0] == 0


def test_dicomweb_neither_lists_nor_serves_a_broken_instance(
    study: Study, organisation: Any, radshare_config: Any
) -> None:
    radshare_config(recipient_dicomweb=True)
    share, _ = ready_share(organisation, [study], delivery="url", email="")
    broken, *rest = instances(study)
    Instance.objects.filter(pk=broken.pk).update(broken_at=dt.datetime.now(dt.UTC))
    client = logged_in_client(share)
    study_url = f"/r/dicomweb/studies/{study.study_instance_uid}"
    response = client.get(f"{study_url}/instances", headers={"accept": "application/dicom+json"})
    listed = json.loads(response.content)
    assert [r["00080018"]["Value"][0] for r in listed] == [i.sop_instance_uid for i in rest]
    assert {r["00201208"]["Value"][0] for r in listed} == {3}  # counted without it, as its series
    assert {r["00201209"]["Value"][0] for r in listed} == {3}
    series_uid = broken.series.series_instance_uid
    url = f"{study_url}/series/{series_uid}/instances/{broken.sop_instance_uid}"
    any_syntax = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    assert client.get(url, headers={"accept": any_syntax}).status_code == 404
    assert client.get(f"{url}/metadata", headers={"accept": "application/dicom+json"}).status_code == 404
    response = client.get(study_url, headers={"accept": any_syntax})
    assert body(response).count(b"Content-Type: application/dicom") == 3


def test_preset_files_of_a_second_pass_under_way_are_no_orphans(study: Study, storage_root: Path) -> None:
    """A second pass cut short (its worker stopped) leaves CT preset files its render does not name yet: while the
    pass is due they are being made; once it is recorded without them, they are orphans."""
    first = instances(study)[0]
    presets = [storage_root / render_key(first.pk, 0, kind) for kind in ("soft", "lung", "bone")]
    then = time.time() - TWO_HOURS
    for path in presets:
        os.utime(path, (then, then))
    InstanceRender.objects.filter(instance=first).update(presets=[], presets_due=True)
    code, out = check()
    assert code == 0, out
    assert "orphans" not in out
    InstanceRender.objects.filter(instance=first).update(presets_due=False)
    code, out = check()
    assert code == 1
    assert "orphans: 3 (files no row knows, older than 1 hour)" in out.split("renders:")[1]
    assert render_key(first.pk, 0, "lung") in out


def test_a_preview_kept_as_the_full_size_jpeg_is_no_missing_file(study: Study, storage_root: Path) -> None:
    """An image no larger than the preview size has no preview file: its full-size JPEG is the preview. A copy made
    by an earlier version is no orphan; a render whose preview has a file of its own misses it when it is gone."""
    first = instances(study)[0]
    render = InstanceRender.objects.get(instance=first)
    assert render.kept_as("preview") == "full"
    assert not (storage_root / render_key(first.pk, 0, "preview")).exists()
    copy = put_file(storage_root, render_key(first.pk, 0, "preview"), b"a copy", age=TWO_HOURS)
    code, out = check()
    assert code == 0, out
    assert "orphans" not in out
    copy.unlink()
    InstanceRender.objects.filter(instance=first).update(preview_rows=render.rows // 2)
    code, out = check()
    assert code == 1
    assert f"instance {first.pk}: {render_key(first.pk, 0, 'preview')}" in out


def test_a_study_being_destroyed_is_skipped(study: Study, storage_root: Path) -> None:
    gone = instances(study)[0]
    Study.objects.filter(pk=study.pk).update(destroy_started_at=dt.datetime.now(dt.UTC))
    (storage_root / instance_key(gone.storage_key)).unlink()
    code, out = check("--repair")
    assert code == 0, out
    assert "skipped: 4 (of a study being destroyed" in out  # three files there, one gone
    assert not Instance.objects.filter(broken_at__isnull=False).exists()


def test_a_storage_that_does_not_belong_to_the_database_is_not_repaired(
    study: Study, storage_root: Path, radshare_config: Any, tmp_path: Path
) -> None:
    """An empty storage (not mounted) marks nothing broken, and a flood of orphans (a database restored from an
    older backup) deletes nothing, unless the operator insists."""
    radshare_config(storage_url=f"file://{tmp_path / 'unmounted'}")
    code, out = check("--repair")
    assert code == 1
    assert "missing: 4" in out
    assert (
        "not repaired: instances: 4 to be marked broken, but its storage area is empty (not mounted?)" in out
    )
    assert "8 problems found; not all repaired" in out
    assert not Instance.objects.filter(broken_at__isnull=False).exists()

    radshare_config(storage_url=f"file://{storage_root}")
    for n in range(101):
        put_file(storage_root, f"instances/00/00/{n:032x}-0000000000000000.dcm", b"x", age=TWO_HOURS)
    code, out = check("--repair")
    assert "orphans: 101" in out
    assert "not repaired: instances: 101 to be deleted, but that is more than 100 of 105" in out
    assert len(list((storage_root / "instances/00/00").iterdir())) == 101
    code, out = check("--repair", "--force")
    assert "repaired: 101 deleted" in out
    assert check()[0] == 0
    assert check("--force")[0] == 2
