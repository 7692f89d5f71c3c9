"""Renders: the pixel pipeline on pydicom's real sample files, and the background task around it."""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pydicom.data
import pytest
from django.core.management import call_command
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from PIL import Image
from pydicom.pixels import iter_pixels

from radshare.core.storage import FileSystemStorage, Storage, get_storage, render_key
from radshare.imaging import render, services
from radshare.imaging.models import InstanceRender
from radshare.imaging.render import PREVIEW_MAX, THUMB_MAX, RenderJob, render_file
from radshare.imaging.tasks import render_housekeeping, render_pending
from radshare.studies.models import Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import FakePatient, cr_image, ct_series, encode

SAMPLES = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent  # type: ignore[arg-type]
SAMPLE_FILES = sorted(p for p in SAMPLES.rglob("*.dcm"))
PATIENT = FakePatient("R1", "Render^Test", dt.date(1975, 6, 1))
SOURCE = "instances/source.dcm"


def _decodable_frames(path: Path) -> list[tuple[int, int]] | None:
    """(rows, columns) of each frame pydicom itself can decode, or None when it cannot."""
    try:
        ds = pydicom.dcmread(path)
        if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
            return None
        return [(int(a.shape[0]), int(a.shape[1])) for a in iter_pixels(ds)]
    except Exception:  # noqa: BLE001 - whatever pydicom cannot decode is "not decodable" for this test
        return None


def _job(storage_dir: Path, data: bytes | Path, instance_pk: int = 1) -> RenderJob:
    """A render job for ``data``, stored in a storage of its own in ``storage_dir``."""
    storage = FileSystemStorage(storage_dir)
    storage.put(SOURCE, data if isinstance(data, bytes) else data.read_bytes())
    return RenderJob(instance_pk, SOURCE, storage)


def _image(storage: Storage, instance_pk: int, frame: int, kind: str) -> Image.Image:
    with storage.open(render_key(instance_pk, frame, kind)) as f:
        image = Image.open(f)
        image.load()
    assert image.format == "JPEG"
    return image


def _size(storage: Storage, frame: int, kind: str) -> tuple[int, int]:
    image = _image(storage, 1, frame, kind)
    return image.height, image.width


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_every_pydicom_sample_gets_renders_or_a_reason(path: Path, tmp_path: Path) -> None:
    expected = _decodable_frames(path)
    job = _job(tmp_path, path)
    outcome = render_file(job)
    if expected is None:
        assert outcome.status in {"unrenderable", "failed"}
        assert outcome.reason in {"no_pixel_data", "unsupported", "broken"}
        assert outcome.frames == 0
        return
    assert (outcome.status, outcome.reason) == ("done", "")
    assert outcome.frames == len(expected)
    assert len(outcome.jpeg_sizes) == len(expected)
    for index, (rows, cols) in enumerate(expected):
        assert _size(job.storage, index, "full") == (rows, cols)
        assert job.storage.size(render_key(1, index, "full")) == outcome.jpeg_sizes[index]
        p_rows, p_cols = _size(job.storage, index, "preview")
        assert max(p_rows, p_cols) == min(max(rows, cols), PREVIEW_MAX)
        t_rows, t_cols = _size(job.storage, index, "thumb")
        assert max(t_rows, t_cols) == min(max(rows, cols), THUMB_MAX)


def test_no_pixel_data_is_a_placeholder_with_its_reason(tmp_path: Path) -> None:
    sr = Path(pydicom.data.get_testdata_file("reportsi.dcm"))  # type: ignore[arg-type]
    job = _job(tmp_path, sr, instance_pk=7)
    outcome = render_file(job)
    assert (outcome.status, outcome.reason, outcome.frames) == ("unrenderable", "no_pixel_data", 0)
    assert list(job.storage.iterate()) == [SOURCE]


def test_missing_file_is_reported_not_raised(tmp_path: Path) -> None:
    outcome = render_file(RenderJob(8, "instances/gone.dcm", FileSystemStorage(tmp_path)))
    assert (outcome.status, outcome.reason) == ("failed", "file_missing")


def _render_dataset(ds: pydicom.Dataset, tmp_path: Path, name: str) -> np.ndarray:
    job = _job(tmp_path / name, encode(ds))
    outcome = render_file(job)
    assert outcome.status == "done"
    return np.asarray(_image(job.storage, 1, 0, "full").convert("L"), dtype=np.int16)


def test_monochrome1_renders_inverted(tmp_path: Path) -> None:
    ds = cr_image(PATIENT)
    normal = _render_dataset(ds, tmp_path, "mono2")
    ds.PhotometricInterpretation = "MONOCHROME1"
    inverted = _render_dataset(ds, tmp_path, "mono1")
    # Same stored pixels, opposite display: every pixel mirrored around mid-grey (JPEG tolerance).
    assert np.abs((255 - normal) - inverted).mean() < 2
    assert normal[:, 5].mean() < 60 < 200 < inverted[:, 5].mean()  # the dark left edge turns bright


def test_ct_window_40_400_shows_soft_tissue_mid_grey(tmp_path: Path) -> None:
    ds = ct_series(PATIENT, count=1, size=128)[0]
    assert (ds.WindowCenter, ds.WindowWidth) == (40, 400)
    job = _job(tmp_path, encode(ds))
    outcome = render_file(job)
    assert outcome.presets == ["soft", "lung", "bone"]
    grey = np.asarray(_image(job.storage, 1, 0, "full"), dtype=np.int16)
    # The phantom's body is 40 HU between radius ~15% and ~55% of the body radius: sample a ring at 35%.
    centre = 64
    body = grey[centre, centre + 16 : centre + 20]
    air = grey[2:6, 2:6]
    bone_ring = grey[centre, centre + 29]
    assert abs(float(body.mean()) - 128) <= 4  # 40 HU in a 40/400 window is the middle of the range
    assert air.max() <= 3  # -1000 HU is below the window: black
    assert bone_ring >= 250  # 700 HU is above it: white
    lung = np.asarray(_image(job.storage, 1, 0, "lung"), dtype=np.int16)
    # In the lung window (-600/1500) soft tissue is bright and the -700 HU hole is darker grey, not black.
    assert lung[centre, centre + 17] > 180
    assert 60 < lung[centre, centre] < 140


def test_multiframe_renders_every_frame(tmp_path: Path) -> None:
    path = Path(pydicom.data.get_testdata_file("SC_rgb_rle_2frame.dcm"))  # type: ignore[arg-type]
    job = _job(tmp_path, path)
    outcome = render_file(job)
    assert outcome.frames == 2
    assert job.storage.exists(render_key(1, 1, "full"))
    assert _image(job.storage, 1, 0, "full").mode == "RGB"


# --- the task around it ---------------------------------------------------------------------------


def _store_samples(organisation: Any, names: list[str]) -> None:
    for name in names:
        data = Path(pydicom.data.get_testdata_file(name)).read_bytes()  # type: ignore[arg-type]
        store_instance(organisation, data, source="upload")


@pytest.mark.django_db(transaction=True)
def test_render_task_records_outcomes_and_study_knows_when_done(organisation: Any) -> None:
    for ds in ct_series(PATIENT, count=3, size=64):
        store_instance(organisation, encode(ds), source="upload")
    _store_samples(organisation, ["reportsi.dcm", "JPEG-lossy.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm"])
    ct = Study.objects.get(patient__patient_id="R1")
    assert InstanceRender.objects.filter(status="pending").count() == 7
    assert not services.renders_done(ct)
    assert services.study_sizes(ct)[1] is None

    from radshare.imaging.tasks import render_pending

    render_pending.call()
    statuses = dict(InstanceRender.objects.values_list("instance__sop_class_uid", "status").distinct())
    assert InstanceRender.objects.filter(status__in=("pending", "rendering")).count() == 0
    assert statuses["1.2.840.10008.5.1.4.1.1.88.11"] == "unrenderable"  # Basic Text SR: a report, no image
    lossy = pydicom.dcmread(pydicom.data.get_testdata_file("JPEG-lossy.dcm"), stop_before_pixels=True)
    broken = InstanceRender.objects.get(instance__sop_instance_uid=lossy.SOPInstanceUID)
    assert (broken.status, broken.reason) == ("failed", "broken")
    assert services.renders_done(ct)
    dicom_bytes, jpeg_bytes = services.study_sizes(ct)
    assert dicom_bytes == ct.size
    renders = InstanceRender.objects.filter(instance__series__study=ct)
    assert jpeg_bytes == sum(r.jpeg_size for r in renders) > 0
    for r in renders:
        assert r.jpeg_size == sum(
            get_storage().size(render_key(r.instance_id, i, "full")) for i in range(r.frames)
        )


@pytest.mark.django_db(transaction=True)
def test_two_workers_never_claim_the_same_instance(organisation: Any) -> None:
    for ds in ct_series(PATIENT, count=5, size=32):
        store_instance(organisation, encode(ds), source="upload")
    first = services.claim_pending(limit=3)
    second = services.claim_pending(limit=3)
    assert len(first) == 3
    assert len(second) == 2
    assert not {j.instance_pk for j in first} & {j.instance_pk for j in second}
    assert services.claim_pending() == []


@pytest.mark.django_db
def test_stale_claims_are_given_back(organisation: Any) -> None:
    store_instance(organisation, encode(ct_series(PATIENT, count=1, size=32)[0]), source="upload")
    services.claim_pending()
    InstanceRender.objects.update(claimed_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    assert services.release_stale_claims() == 1
    assert InstanceRender.objects.get().status == "pending"


@pytest.mark.django_db
def test_request_render_enqueues_once_while_one_waits(organisation: Any) -> None:
    from django_tasks_db.models import DBTaskResult

    services.request_render()
    services.request_render()
    assert DBTaskResult.objects.filter(task_path="radshare.imaging.tasks.render_pending").count() == 1


# --- a full disk is a fault of the machine, not of the image (docs/security.md R8) --------------------------------


def test_a_fault_of_the_machine_is_retried_and_damaged_data_is_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _job(tmp_path, encode(ct_series(PATIENT, count=1, size=32)[0]), instance_pk=9)

    def disk_full(storage: Storage, key: str, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", key)

    monkeypatch.setattr(render, "_write", disk_full)
    outcome = render_file(job)
    assert (outcome.status, outcome.reason, outcome.fault) == ("pending", "", "ENOSPC")

    def undecodable(storage: Storage, key: str, data: bytes) -> None:
        raise OSError("broken data stream when reading image file")  # Pillow's word for bad data: no errno

    monkeypatch.setattr(render, "_write", undecodable)
    outcome = render_file(job)
    assert (outcome.status, outcome.reason) == ("failed", "broken")


@pytest.fixture
def restore_signals() -> Iterator[None]:
    """The worker installs its own SIGINT/SIGTERM handlers; give pytest its own back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def _fill(fd: int) -> None:
    while True:
        os.write(fd, b"\0" * 4096)


@pytest.fixture
def full_disk(_storage_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[bool], None]]:
    """``full_disk(True)`` fills the disk the renders are written to, ``full_disk(False)`` frees it again.

    As root: a 256 KiB tmpfs mounted on the renders folder and filled up, so the kernel itself answers ENOSPC.
    Elsewhere (CI without mount rights) the one function that writes render files fails as that disk would.
    """
    renders = _storage_root / "renders"
    renders.mkdir(parents=True)
    mount = shutil.which("mount")
    mounted = (
        mount is not None
        and os.geteuid() == 0
        and subprocess.run(
            [mount, "-t", "tmpfs", "-o", "size=256k", "radshare-test", str(renders)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    filler = renders / "filler"
    write = render._write

    def disk_full(storage: Storage, key: str, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), key)

    def set_full(full: bool) -> None:
        if mounted and full:
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                with pytest.raises(OSError, match="No space left on device"):
                    _fill(fd)
            finally:
                os.close(fd)
        elif mounted:
            filler.unlink()
        else:
            monkeypatch.setattr(render, "_write", disk_full if full else write)

    yield set_full
    if mounted:
        subprocess.run(["umount", "-l", str(renders)], check=False)


@pytest.mark.django_db(transaction=True)  # the worker runs the render task on its own connection
def test_a_full_disk_postpones_renders_and_they_are_made_once_space_returns(
    organisation: Any,
    full_disk: Callable[[bool], None],
    caplog: pytest.LogCaptureFixture,
    restore_signals: None,
) -> None:
    for ds in ct_series(PATIENT, count=3, size=64):
        store_instance(organisation, encode(ds), source="upload")
    study = Study.objects.get(patient__patient_id="R1")
    full_disk(True)
    with caplog.at_level(logging.WARNING, logger="radshare.imaging.services"):
        services.render_pending_now(parallel=False)
    renders = InstanceRender.objects.filter(instance__series__study=study)
    assert set(renders.values_list("status", "reason", "attempts")) == {("pending", "", 1)}
    assert all(r.retry_after and r.retry_after > timezone.now() for r in renders)
    assert not services.renders_done(study)  # a share of it waits: never ready with images missing (R6)
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "3 of 3 renders postponed" in warning.getMessage()
    assert "ENOSPC" in warning.getMessage()
    assert "R1" not in warning.getMessage()
    assert "Render" not in warning.getMessage()
    # Until their delay has passed nothing spins: no render is claimed, none asked for.
    assert services.render_pending_now(parallel=False) == 0
    DBTaskResult.objects.all().delete()
    render_housekeeping.call()
    assert not DBTaskResult.objects.exists()

    full_disk(False)  # space is back; ten seconds later the delay has passed
    renders.update(retry_after=timezone.now() - dt.timedelta(seconds=1))
    render_housekeeping.call()
    assert DBTaskResult.objects.ready().filter(task_path=render_pending.module_path).count() == 1
    call_command("worker", "--batch")
    assert set(renders.values_list("status", "reason", "attempts", "retry_after")) == {("done", "", 0, None)}
    assert services.renders_done(study)
    for r in renders:
        assert get_storage().size(render_key(r.instance_id, 0, "full")) == r.jpeg_size > 0
