"""The Part 10 file a received data set becomes (radshare.dicom.part10_file): the same file meta pydicom writes."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    MRImageStorage,
)

from radshare.dicom import IMPLEMENTATION_UID, IMPLEMENTATION_VERSION, PREAMBLE, part10_file
from radshare.studies.synthetic import FakePatient, ct_series

PATIENT = FakePatient("P1", "Test^Pat", __import__("datetime").date(1980, 5, 17))


def _pydicom_meta(sop_class: str, sop_instance: str, syntax: str) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = UID(syntax)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("sop_class", "sop_instance", "syntax"),
    [
        (CTImageStorage, "1.2.3.4.5", ExplicitVRLittleEndian),  # odd lengths: padded with NUL
        (MRImageStorage, "1.2.3.4.56", ImplicitVRLittleEndian),  # even
        (CTImageStorage, "1.2.826.0.1.3680043.8.498." + "1" * 37, JPEG2000Lossless),  # 64 characters
    ],
)
def test_file_meta_is_byte_for_byte_what_pydicom_writes(
    sop_class: str, sop_instance: str, syntax: str
) -> None:
    body = b"\x08\x00\x16\x00UI\x04\x00abcd"
    data = part10_file(sop_class, sop_instance, syntax, body)
    assert data == PREAMBLE + _pydicom_meta(sop_class, sop_instance, syntax) + body


def test_a_received_data_set_reads_back_whole() -> None:
    ds = ct_series(PATIENT, count=1, size=16)[0]
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, ds)
    data = part10_file(ds.SOPClassUID, ds.SOPInstanceUID, ImplicitVRLittleEndian, buffer.getvalue())
    kept = dcmread(BytesIO(data))
    assert kept.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert kept.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert kept.file_meta.ImplementationClassUID == IMPLEMENTATION_UID
    assert kept.file_meta.FileMetaInformationGroupLength == len(data) - len(PREAMBLE) - 12 - len(
        buffer.getvalue()
    )
    assert kept.PatientName == "Test^Pat"
    assert (kept.pixel_array == ds.pixel_array).all()
