"""Pixels to JPEG: the display pipeline of PS3.4 Annex N (Grayscale/Color Softcopy Presentation) for one file.

Monochrome: Modality LUT or rescale (PS3.3 C.11.1) -> VOI LUT or window (PS3.3 C.11.2, C.11.2.1.2 for the
window formulas, LINEAR, LINEAR_EXACT and SIGMOID) or, without either, the frame's own value range -> 8 bits,
inverted for MONOCHROME1. Colour: RGB as is, YBR converted to RGB by pydicom, PALETTE COLOR through its lookup
tables (PS3.3 C.7.6.3.1.5), deeper than 8 bits scaled down. Compressed transfer syntaxes are decoded by pydicom's
plugins (pylibjpeg: JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000; pydicom itself: RLE).

Everything here is pure (a stored file in, render files out through the storage, a summary back), so it runs in
worker processes without the database. Per frame the first pass writes ``NNNN-full.jpg`` (full size, for the JPEG
download), ``NNNN-preview.jpg`` (at most 1024 px; for an image no larger, the full-size JPEG is its preview and no
second copy is written: ``InstanceRender.kept_as``) and ``NNNN-thumb.jpg`` (at most 160 px), under the keys
``radshare.core.storage.layout.render_key`` makes: what a share needs to be ready. A run of frames with a frame time
(ultrasound, XA, a cine) also gets an H.264 MP4 of the previews (``video``), from the same decoded frames, under
``video_key``. For CT, ``NNNN-<preset>.jpg``, the window presets at preview size: made by a second pass
(``RenderJob.presets``) once the first passes that are due are done, or with the first when decoding the pixel data
costs more than they do (docs/architecture.md "Renders").
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import warnings
import zlib
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

import numpy as np
import pydicom.config
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels import (  # type: ignore[attr-defined]  # re-exported, but not listed in __all__
    apply_color_lut,
    apply_modality_lut,
    apply_voi_lut,
    iter_pixels,
)

from radshare.core.storage import Storage, render_key, video_key
from radshare.imaging.video import VideoWriter, checksum, frame_seconds

PREVIEW_MAX = 1024
THUMB_MAX = 160
FULL_QUALITY = 90
PREVIEW_QUALITY = 85
THUMB_QUALITY = 80
ZIPPED = ("full", "preview")  # the renders the ZIP downloads hold: their CRC-32 is kept as they are written

# CT window presets (centre, width) in Hounsfield units.
CT_PRESETS: dict[str, tuple[float, float]] = {
    "soft": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
}
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass(frozen=True)
class RenderJob:
    instance_pk: int
    source: str  # the key of the stored instance
    storage: Storage  # read from and written to by the render process (picklable)
    attempt: int = 0  # renders postponed by a fault of the machine so far
    presets: bool = False  # the second pass: only the CT window presets


@dataclass
class RenderOutcome:
    instance_pk: int
    status: str  # InstanceRender.Status: "done", "unrenderable", "failed"; "pending": try again later
    reason: str = ""  # InstanceRender.Reason value
    fault: str = ""  # "pending": what went wrong, an errno name such as ENOSPC (no paths, no patient data)
    frames: int = 0
    rows: int = 0
    columns: int = 0
    preview_rows: int = 0
    preview_columns: int = 0
    presets: list[str] = field(default_factory=list)  # the CT window presets written
    presets_due: bool = False  # first pass: an uncompressed CT image, whose presets the second pass makes
    presets_pass: bool = False  # the outcome of a second pass (RenderJob.presets)
    jpeg_sizes: list[int] = field(default_factory=list)
    # Per kind ("full", "preview"): each frame's [size, CRC-32], for the ZIP downloads (InstanceRender.checksums).
    checksums: dict[str, list[list[int]]] = field(default_factory=dict)
    video_size: int = 0  # bytes of the MP4; 0: no video
    video_crc32: int = 0
    video_frame_rate: float = 0.0  # frames per second, as recorded


def window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """Window to 0..255 (PS3.3 C.11.2.1.2.1 LINEAR, C.11.2.1.3.1 LINEAR_EXACT, C.11.2.1.3.2 SIGMOID)."""
    x = values.astype(np.float32, copy=False)
    out: np.ndarray
    if function == "SIGMOID":
        out = 255.0 / (1.0 + np.exp(-4.0 * (x - center) / max(width, 1e-6)))
    else:
        # Both linear forms are y = x * scale + offset: one multiply-add and an in-place clip per pixel.
        if function == "LINEAR_EXACT":
            scale = 255.0 / max(width, 1e-6)
            offset = 127.5 - center * scale
        else:
            w = max(width, 1.0)
            span = w - 1.0 if w > 1 else 1.0
            scale = 255.0 / span
            offset = (0.5 - (center - 0.5) / span) * 255.0
        out = x * np.float32(scale)
        out += np.float32(offset)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def _stretch(values: np.ndarray) -> np.ndarray:
    """The frame's own range to 0..255 (used when the data holds no VOI)."""
    x = values.astype(np.float32, copy=False)
    lo, hi = float(np.min(x)), float(np.max(x))
    if hi <= lo:
        return np.zeros(x.shape, dtype=np.uint8)
    return ((x - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _first(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(
            value[0] if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else value
        )
    except (TypeError, ValueError, IndexError):
        return None


def _voi(ds: Dataset, frame_ds: Dataset) -> tuple[float, float, str] | None:
    """The first window of the data (per-frame functional groups first), if any."""
    for source in (frame_ds, ds):
        center, width = _first(source.get("WindowCenter")), _first(source.get("WindowWidth"))
        if center is not None and width is not None and width > 0:
            return center, width, str(source.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    return None


def _frame_dataset(ds: Dataset, index: int) -> Dataset:
    """Rescale and window attributes of an enhanced multi-frame image live in functional groups (PS3.3 C.7.6.16)."""
    merged = Dataset()
    for seq_name, idx in (("SharedFunctionalGroupsSequence", 0), ("PerFrameFunctionalGroupsSequence", index)):
        groups = ds.get(seq_name)
        if not groups or len(groups) <= idx:
            continue
        item = groups[idx]
        for macro, keys in (
            ("PixelValueTransformationSequence", ("RescaleIntercept", "RescaleSlope", "RescaleType")),
            ("FrameVOILUTSequence", ("WindowCenter", "WindowWidth", "VOILUTFunction")),
        ):
            if macro in item and item[macro].value:
                for key in keys:
                    if key in item[macro].value[0]:
                        setattr(merged, key, item[macro].value[0][key].value)
    return merged


def _modality(ds: Dataset, arr: np.ndarray, frame_ds: Dataset) -> np.ndarray:
    """A monochrome frame's modality values (PS3.3 C.11.1): rescaled from the frame's functional groups when it has
    them, else from the data set (or its Modality LUT)."""
    source = frame_ds if ("RescaleSlope" in frame_ds or "RescaleIntercept" in frame_ds) else ds
    if not source.get("ModalityLUTSequence") and "RescaleSlope" in source and "RescaleIntercept" in source:
        # The linear rescale as pydicom's apply_modality_lut does it, but in single precision, which is what the
        # window is computed in: the same values for stored integers and integral rescales (exact in float32 up to
        # 2**24), 0.1 ms less per 512x512 frame than its float64 array made smaller again, twice per CT image
        # (docs/architecture.md "Renders").
        slope, intercept = float(source.RescaleSlope), float(source.RescaleIntercept)
        values = arr.astype(np.float32)
        if slope != 1.0:
            values *= np.float32(slope)
        if intercept:
            values += np.float32(intercept)
        return values
    return apply_modality_lut(arr, source).astype(np.float32, copy=False)


def _photometric(ds: Dataset) -> str:
    return str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()


def _colour(ds: Dataset, arr: np.ndarray) -> bool:
    """A colour frame (palette, or RGB: pydicom already converted YBR to RGB), which has no modality values."""
    return _photometric(ds) == "PALETTE COLOR" or arr.ndim == 3


def _rgb(ds: Dataset, arr: np.ndarray) -> np.ndarray:
    """A colour frame as 8-bit RGB (H, W, 3)."""
    if _photometric(ds) == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        bits = 16 if rgb.dtype.itemsize > 1 else 8
        return (rgb >> (bits - 8)).astype(np.uint8) if bits > 8 else rgb.astype(np.uint8)
    if arr.dtype.itemsize > 1:
        bits = int(ds.get("BitsStored", 16) or 16)
        return (arr >> max(bits - 8, 0)).clip(0, 255).astype(np.uint8)
    return arr.astype(np.uint8, copy=False)


def to_display(ds: Dataset, arr: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray | None]:
    """One frame as 8-bit grey (H, W) or RGB (H, W, 3), plus the modality values (for CT presets) or None."""
    if _colour(ds, arr):
        return _rgb(ds, arr), None
    frame_ds = _frame_dataset(ds, index)
    values = _modality(ds, arr, frame_ds)
    voi = _voi(ds, frame_ds)
    if voi is not None:
        grey = window(values, *voi)
    elif "VOILUTSequence" in ds:
        grey = _stretch(apply_voi_lut(values, ds, prefer_lut=True))
    else:
        grey = _stretch(values)
    if _photometric(ds) == "MONOCHROME1":
        grey = 255 - grey
    return grey, values


def _fit(image: Image.Image, limit: int, reducing_gap: float = 2.0) -> Image.Image:
    w, h = image.size
    scale = limit / max(w, h)
    if scale >= 1:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=reducing_gap)


def _encode(image: Image.Image, quality: int) -> bytes:
    buffer = BytesIO()
    image.save(buffer, "JPEG", quality=quality, optimize=False)
    return buffer.getvalue()


def _write(storage: Storage, key: str, data: bytes) -> None:
    # Derived files, not flushed to disk (a lost render is simply made again), read only once the render's row
    # names them (``put_new``): a render made again replaces its files whole, for a download may be reading them.
    storage.put_new(key, data)


def _fault(job: RenderJob, exc: BaseException) -> RenderOutcome | None:
    """A fault of the machine rather than of the data: an ``OSError`` that carries an errno (a full disk, a quota,
    an I/O error, storage away, no permission). Decoders report damaged data otherwise (``ValueError``,
    ``RuntimeError``, or an ``OSError`` without errno from Pillow). The render is tried again later and the image
    is never called broken for it (docs/security.md R8)."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return RenderOutcome(job.instance_pk, "pending", fault=errno.errorcode.get(exc.errno, str(exc.errno)))
    return None


def _render_frame(
    ds: Dataset,
    arr: np.ndarray,
    index: int,
    job: RenderJob,
    outcome: RenderOutcome,
    video: VideoWriter | None = None,
) -> np.ndarray | None:
    """The first pass of one frame: full size, preview and thumbnail (and the frame added to the video). Returns the
    frame's modality values (None for colour)."""

    def write(kind: str, data: bytes) -> None:
        _write(job.storage, render_key(job.instance_pk, index, kind), data)
        if kind in ZIPPED:
            outcome.checksums.setdefault(kind, []).append([len(data), zlib.crc32(data)])

    grey, values = to_display(ds, arr, index)
    image = Image.fromarray(grey)
    full = _encode(image, FULL_QUALITY)
    write("full", full)
    outcome.jpeg_sizes.append(len(full))
    preview = _fit(image, PREVIEW_MAX)
    if preview is not image:  # else the preview is the full-size JPEG, kept once (InstanceRender.kept_as)
        write("preview", _encode(preview, PREVIEW_QUALITY))
    # A thumbnail is reduced by the whole factor first (a box filter: 512 to 171 px, then bilinear to 160): half the
    # CPU of the bilinear filter over the whole image, and at 160 px the same picture.
    write("thumb", _encode(_fit(preview, THUMB_MAX, reducing_gap=1.0), THUMB_QUALITY))
    if video is not None:
        video.add(preview)
    if index == 0:
        outcome.rows, outcome.columns = image.height, image.width
        outcome.preview_rows, outcome.preview_columns = preview.height, preview.width
    return values


def _render_presets(
    ds: Dataset,
    arr: np.ndarray,
    index: int,
    job: RenderJob,
    outcome: RenderOutcome,
    values: np.ndarray | None,
) -> None:
    """Each window preset of one monochrome CT frame at preview size, from its Hounsfield values (``values``, when
    the first pass of the frame has just computed them)."""
    if values is None:
        if _colour(ds, arr):
            return  # no Hounsfield values to window
        values = _modality(ds, arr, _frame_dataset(ds, index))
    for name, (center, width) in CT_PRESETS.items():
        preset = _fit(Image.fromarray(window(values, center, width)), PREVIEW_MAX)
        _write(job.storage, render_key(job.instance_pk, index, name), _encode(preset, PREVIEW_QUALITY))
        if index == 0:
            outcome.presets.append(name)


def _write_video(job: RenderJob, video: VideoWriter, outcome: RenderOutcome) -> None:
    """The run's MP4 to the storage, its size and CRC-32 recorded. One the encoder gave up on leaves the JPEGs
    (the viewer steps through them as for any stack); a fault of the machine is one as for the JPEGs."""
    data = video.finish()
    if video.frames < 2 or not data:
        return
    _write(job.storage, video_key(job.instance_pk), data)
    outcome.video_size, outcome.video_crc32 = checksum(data)
    outcome.video_frame_rate = float(video.rate)


def _encapsulated(ds: Dataset) -> bool:
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return bool(syntax is not None and syntax.is_encapsulated)


def render_file(job: RenderJob) -> RenderOutcome:
    """Render every frame of one stored DICOM file, the first pass or (``job.presets``) the second; never raises
    (a failure is an outcome with a reason, a fault of the machine a "pending" outcome with its errno name)."""
    outcome = _render(job)
    outcome.presets_pass = job.presets
    return outcome


def _render(job: RenderJob) -> RenderOutcome:
    outcome = RenderOutcome(job.instance_pk, "done")
    try:
        with job.storage.open(job.source) as stored:
            ds = dcmread(stored)
    except FileNotFoundError:
        return RenderOutcome(job.instance_pk, "failed", "file_missing")
    except Exception as exc:  # noqa: BLE001 - an unreadable file is an outcome, never a crashed task
        return _fault(job, exc) or RenderOutcome(job.instance_pk, "failed", "broken")
    if not any(k in ds for k in PIXEL_KEYWORDS):
        return RenderOutcome(job.instance_pk, "unrenderable", "no_pixel_data")
    is_ct = str(ds.get("Modality", "")).upper() == "CT"
    if job.presets and not is_ct:
        return outcome
    # Encapsulated pixel data (JPEG, JPEG-LS, JPEG 2000, RLE) costs more to decode than the presets cost to make: a
    # second pass would decode it again, so its presets are made with the first (docs/architecture.md "Renders").
    presets_now = job.presets or (is_ct and _encapsulated(ds))
    seconds = None if job.presets else frame_seconds(ds)
    video = VideoWriter(seconds) if seconds is not None else None
    frames = 0
    try:
        for index, arr in enumerate(iter_pixels(ds)):
            values = None if job.presets else _render_frame(ds, arr, index, job, outcome, video)
            if presets_now:
                _render_presets(ds, arr, index, job, outcome, values)
            frames += 1
        if video is not None:
            _write_video(job, video, outcome)
    except NotImplementedError:
        return RenderOutcome(job.instance_pk, "failed", "unsupported")
    except RuntimeError as exc:
        # pydicom: "... all plugins are missing dependencies" (we cannot decode this transfer syntax) versus
        # "... exceptions were raised by all available plugins" (the data itself is broken).
        unsupported = "missing dependencies" in str(exc) or "no pixel data decoders" in str(exc).lower()
        return RenderOutcome(job.instance_pk, "failed", "unsupported" if unsupported else "broken")
    except Exception as exc:  # noqa: BLE001 - broken pixel data takes many forms (ValueError, struct errors, ...)
        return _fault(job, exc) or RenderOutcome(job.instance_pk, "failed", "broken")
    finally:
        if video is not None:
            video.close()
    if frames == 0:
        return RenderOutcome(job.instance_pk, "failed", "broken")
    if not job.presets:
        outcome.frames = frames
        outcome.presets_due = is_ct and not presets_now
    return outcome


def init_worker() -> None:
    """Pool initializer: rendering yields the CPU to the SCP and the web server (docs/architecture.md
    "Performance budget"), and pydicom neither validates nor warns while reading (its warnings quote values,
    which may be patient data)."""
    with contextlib.suppress(OSError):
        os.nice(10)
    # Ctrl-C in a terminal reaches the whole process group; the worker that owns the pool stops it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?")
    logging.getLogger("pydicom").setLevel(logging.ERROR)
