"""Moving images as video (docs/architecture.md "Renders"): a multi-frame instance recorded as a run in time (an
ultrasound clip, an XA or RF run, a cardiac cine) also gets one H.264 MP4 at its recorded frame rate, made from the
same decoded frames as its JPEGs (``render.render_file`` decodes each frame once).

Which instances: more than one frame and a timing, in this order: Frame Time (0018,1063, ms per frame), Frame Time
Vector (0018,1065, ms between frames: their mean), Cine Rate (0018,0040, frames per second), Recommended Display
Frame Rate (0008,2144). A multi-frame image without any (a CT or MR volume, an RT dose grid) is a stack, not a run,
and gets no video.

The MP4 is what every browser plays: H.264 in yuv420p, at the preview size (at most 1024 px on the longest side),
cropped to even dimensions (yuv420p halves both), ``moov`` first ("faststart", so playback starts before the last
byte), a key frame every second (seeking and frame stepping stay quick). FFmpeg writes it to a file of its own in
a temporary folder (faststart rewrites the file, which a memory buffer cannot be), then it goes to the storage.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import tempfile
import zlib
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image
from pydicom.dataset import Dataset

CODEC = "libx264"
CRF = "20"  # visually lossless for these images at a few MB per minute
PRESET = "veryfast"  # the render processes share the cores with the SCP and the web server
MIN_FRAME_SECONDS = Fraction(1, 1000)  # 1000 frames/s: faster than any modality records
MAX_FRAME_SECONDS = Fraction(10)  # slower than this is a series of stills, not a run
# Faults of the machine, not of the data: the render is tried again later, as for the JPEGs (docs/security.md R8).
MACHINE_FAULTS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES, errno.EMFILE})


def _positive(value: Any) -> Fraction | None:
    """A DS/IS/FD value (or the first of several) as an exact positive fraction; None when absent or not one."""
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        if not len(value):
            return None
        value = value[0]
    try:
        number = Fraction(str(value).strip())
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if number > 0 else None


def frame_seconds(ds: Dataset) -> Fraction | None:
    """Seconds per frame of a run of frames, or None when ``ds`` is not one (a single frame, or no timing)."""
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return None
    if frames < 2:
        return None
    seconds: Fraction | None = None
    if (ms := _positive(ds.get("FrameTime"))) is not None:
        seconds = ms / 1000
    elif vector := ds.get("FrameTimeVector"):
        steps = [s for s in (_positive(v) for v in list(vector)[1:]) if s is not None]  # the first is 0
        seconds = sum(steps, Fraction(0)) / len(steps) / 1000 if steps else None
    else:
        for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
            if (rate := _positive(ds.get(keyword))) is not None:
                seconds = 1 / rate
                break
    if seconds is None or not MIN_FRAME_SECONDS <= seconds <= MAX_FRAME_SECONDS:
        return None
    return seconds


def _given_up(exc: Exception) -> bool:
    """True when the encoder gave up on these frames (then there is no video, the JPEGs stay); False for a fault
    of the machine, which the caller raises again."""
    return not (isinstance(exc, OSError) and exc.errno in MACHINE_FAULTS)


class VideoWriter:
    """Encodes frames (PIL images of one size, "L" or "RGB") into an MP4; ``finish`` gives its bytes, or b"" when
    the encoder gave up (frames of different sizes, an FFmpeg error): the JPEGs are made all the same."""

    def __init__(self, seconds: Fraction) -> None:
        self.rate = (1 / seconds).limit_denominator(100_000)
        self.frames = 0
        self._folder: Path | None = None  # made with the first frame
        self._container: Any = None
        self._stream: Any = None
        self._size = (0, 0)
        self.failed = False

    def _open(self, width: int, height: int) -> None:
        self._size = (max(2, width - width % 2), max(2, height - height % 2))
        self._folder = Path(tempfile.mkdtemp(prefix="radshare-video-"))
        self._container = av.open(
            str(self._folder / "video.mp4"), "w", format="mp4", options={"movflags": "+faststart"}
        )
        stream = self._container.add_stream(CODEC, rate=self.rate, options={"crf": CRF, "preset": PRESET})
        stream.width, stream.height = self._size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = max(1, round(self.rate))
        stream.codec_context.thread_count = (
            1  # the render pool already uses every core (docs/architecture.md)
        )
        self._stream = stream

    def add(self, image: Image.Image) -> None:
        if self.failed:
            return
        try:
            self._add(image)
        except (av.FFmpegError, ValueError, OSError) as exc:
            if not _given_up(exc):
                raise
            self.failed = True
            self.close()

    def _add(self, image: Image.Image) -> None:
        if self._container is None:
            self._open(*image.size)
        width, height = self._size
        if image.size != (width, height):
            if image.width < width or image.height < height:  # a frame smaller than the first: no video
                raise ValueError("frames of different sizes")
            image = image.crop((0, 0, width, height))
        pixels = np.asarray(image.convert("RGB") if image.mode not in ("L", "RGB") else image)
        frame = av.VideoFrame.from_ndarray(pixels, format="gray" if pixels.ndim == 2 else "rgb24")
        frame.pts = self.frames
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def finish(self) -> bytes:
        """The MP4's bytes (b"" when the encoder gave up); the temporary folder is gone after this (or ``close``)."""
        if self.failed or self._container is None or self._folder is None:
            self.close()
            return b""
        try:
            self._container.mux(self._stream.encode())
            self._container.close()
            self._container = None
            return (self._folder / "video.mp4").read_bytes()
        except (av.FFmpegError, ValueError, OSError) as exc:
            if not _given_up(exc):
                raise
            return b""
        finally:
            self.close()

    def close(self) -> None:
        if self._container is not None:
            with contextlib.suppress(av.FFmpegError, OSError):  # an encoder given up on: its file goes below
                self._container.close()
            self._container = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


def checksum(data: bytes) -> tuple[int, int]:
    """(size, CRC-32), as the ZIP download needs them (docs/architecture.md "Downloads")."""
    return len(data), zlib.crc32(data)
