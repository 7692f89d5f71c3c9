"""DICOM helpers shared by ingest, upload, the PACS client, reports and media (docs/architecture.md "DICOM").

Tolerant on what comes in: the readers take a value as the sender wrote it and give ``""``/``None`` for what is
missing or malformed, never an exception. Strict on what goes out: a Part 10 file we write has file meta for
Explicit VR Little Endian and our implementation class UID (PS3.10 7.1).
"""

from __future__ import annotations

import datetime as dt
import struct
import zlib
from io import BytesIO
from typing import Any, Protocol

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.uid import (
    UID,
    BasicTextSRStorage,
    Comprehensive3DSRStorage,
    ComprehensiveSRStorage,
    EncapsulatedPDFStorage,
    EnhancedSRStorage,
    ExplicitVRLittleEndian,
    ExtensibleSRStorage,
    generate_uid,
)

IMPLEMENTATION_UID = "1.2.826.0.1.3680043.10.1548"  # generate_uid's pydicom root + radshare branch
IMPLEMENTATION_VERSION = "RADSHARE"  # (0002,0013) Implementation Version Name (SH, 16 characters at most)
PREAMBLE = b"\x00" * 128 + b"DICM"  # PS3.10 7.1

# What pydicom raises on data it cannot read (zlib: a broken deflated data set). Shared by every reader of
# untrusted DICOM: ingest, upload, reports.
DICOM_READ_ERRORS: tuple[type[Exception], ...] = (
    InvalidDicomError,
    BytesLengthException,  # a binary value whose length is not a whole number of values
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    OverflowError,
    NotImplementedError,
    IndexError,
    UnicodeError,
    zlib.error,
)

# The general-purpose SR documents a radiologist writes (PS3.3 A.35.1-A.35.3, A.35.13, A.35.21). Dose reports,
# CAD findings and key-object selections are SR too, but no one reads them as "the report".
SR_SOP_CLASSES = frozenset(
    {
        BasicTextSRStorage,
        EnhancedSRStorage,
        ComprehensiveSRStorage,
        Comprehensive3DSRStorage,
        ExtensibleSRStorage,
    }
)
PDF_SOP_CLASS = EncapsulatedPDFStorage
# A report (an SR document or a PDF, PS3.3 A.45.1) is counted apart from the images wherever a count is shown.
REPORT_SOP_CLASSES = SR_SOP_CLASSES | {PDF_SOP_CLASS}


class Readable(Protocol):
    """What the readers below need of a data set: a pydicom ``Dataset``, or ``studies.header.Elements``."""

    def get(self, key: str, default: Any = None, /) -> Any: ...


def text(ds: Readable, keyword: str, limit: int | None = None) -> str:
    """The value as text (a multi-value joined with ``\\``), stripped, cut to ``limit``; ``""`` when absent."""
    value = ds.get(keyword)
    if value is None or value == "":
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(v) for v in value)
    return str(value).strip()[:limit]


def integer(ds: Readable, keyword: str) -> int | None:
    """An IS/US value as an int; None when absent or not a number."""
    value: Any = ds.get(keyword)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def date(ds: Readable, keyword: str) -> dt.date | None:
    """A DA value (``YYYYMMDD``; the ACR-NEMA ``YYYY.MM.DD`` still occurs); None when absent or not a date."""
    raw = text(ds, keyword, 16).replace(".", "")[:8]
    try:
        return dt.datetime.strptime(raw, "%Y%m%d").date() if len(raw) == 8 else None
    except ValueError:
        return None


def new_part10_dataset(sop_class: str) -> Dataset:
    """A new instance of ``sop_class`` with a fresh SOP Instance UID, UTF-8, and file meta for Explicit VR Little
    Endian (PS3.10 7.1): ready to be filled and written as a Part 10 file."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(IMPLEMENTATION_UID)
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    return ds


def _meta_element(element: int, vr: bytes, value: bytes) -> bytes:
    """One group 0002 element in Explicit VR Little Endian (PS3.5 7.1.2): UI padded with NUL, SH with a space."""
    if len(value) % 2:
        value += b"\x00" if vr == b"UI" else b" "
    if vr == b"OB":
        return struct.pack("<HH2s2xI", 0x0002, element, vr, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def part10_file(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, data_set: bytes) -> bytes:
    """A data set as received (encoded in ``transfer_syntax``) as a DICOM Part 10 file: preamble, file meta
    (PS3.10 7.1) with our implementation class UID, then the data set's bytes as they are. The file meta is packed
    here rather than through pydicom's ``FileMetaDataset``, which costs 0.3 ms per image at the storage SCP
    (docs/architecture.md "Ingest path"); ``tests/test_dicom.py`` reads it back with pydicom."""
    elements = b"".join(
        (
            _meta_element(0x0001, b"OB", b"\x00\x01"),
            _meta_element(0x0002, b"UI", sop_class_uid.encode("ascii")),
            _meta_element(0x0003, b"UI", sop_instance_uid.encode("ascii")),
            _meta_element(0x0010, b"UI", transfer_syntax.encode("ascii")),
            _meta_element(0x0012, b"UI", IMPLEMENTATION_UID.encode("ascii")),
            _meta_element(0x0013, b"SH", IMPLEMENTATION_VERSION.encode("ascii")),
        )
    )
    group_length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(elements))
    return b"".join((PREAMBLE, group_length, elements, data_set))


def received_file(event: Any) -> bytes:
    """The data set of a C-STORE request (a pynetdicom ``Event``) as a Part 10 file (``part10_file``): what the
    storage SCP and the PACS retrieve keep. ``AttributeError`` or ``UnicodeError`` for a request pynetdicom could
    not give a data set and UIDs for."""
    request = event.request
    return part10_file(
        str(request.AffectedSOPClassUID),
        str(request.AffectedSOPInstanceUID),
        str(event.context.transfer_syntax),
        request.DataSet.getvalue(),
    )


def encode(ds: Dataset) -> bytes:
    """The DICOM Part 10 file (preamble, file meta, data set) as bytes."""
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
