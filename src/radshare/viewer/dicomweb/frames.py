"""Frames straight from the stored pixel data (docs/requirements.md B6.4; PS3.18 WADO-RS frames; what OHIF asks
for): for little-endian files only the header and the wanted frames are read, native frames cut at their offsets
and encapsulated ones found through the offset tables; other files (deflated, big endian) are read whole. The
frames are sent as stored: radshare never transcodes.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.uid import UID, ExplicitVRLittleEndian

from radshare.core.storage import Storage

_PIXEL_DATA = 0x7FE00010


class FrameError(Exception):
    """The stored pixel data cannot be cut into frames here."""


def _frame_length(ds: Dataset) -> int:
    bits = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * int(ds.BitsAllocated)
    if bits % 8:
        raise FrameError("frames of this pixel data are not byte aligned")
    return bits // 8


def _cut(
    ds: Dataset, buffer: bytes | BinaryIO, encapsulated: bool, count: int, wanted: list[int], start: int
) -> list[bytes]:
    if encapsulated:
        offsets = None
        if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
            offsets = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
        return [get_frame(buffer, n - 1, number_of_frames=count, extended_offsets=offsets) for n in wanted]
    length = _frame_length(ds)
    frames = []
    for n in wanted:
        if isinstance(buffer, bytes):
            data = buffer[(n - 1) * length : n * length]
        else:
            buffer.seek(start + (n - 1) * length)
            data = buffer.read(length)
        if len(data) != length:
            raise FrameError("the pixel data is shorter than its frames")
        frames.append(data)
    return frames


def read_frames(storage: Storage, key: str, count: int, wanted: list[int]) -> tuple[str, list[bytes]]:
    """The wanted frames (1-based) as stored, and the transfer syntax they are in. Only the header and those frames
    are read for little-endian files; others (deflated, big endian) are read whole."""
    with storage.open(key) as handle:
        ds = dcmread(handle, stop_before_pixels=True)
        syntax = UID(ds.file_meta.TransferSyntaxUID)
        if syntax.is_little_endian and not syntax.is_deflated:
            start = handle.tell()
            head = handle.read(12)
            group, element = struct.unpack("<HH", head[:4]) if len(head) == 12 else (0, 0)
            if (group << 16) | element != _PIXEL_DATA:
                raise FrameError("no pixel data")
            if syntax.is_implicit_VR:
                (length,) = struct.unpack("<I", head[4:8])
                value = start + 8
            else:
                (length,) = struct.unpack("<I", head[8:12])
                value = start + 12
            handle.seek(value)
            encapsulated = length == 0xFFFFFFFF
            return str(syntax), _cut(ds, handle, encapsulated, count, wanted, value)
        handle.seek(0)
        full = dcmread(handle)
    if "PixelData" not in full:
        raise FrameError("no pixel data")
    pixels = full.PixelData
    encapsulated = syntax.is_encapsulated
    if syntax.is_deflated:
        syntax = ExplicitVRLittleEndian  # inflated, the pixel data is plain little endian
    return str(syntax), _cut(full, pixels, encapsulated, count, wanted, 0)
