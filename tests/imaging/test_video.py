"""Moving images as video (docs/architecture.md "Renders"): a run of frames with a frame time gets an H.264 MP4 at
its recorded rate, read back here with PyAV (frames counted by decoding, the duration from the stream); a still gets
none; the MP4 is recorded, checked by ``storage check`` and destroyed with its study."""

from __future__ import annotations

import datetime as dt
import io
import zlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from radshare.core.storage import FileSystemStorage, get_storage, render_folder, render_key, video_key
from radshare.imaging import services as imaging
from radshare.imaging.models import InstanceRender
from radshare.imaging.render import PREVIEW_MAX, RenderJob, render_file
from radshare.imaging.video import frame_seconds
from radshare.shares.destruction import destroy_due
from radshare.shares.services import SYSTEM, revoke
from radshare.studies.models import Instance, Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import FakePatient, ct_series, encode, xa_run
from tests.recipients.conftest import ready_share
from tests.runtime.test_storage_check import check

PATIENT = FakePatient("V1", "Video^Test", dt.date(1980, 2, 3))
SOURCE = "instances/source.dcm"
US_RGB = (
    "examples_ybr_color.dcm"  # pydicom's multi-frame ultrasound: 30 frames YBR_FULL_422, Frame Time 33.333 ms
)


@dataclass(frozen=True)
class Mp4:
    frames: int  # counted by decoding every frame
    duration: float  # seconds, from the stream
    width: int
    height: int
    codec: str
    pix_fmt: str
    atoms: list[str]  # the top-level boxes in file order


def atoms(data: bytes) -> list[str]:
    found, at = [], 0
    while at + 8 <= len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        found.append(data[at + 4 : at + 8].decode("latin-1"))
        if size < 8:
            break
        at += size
    return found


def read_mp4(data: bytes) -> Mp4:
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.video[0]
        frames = len(list(container.decode(stream)))
        assert stream.duration is not None
        assert stream.time_base is not None
        duration = float(stream.duration * stream.time_base)
        context = stream.codec_context
        return Mp4(
            frames, duration, context.width, context.height, context.name, str(context.pix_fmt), atoms(data)
        )


def assert_plays_like(data: bytes, frames: int, seconds_per_frame: float) -> Mp4:
    """The MP4 has every frame of the DICOM and lasts as long (within one frame time), and a browser can play it
    from the first bytes: H.264, yuv420p, even dimensions, ``moov`` before ``mdat``."""
    mp4 = read_mp4(data)
    assert mp4.frames == frames
    assert abs(mp4.duration - frames * seconds_per_frame) <= seconds_per_frame
    assert (mp4.codec, mp4.pix_fmt) == ("h264", "yuv420p")
    assert mp4.width % 2 == 0
    assert mp4.height % 2 == 0
    assert max(mp4.width, mp4.height) <= PREVIEW_MAX
    assert mp4.atoms.index("moov") < mp4.atoms.index("mdat")
    return mp4


def render(tmp_path: Path, data: bytes, pk: int = 1) -> tuple[Any, FileSystemStorage]:
    storage = FileSystemStorage(tmp_path)
    storage.put(SOURCE, data)
    return render_file(RenderJob(pk, SOURCE, storage)), storage


def sample(name: str) -> Path:
    return Path(pydicom.data.get_testdata_file(name))  # type: ignore[arg-type]


def grey_us() -> Dataset:
    """pydicom's ultrasound clip as greyscale (MONOCHROME2, its luminance), timed by Cine Rate alone: pydicom
    ships no greyscale multi-frame ultrasound (its US1_* files are downloads, which tests may not make)."""
    ds = pydicom.dcmread(sample(US_RGB))
    rgb = ds.pixel_array.astype(np.float32)  # (frames, rows, columns, 3), converted to RGB by pydicom
    grey = (rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).clip(0, 255).astype(np.uint8)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.SamplesPerPixel = 1
    del ds.PlanarConfiguration
    ds.PixelData = grey.tobytes()
    ds["PixelData"].VR = "OB"
    del ds.FrameTime
    ds.CineRate = 25
    return ds


def dicom_bytes(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


# --- the render ----------------------------------------------------------------------------------------------


def test_rgb_ultrasound_clip_gets_an_mp4_of_its_frames_at_its_frame_rate(tmp_path: Path) -> None:
    outcome, storage = render(tmp_path, sample(US_RGB).read_bytes())
    assert (outcome.status, outcome.frames) == ("done", 30)
    data = storage.open(video_key(1)).read()
    mp4 = assert_plays_like(data, 30, 0.033333)
    assert (mp4.width, mp4.height) == (320, 240)
    assert outcome.video_frame_rate == pytest.approx(1000 / 33.333)
    # Recorded as the JPEGs are, for the ZIP download: exactly the stored bytes.
    assert (outcome.video_size, outcome.video_crc32) == (len(data), zlib.crc32(data))
    # The JPEGs are made as before, from the same decoded frames.
    assert len(outcome.checksums["full"]) == 30
    assert storage.exists(render_key(1, 29, "full"))


def test_greyscale_ultrasound_clip_timed_by_cine_rate(tmp_path: Path) -> None:
    outcome, storage = render(tmp_path, dicom_bytes(grey_us()))
    assert (outcome.status, outcome.frames) == ("done", 30)
    assert_plays_like(storage.open(video_key(1)).read(), 30, 1 / 25)
    assert outcome.video_frame_rate == 25


def test_a_generated_sixty_frame_xa_run(tmp_path: Path) -> None:
    outcome, storage = render(tmp_path, encode(xa_run(PATIENT, frames=60, size=128, frame_time=66.7)))
    assert (outcome.status, outcome.frames) == ("done", 60)
    data = storage.open(video_key(1)).read()
    mp4 = assert_plays_like(data, 60, 0.0667)
    assert mp4.duration == pytest.approx(60 * 0.0667, abs=0.001)
    # The frames are in order: the dark bar moves right, frame by frame.
    with av.open(io.BytesIO(data), "r") as container:
        bars = [int(np.argmin(f.to_ndarray(format="gray")[64])) for f in container.decode(video=0)]
    assert bars == sorted(bars)
    assert bars[0] < bars[-1]


def test_large_odd_frames_are_scaled_to_the_preview_and_even(tmp_path: Path) -> None:
    ds = xa_run(PATIENT, frames=3, size=1200, frame_time=40)
    outcome, storage = render(tmp_path, encode(ds))
    mp4 = assert_plays_like(storage.open(video_key(1)).read(), 3, 0.04)
    assert (mp4.width, mp4.height) == (1024, 1024)
    odd = xa_run(PATIENT, frames=4, size=45, frame_time=100)
    outcome, storage = render(tmp_path / "odd", encode(odd))
    mp4 = assert_plays_like(storage.open(video_key(1)).read(), 4, 0.1)
    assert (mp4.width, mp4.height) == (44, 44)
    assert (outcome.preview_columns, outcome.preview_rows) == (45, 45)  # the JPEGs keep every pixel


@pytest.mark.parametrize(
    "name",
    ["rtdose.dcm", "SC_rgb_rle_2frame.dcm", "CT_small.dcm", "examples_rgb_color.dcm"],
)
def test_stills_and_stacks_without_a_frame_time_get_no_video(tmp_path: Path, name: str) -> None:
    outcome, storage = render(tmp_path, sample(name).read_bytes())
    assert outcome.status == "done"
    assert (outcome.video_size, outcome.video_frame_rate) == (0, 0)
    assert not storage.exists(video_key(1))


def test_a_single_frame_with_a_frame_time_is_a_still(tmp_path: Path) -> None:
    outcome, storage = render(tmp_path, encode(xa_run(PATIENT, frames=1, size=32)))
    assert (outcome.status, outcome.frames, outcome.video_size) == ("done", 1, 0)
    assert not storage.exists(video_key(1))


def test_the_frame_time_is_read_in_the_order_of_the_standard() -> None:
    ds = Dataset()
    ds.NumberOfFrames = 10
    assert frame_seconds(ds) is None  # a stack, not a run
    ds.RecommendedDisplayFrameRate = 30
    assert frame_seconds(ds) == Fraction(1, 30)
    ds.CineRate = 25
    assert frame_seconds(ds) == Fraction(1, 25)
    ds.FrameTimeVector = [0, 40, 40, 50, 50]  # ms between frames: their mean
    assert frame_seconds(ds) == Fraction(45, 1000)
    ds.FrameTime = "33.3"
    assert frame_seconds(ds) == Fraction(333, 10000)
    ds.FrameTime = "0"  # not a time: the next one counts
    assert frame_seconds(ds) == Fraction(45, 1000)
    ds.NumberOfFrames = 1
    assert frame_seconds(ds) is None
    absurd = Dataset()
    absurd.NumberOfFrames = 5
    absurd.FrameTime = 100_000  # 100 s a frame: a series of stills
    assert frame_seconds(absurd) is None


# --- recorded, checked and destroyed --------------------------------------------------------------------------


def store_run(organisation: Any, **options: Any) -> tuple[Study, Instance]:
    result = store_instance(organisation, encode(xa_run(PATIENT, **options)), source="upload")
    imaging.render_pending_now(parallel=False)
    instance = Instance.objects.select_related("render").get(pk=result.instance_pk)
    return instance.series.study, instance


@pytest.mark.django_db
def test_the_render_row_records_the_video(organisation: Any) -> None:
    _study, instance = store_run(organisation, frames=12, size=64, frame_time=50)
    render = instance.render
    data = get_storage().open(video_key(instance.pk)).read()
    assert render.has_video
    assert (render.video_size, render.video_crc32) == (len(data), zlib.crc32(data))
    assert render.video_frame_rate == 20
    assert render.jpeg_size == sum(render.jpeg_sizes) + len(data)  # what the JPEG download holds


@pytest.mark.django_db
def test_storage_check_knows_the_video_and_misses_it_when_gone(organisation: Any, storage_root: Path) -> None:
    _study, instance = store_run(organisation, frames=6, size=32, frame_time=50)
    code, out = check()
    assert code == 0, out
    assert "The index and the storage agree." in out
    video = storage_root / video_key(instance.pk)
    kept = video.read_bytes()
    video.write_bytes(kept[:-1])
    code, out = check()
    assert code != 0
    assert (
        f"instance {instance.pk}: {video_key(instance.pk)} ({len(kept) - 1} bytes, recorded {len(kept)})"
        in out
    )
    video.unlink()
    code, out = check("--repair")
    assert f"instance {instance.pk}: {video_key(instance.pk)}" in out
    imaging.render_pending_now(parallel=False)  # rendered again
    assert video.read_bytes() == kept
    assert check()[0] == 0


@pytest.mark.django_db
def test_the_video_is_destroyed_with_its_instances_renders(organisation: Any) -> None:
    study, instance = store_run(organisation, frames=6, size=32, frame_time=50)
    share, _ = ready_share(organisation, [study], delivery="url", email="")
    storage = get_storage()
    assert storage.exists(video_key(instance.pk))
    revoke(share, SYSTEM)
    assert destroy_due() == 1
    assert not Study.objects.filter(pk=study.pk).exists()
    assert not storage.exists(video_key(instance.pk))
    assert list(storage.iterate(render_folder(instance.pk))) == []


@pytest.mark.django_db
def test_a_ct_series_in_the_same_study_has_no_video(organisation: Any) -> None:
    study, _ = store_run(organisation, frames=4, size=32, frame_time=50)
    for ds in ct_series(PATIENT, count=2, size=32, study_uid=study.study_instance_uid):
        store_instance(organisation, encode(ds), source="upload")
    imaging.render_pending_now(parallel=False)
    videos = InstanceRender.objects.filter(instance__series__study=study, video_size__gt=0)
    assert videos.count() == 1
