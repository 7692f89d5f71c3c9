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
from django.db import DatabaseError
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, iter_pixels
from pydicom.uid import RLELossless

from radshare.core.storage import FileSystemStorage, Storage, get_storage, instance_key, render_key
from radshare.imaging import render, services
from radshare.imaging.models import InstanceRender, kept_as
from radshare.imaging.render import PREVIEW_MAX, THUMB_MAX, RenderJob, render_file
from radshare.imaging.tasks import render_housekeeping, render_pending
from radshare.studies.models import Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import FakePatient, cr_image, ct_series, encode

SAMPLES = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent  # type: ignore[arg-type]
SAMPLE_FILES = sorted(p for p in SAMPLES.rglob("*.dcm"))
PATIENT = FakePatient("R1", "Render^Test", dt.date(1975, 6, 1))
OTHER = FakePatient("R2", "Render^Other", dt.date(1980, 2, 3))
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
        kept = kept_as(
            "preview", outcome.rows, outcome.columns, outcome.preview_rows, outcome.preview_columns
        )
        p_rows, p_cols = _size(job.storage, index, kept)
        assert max(p_rows, p_cols) == min(max(rows, cols), PREVIEW_MAX)
        assert job.storage.exists(render_key(1, index, "preview")) == (max(rows, cols) > PREVIEW_MAX)
        t_rows, t_cols = _size(job.storage, index, "thumb")
        assert max(t_rows, t_cols) == min(max(rows, cols), THUMB_MAX)


@pytest.mark.parametrize(("size", "separate"), [(PREVIEW_MAX, False), (PREVIEW_MAX + 1, True), (2048, True)])
def test_a_preview_file_of_its_own_only_for_an_image_larger_than_the_preview(
    tmp_path: Path, size: int, separate: bool
) -> None:
    ds = ct_series(PATIENT, count=1, size=size)[0]
    job = _job(tmp_path, encode(ds))
    outcome = render_file(job)
    assert outcome.status == "done"
    assert (outcome.rows, outcome.columns) == (size, size)
    kept = kept_as("preview", outcome.rows, outcome.columns, outcome.preview_rows, outcome.preview_columns)
    assert kept == ("preview" if separate else "full")
    assert job.storage.exists(render_key(1, 0, "preview")) == separate
    assert _size(job.storage, 0, kept) == (min(size, PREVIEW_MAX), min(size, PREVIEW_MAX))
    assert sorted(outcome.checksums) == (["full", "preview"] if separate else ["full"])


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
    # The first pass makes what a share needs; the presets are the second pass's.
    assert (outcome.status, outcome.presets_due, outcome.presets) == ("done", True, [])
    assert not job.storage.exists(render_key(1, 0, "lung"))
    second = render_file(RenderJob(1, SOURCE, job.storage, presets=True))
    assert (second.status, second.presets_pass, second.presets) == ("done", True, ["soft", "lung", "bone"])
    assert (second.frames, second.jpeg_sizes, second.checksums) == (0, [], {})  # it records nothing else
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


@pytest.mark.parametrize(
    ("dtype", "slope", "intercept", "exact"),
    [
        ("int16", 1, -1024, True),
        ("int16", 2, -1024, True),
        ("uint16", 1, 0, True),
        ("uint16", 0.5, -3.25, True),
        ("int16", 1.2345, -3.3, False),
    ],
)
def test_modality_values_are_the_rescale_pydicom_computes(
    dtype: str, slope: float, intercept: float, exact: bool
) -> None:
    """render._modality rescales in single precision itself (docs/architecture.md "Renders"): the values pydicom's
    apply_modality_lut gives, exactly where float32 holds them (integral or binary-fraction rescales), else to
    float32's precision; a Modality LUT is still pydicom's."""
    info = np.iinfo(dtype)
    arr = np.random.default_rng(7).integers(info.min, info.max, (64, 64), endpoint=True).astype(dtype)
    ds = Dataset()
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ours = render._modality(ds, arr, Dataset())
    theirs = apply_modality_lut(arr, ds).astype(np.float32)
    assert ours.dtype == np.float32
    if exact:
        assert np.array_equal(ours, theirs)
    else:
        assert not np.array_equal(ours, arr)  # rescaled
        assert np.allclose(ours, theirs, rtol=1e-6, atol=1e-3)
    lut = Dataset()
    item = Dataset()
    item.LUTDescriptor = [4, 0, 16]
    item.LUTData = [10, 20, 30, 40]
    item.ModalityLUTType = "HU"
    lut.ModalityLUTSequence = [item]
    lut.RescaleSlope, lut.RescaleIntercept = 5, 5  # a Modality LUT comes first (PS3.3 C.11.1)
    small = np.array([[0, 1], [2, 9]], dtype=np.uint16)
    assert render._modality(lut, small, Dataset()).tolist() == [[10.0, 20.0], [30.0, 40.0]]


def test_a_compressed_ct_gets_its_presets_in_the_first_pass(tmp_path: Path) -> None:
    """Decoding encapsulated pixel data again would cost more than the presets: no second pass for it."""
    ds = ct_series(PATIENT, count=1, size=64)[0]
    ds.compress(RLELossless)
    job = _job(tmp_path, encode(ds))
    outcome = render_file(job)
    assert (outcome.status, outcome.presets_due, outcome.presets) == ("done", False, ["soft", "lung", "bone"])
    assert job.storage.exists(render_key(1, 0, "bone"))
    assert job.storage.exists(render_key(1, 0, "thumb"))


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


# --- CT window presets: a second pass, once the study's first passes are done (docs/architecture.md "Renders") -----


def _study_renders(study: Study) -> Any:
    return InstanceRender.objects.filter(instance__series__study=study).order_by("instance_id")


def _make(jobs: list[RenderJob]) -> None:
    for job in jobs:
        services.record_outcome(render_file(job), job.attempt)


@pytest.mark.django_db
def test_ct_presets_are_made_after_the_study_is_ready_and_destruction_waits_for_them(
    organisation: Any,
) -> None:
    for ds in ct_series(PATIENT, count=3, size=64):
        store_instance(organisation, encode(ds), source="upload")
    store_instance(organisation, encode(cr_image(OTHER)), source="upload")
    ct = Study.objects.get(patient__patient_id="R1")
    _make(services.claim_pending())
    assert services.renders_done(ct)  # ready: a share of it need not wait for the presets
    assert (
        list(_study_renders(ct).values_list("status", "presets_due", "presets")) == [("done", True, [])] * 3
    )
    cr = InstanceRender.objects.get(instance__series__study__patient__patient_id="R2")
    assert (cr.status, cr.presets_due) == ("done", False)  # not a CT: no second pass
    storage = get_storage()
    assert not any(storage.exists(render_key(r.instance_id, 0, "lung")) for r in _study_renders(ct))
    assert not services.rendering(ct.pk)

    jobs = services.claim_pending(presets=True)
    assert [(job.presets, job.instance_pk) for job in jobs] == [
        (True, r.instance_id) for r in _study_renders(ct)
    ]
    assert services.claim_pending(presets=True) == []  # claimed once
    assert services.rendering(ct.pk)  # its files may still appear: the study is not destroyed under it
    assert services.renders_done(ct)
    _make(jobs)
    assert (
        list(_study_renders(ct).values_list("presets_due", "presets", "claimed_at"))
        == [(False, ["soft", "lung", "bone"], None)] * 3
    )
    assert all(storage.exists(render_key(r.instance_id, 0, "lung")) for r in _study_renders(ct))
    assert not services.rendering(ct.pk)
    assert not services.work_waiting()


@pytest.mark.django_db
def test_a_first_pass_of_any_study_comes_before_presets_that_wait(
    organisation: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for ds in ct_series(PATIENT, count=2, size=64):
        store_instance(organisation, encode(ds), source="upload")
    _make(services.claim_pending())  # the first study is ready; its presets wait
    for ds in ct_series(OTHER, count=services.BATCH + 2, size=32):
        store_instance(organisation, encode(ds), source="upload")
    made: list[tuple[bool, str]] = []
    patients = dict(
        InstanceRender.objects.values_list("instance_id", "instance__series__study__patient__patient_id")
    )

    def spy(job: RenderJob) -> render.RenderOutcome:
        made.append((job.presets, patients[job.instance_pk]))
        return render_file(job)

    monkeypatch.setattr(services, "render_file", spy)
    assert services.render_pending_now(parallel=False) == 2 + 2 * (services.BATCH + 2)
    # Both batches of first passes before any second pass; then the presets in the order they became due.
    first = [(False, "R2")] * (services.BATCH + 2)
    assert made == [*first, (True, "R1"), (True, "R1"), *[(True, "R2")] * (services.BATCH + 2)]
    assert not InstanceRender.objects.filter(presets_due=True).exists()


@pytest.mark.django_db
def test_preset_claims_of_a_dead_worker_or_left_too_long_are_given_back(organisation: Any) -> None:
    for ds in ct_series(PATIENT, count=2, size=32):
        store_instance(organisation, encode(ds), source="upload")
    _make(services.claim_pending())
    assert len(services.claim_pending(presets=True)) == 2
    InstanceRender.objects.update(claimed_by="worker-1")
    DBTaskResult.objects.all().delete()
    assert services.release_claims_of(None, ["worker-1"]) == 2
    assert set(InstanceRender.objects.values_list("status", "presets_due", "claimed_at", "claimed_by")) == {
        ("done", True, None, "")
    }
    assert DBTaskResult.objects.filter(task_path=render_pending.module_path).exists()  # made by another
    assert len(services.claim_pending(presets=True)) == 2  # outside a worker: no id, a time limit
    assert services.release_stale_claims() == 0
    InstanceRender.objects.update(claimed_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    assert services.release_stale_claims() == 2
    assert len(services.claim_pending(presets=True)) == 2


@pytest.mark.django_db
def test_a_full_disk_postpones_the_presets_and_the_study_stays_ready(
    organisation: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for ds in ct_series(PATIENT, count=2, size=32):
        store_instance(organisation, encode(ds), source="upload")
    study = Study.objects.get(patient__patient_id="R1")
    _make(services.claim_pending())
    write = render._write

    def disk_full(storage: Storage, key: str, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), key)

    monkeypatch.setattr(render, "_write", disk_full)
    with caplog.at_level(logging.WARNING, logger="radshare.imaging.services"):
        assert services.render_pending_now(parallel=False) == 2
    assert (
        list(_study_renders(study).values_list("status", "presets_due", "presets", "attempts", "claimed_at"))
        == [("done", True, [], 1, None)] * 2
    )
    assert all(r.retry_after and r.retry_after > timezone.now() for r in _study_renders(study))
    assert services.renders_done(study)
    assert not services.renders_postponed(study)
    assert "2 of 2 renders postponed by a fault of the machine (ENOSPC)" in caplog.text
    assert services.render_pending_now(parallel=False) == 0  # nothing spins until the delay has passed
    assert not services.work_waiting()

    monkeypatch.setattr(render, "_write", write)
    _study_renders(study).update(retry_after=timezone.now() - dt.timedelta(seconds=1))
    assert services.work_waiting()
    assert services.render_pending_now(parallel=False) == 2
    assert (
        list(_study_renders(study).values_list("presets_due", "presets", "attempts", "retry_after"))
        == [(False, ["soft", "lung", "bone"], 0, None)] * 2
    )


@pytest.mark.django_db
def test_a_second_pass_that_cannot_read_the_image_leaves_no_presets_and_is_not_retried(
    organisation: Any, caplog: pytest.LogCaptureFixture
) -> None:
    store_instance(organisation, encode(ct_series(PATIENT, count=1, size=32)[0]), source="upload")
    _make(services.claim_pending())
    render_row = InstanceRender.objects.get()
    get_storage().delete(instance_key(render_row.instance.storage_key))
    with caplog.at_level(logging.WARNING, logger="radshare.imaging.services"):
        assert services.render_pending_now(parallel=False) == 1
    render_row.refresh_from_db()
    assert (render_row.status, render_row.presets_due, render_row.presets) == ("done", False, [])
    assert f"the CT window presets of instance {render_row.instance_id} could not be made: file_missing" in (
        caplog.text
    )
    assert services.render_pending_now(parallel=False) == 0


@pytest.mark.django_db
def test_when_recording_fails_the_batch_started_behind_is_finished_and_given_back(
    organisation: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next batch is handed to the render processes before one is recorded. Should recording fail (the database
    away), that batch is let finish before the task gives up, so no render writes a file after its claim is given
    back (its study could be destroyed meanwhile), and both batches are pending again."""
    for ds in ct_series(PATIENT, count=services.BATCH + 8, size=32):
        store_instance(organisation, encode(ds), source="upload")

    def database_away(outcome: render.RenderOutcome, attempt: int = 0) -> None:
        raise DatabaseError("the database is away")

    monkeypatch.setattr(services, "record_outcome", database_away)
    try:
        with pytest.raises(DatabaseError):
            services.render_pending_now(parallel=True)
        storage = get_storage()
        behind = InstanceRender.objects.order_by("instance_id")[services.BATCH :]
        assert len(behind) == 8
        assert all(
            storage.exists(render_key(r.instance_id, 0, "thumb")) for r in behind
        )  # finished, not running
    finally:
        services.shutdown_pool()
    assert set(InstanceRender.objects.values_list("status", "claimed_at", "attempts")) == {
        ("pending", None, 1)
    }
