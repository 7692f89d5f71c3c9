"""What ingest reads of an instance before it stores it: the encoding checked, the header parsed once into a
``Header`` of the values the index keeps (docs/architecture.md "Ingest path"). Pixels are never decoded.

In journal mode the SCP reads the header before it acknowledges (its study gate needs it) and writes the ``Header``
into the journal record beside the bytes, so the indexer files the record without parsing it again
(``indexer.py``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from django.conf import settings
from pydicom import dcmread
from pydicom.dataset import Dataset

from radshare import dicom
from radshare.dicom import DICOM_READ_ERRORS
from radshare.studies.encoding import EncodingError, check_encoding
from radshare.studies.errors import MissingAttributeError, NotDicomError, TruncatedError

# OSError: pydicom's "No tag to read" for a sequence it cannot finish (reading memory, no file is involved).
_HEADER_READ_ERRORS: tuple[type[Exception], ...] = (*DICOM_READ_ERRORS, OSError)
_DATES = ("patient_birth_date", "study_date")


def bsn(ds: Dataset) -> str:
    """The BSN from Other Patient IDs Sequence (or the Patient ID itself) with issuer RADSHARE_BSN_ISSUER."""
    issuer = settings.RADSHARE.bsn_issuer
    candidates: list[tuple[str, str]] = [
        (dicom.text(ds, "PatientID", 64), dicom.text(ds, "IssuerOfPatientID", 64))
    ]
    for item in ds.get("OtherPatientIDsSequence", None) or []:
        candidates.append((dicom.text(item, "PatientID", 64), dicom.text(item, "IssuerOfPatientID", 64)))
    for value, value_issuer in candidates:
        digits = value.replace(" ", "")
        if value_issuer == issuer and digits.isdigit() and 8 <= len(digits) <= 9:
            return digits.zfill(9)
    return ""


@dataclass(frozen=True)
class Header:
    """Every value the index takes from an instance, as it stores it (cut to the column's length)."""

    transfer_syntax: str
    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    issuer: str  # Issuer of Patient ID
    patient_id: str
    patient_name: str
    patient_birth_date: dt.date | None
    patient_sex: str
    bsn: str  # nine digits, or ""
    study_date: dt.date | None
    study_time: str
    study_description: str
    accession_number: str
    referring_physician_name: str
    modality: str
    series_number: int | None
    series_description: str
    body_part_examined: str
    instance_number: int | None
    number_of_frames: int
    rows: int | None
    columns: int | None

    @classmethod
    def of(cls, ds: Dataset, transfer_syntax: str) -> Header:
        """Read from a parsed data set; every conversion that can fail on a malformed value happens here, inside
        ``parse_header``'s error handling, never half-way through indexing."""
        return cls(
            transfer_syntax=transfer_syntax,
            sop_instance_uid=dicom.text(ds, "SOPInstanceUID", 64),
            sop_class_uid=dicom.text(ds, "SOPClassUID", 64),
            study_uid=dicom.text(ds, "StudyInstanceUID", 64),
            series_uid=dicom.text(ds, "SeriesInstanceUID", 64),
            issuer=dicom.text(ds, "IssuerOfPatientID", 64),
            patient_id=dicom.text(ds, "PatientID", 64),
            patient_name=dicom.text(ds, "PatientName", 324),
            patient_birth_date=dicom.date(ds, "PatientBirthDate"),
            patient_sex=dicom.text(ds, "PatientSex", 16),
            bsn=bsn(ds),
            study_date=dicom.date(ds, "StudyDate"),
            study_time=dicom.text(ds, "StudyTime", 16),
            study_description=dicom.text(ds, "StudyDescription", 200),
            accession_number=dicom.text(ds, "AccessionNumber", 64),
            referring_physician_name=dicom.text(ds, "ReferringPhysicianName", 324),
            modality=dicom.text(ds, "Modality", 16),
            series_number=dicom.integer(ds, "SeriesNumber"),
            series_description=dicom.text(ds, "SeriesDescription", 200),
            body_part_examined=dicom.text(ds, "BodyPartExamined", 64),
            instance_number=dicom.integer(ds, "InstanceNumber"),
            number_of_frames=max(dicom.integer(ds, "NumberOfFrames") or 1, 1),
            rows=dicom.integer(ds, "Rows"),
            columns=dicom.integer(ds, "Columns"),
        )

    def as_json(self) -> dict[str, Any]:
        value = dataclasses.asdict(self)
        for name in _DATES:
            value[name] = value[name] and value[name].isoformat()
        return value

    @classmethod
    def from_json(cls, value: Any) -> Header | None:
        """``as_json`` read back; None for anything else (a record of another version): the caller parses."""
        try:
            fields = dict(value)
            for name in _DATES:
                fields[name] = fields[name] and dt.date.fromisoformat(fields[name])
            return cls(**fields)
        except (TypeError, ValueError, KeyError):
            return None


def parse_header(data: bytes | memoryview) -> Dataset:
    """Check the encoding of the whole file, then read everything up to the pixel data; never decode pixels.
    Raises ``NotDicomError`` (``TruncatedError`` when the data ends too early)."""
    try:
        check_encoding(data)
    except EncodingError as exc:
        raise (TruncatedError if exc.incomplete else NotDicomError)(exc.reason) from exc
    try:
        return dcmread(BytesIO(data), stop_before_pixels=True)
    except _HEADER_READ_ERRORS as exc:
        raise NotDicomError(f"not a readable DICOM data set ({type(exc).__name__})") from exc


def read_header(data: bytes | memoryview) -> Header:
    """``parse_header`` and every value the index keeps: everything ingest checks before it acknowledges. A value
    pydicom cannot convert is refused as unreadable (0xC000) here, never half-way through indexing."""
    ds = parse_header(data)
    try:
        header = Header.of(ds, dicom.text(getattr(ds, "file_meta", Dataset()), "TransferSyntaxUID", 64))
    except _HEADER_READ_ERRORS as exc:
        raise NotDicomError(f"not a readable DICOM data set ({type(exc).__name__})") from exc
    for keyword, value in (
        ("SOPInstanceUID", header.sop_instance_uid),
        ("SOPClassUID", header.sop_class_uid),
        ("StudyInstanceUID", header.study_uid),
        ("SeriesInstanceUID", header.series_uid),
    ):
        if not value:
            raise MissingAttributeError(f"{keyword} is missing or empty")
    if not header.transfer_syntax:
        raise MissingAttributeError("the file meta information has no Transfer Syntax UID")
    return header
