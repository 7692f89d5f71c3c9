"""Renders: the pixel pipeline on pydicom's real sample files, and the background task around it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pydicom.data
import pytest
from PIL import Image
from pydicom.pixels import iter_pixels

from radshare.imaging import services
from radshare.imaging.models import InstanceRender
from radshare.imaging.render import PREVIEW_MAX, THUMB_MAX, RenderJob, frame_path, render_file
from radshare.studies.models import Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import FakePatient, cr_image, ct_series, encode

SAMPLES = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent  # type: ignore[arg-type]
SAMPLE_FILES = sorted(p for p in SAMPLES.rglob("*.dcm"))
PATIENT = FakePatient("R1", "Render^Test", dt.date(1975, 6, 1))


def _decodable_frames(path: Path) -> list[tuple[int, int]] | None:
    """(rows, columns) of each frame pydicom itself can decode, or None when it cannot."""
    try:
        ds = pydicom.dcmread(path)
        if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
            return None
        return [(int(a.shape[0]), int(a.shape[1])) for a in iter_pixels(ds)]
    except Exception:  # noqa: BLE001 - whatever pydicom cannot decode is "not decodable" for this test
        return None


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "JPEG"
        return im.height, im.width


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_every_pydicom_sample_gets_renders_or_a_reason(path: Path, tmp_path: Path) -> None:
    expected = _decodable_frames(path)
    outcome = render_file(RenderJob(1, str(path), str(tmp_path)))
    if expected is None:
        assert outcome.status in {"unrenderable", "failed"}
        assert outcome.reason in {"no_pixel_data", "unsupported", "broken"}
        assert outcome.frames == 0
        return
    assert (outcome.status, outcome.reason) == ("done", "")
    assert outcome.frames == len(expected)
    assert len(outcome.jpeg_sizes) == len(expected)
    for index, (rows, cols) in enumerate(expected):
        full = frame_path(tmp_path, index, "full")
        assert _size(full) == (rows, cols)
        assert full.stat().st_size == outcome.jpeg_sizes[index]
        p_rows, p_cols = _size(frame_path(tmp_path, index, "preview"))
        assert max(p_rows, p_cols) == min(max(rows, cols), PREVIEW_MAX)
        t_rows, t_cols = _size(frame_path(tmp_path, index, "thumb"))
        assert max(t_rows, t_cols) == min(max(rows, cols), THUMB_MAX)


def test_no_pixel_data_is_a_placeholder_with_its_reason(tmp_path: Path) -> None:
    sr = pydicom.data.get_testdata_file("reportsi.dcm")
    outcome = render_file(RenderJob(7, str(sr), str(tmp_path)))
    assert (outcome.status, outcome.reason, outcome.frames) == ("unrenderable", "no_pixel_data", 0)
    assert not list(tmp_path.iterdir())


def test_missing_file_is_reported_not_raised(tmp_path: Path) -> None:
    outcome = render_file(RenderJob(8, str(tmp_path / "gone.dcm"), str(tmp_path / "out")))
    assert (outcome.status, outcome.reason) == ("failed", "file_missing")


def _render_dataset(ds: pydicom.Dataset, tmp_path: Path, name: str) -> np.ndarray:
    src = tmp_path / f"{name}.dcm"
    src.write_bytes(encode(ds))
    out = tmp_path / name
    outcome = render_file(RenderJob(1, str(src), str(out)))
    assert outcome.status == "done"
    with Image.open(frame_path(out, 0, "full")) as im:
        return np.asarray(im.convert("L"), dtype=np.int16)


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
    out = tmp_path / "ct"
    src = tmp_path / "ct.dcm"
    src.write_bytes(encode(ds))
    outcome = render_file(RenderJob(1, str(src), str(out)))
    assert outcome.presets == ["soft", "lung", "bone"]
    with Image.open(frame_path(out, 0, "full")) as im:
        grey = np.asarray(im, dtype=np.int16)
    # The phantom's body is 40 HU between radius ~15% and ~55% of the body radius: sample a ring at 35%.
    centre = 64
    body = grey[centre, centre + 16 : centre + 20]
    air = grey[2:6, 2:6]
    bone_ring = grey[centre, centre + 29]
    assert abs(float(body.mean()) - 128) <= 4  # 40 HU in a 40/400 window is the middle of the range
    assert air.max() <= 3  # -1000 HU is below the window: black
    assert bone_ring >= 250  # 700 HU is above it: white
    with Image.open(frame_path(out, 0, "lung")) as im:
        lung = np.asarray(im, dtype=np.int16)
    # In the lung window (-600/1500) soft tissue is bright and the -700 HU hole is darker grey, not black.
    assert lung[centre, centre + 17] > 180
    assert 60 < lung[centre, centre] < 140


def test_multiframe_renders_every_frame(tmp_path: Path) -> None:
    path = pydicom.data.get_testdata_file("SC_rgb_rle_2frame.dcm")
    outcome = render_file(RenderJob(1, str(path), str(tmp_path)))
    assert outcome.frames == 2
    assert frame_path(tmp_path, 1, "full").exists()
    with Image.open(frame_path(tmp_path, 0, "full")) as im:
        assert im.mode == "RGB"


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
            frame_path(services.render_dir(r.instance_id), i, "full").stat().st_size for i in range(r.frames)
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
