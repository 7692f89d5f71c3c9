"""Encapsulated PDF (PS3.3 A.45.1 Encapsulated PDF IOD, C.24.2 Encapsulated Document Module): the PDF out of an
instance, and a new instance around a PDF. Pure functions on pydicom ``Dataset``s."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from radshare.dicom import new_part10_dataset
from radshare.imaging.reports.values import PDF_MIME_TYPE, PDF_SOP_CLASS, ReportError, as_str

# The document title of a radiology report: LOINC 18748-4 (PS3.16 CID 7000 Diagnostic Imaging Report Document Titles).
RADIOLOGY_REPORT_CODE = ("18748-4", "LN", "Diagnostic Imaging Report")
ATTACHED_SERIES_DESCRIPTION = "Report"


def pdf_bytes(ds: Dataset) -> bytes:
    """The PDF inside an Encapsulated PDF instance, byte for byte as it was encapsulated.

    PS3.3 C.24.2: Encapsulated Document (0042,0011) holds the document, padded with one trailing NUL byte to an
    even length; Encapsulated Document Length (0042,0015), when present, is the length before padding. Without
    it, a trailing NUL is taken for that pad. Raises ``ReportError`` when there is no PDF.
    """
    mime = as_str(ds.get("MIMETypeOfEncapsulatedDocument")).lower()
    if mime and mime != PDF_MIME_TYPE:
        raise ReportError(f"encapsulated document of type {mime[:64]!r}, not PDF")
    document = ds.get("EncapsulatedDocument")
    if not isinstance(document, bytes) or not document:
        raise ReportError("no encapsulated document")
    length = ds.get("EncapsulatedDocumentLength")
    if isinstance(length, int) and 0 < length <= len(document):
        return document[:length]
    return document[:-1] if document.endswith(b"\x00") else document


def looks_like_pdf(head: bytes, tail: bytes) -> bool:
    """PDF header ``%PDF-`` at byte 0 and an end-of-file marker near the end (ISO 32000-1 7.5.2, 7.5.5).
    A truncated upload has no end marker."""
    return head.startswith(b"%PDF-") and b"%%EOF" in tail


# Copied from a stored instance of the study, so the report is filed with it (Patient and General Study
# Modules, PS3.3 C.7.1.1 and C.7.2.1; type 2 attributes are written empty when the source lacks them).
PATIENT_STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "OtherPatientIDsSequence",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyID",
    "StudyDescription",
)
TYPE2_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyID",
)


def _copy_patient_and_study(source: Dataset, target: Dataset) -> None:
    source.decode()  # values as text in the source's character set; the target is written in UTF-8
    for keyword in PATIENT_STUDY_KEYWORDS:
        if keyword not in source:
            continue
        value = source[keyword].value
        if keyword == "OtherPatientIDsSequence":
            target.OtherPatientIDsSequence = Sequence([_plain_copy(item) for item in value])
        elif keyword in ("PatientName", "ReferringPhysicianName"):
            setattr(target, keyword, as_str(value))
        else:
            setattr(target, keyword, value)
    for keyword in TYPE2_KEYWORDS:
        if keyword not in target:
            setattr(target, keyword, "")


def _plain_copy(item: Dataset) -> Dataset:
    copy = Dataset()
    for element in item:
        if element.VR == "SQ":
            copy.add_new(element.tag, "SQ", Sequence([_plain_copy(i) for i in element.value]))
        elif element.VR == "PN":
            copy.add_new(element.tag, "PN", as_str(element.value))
        else:
            copy.add_new(element.tag, element.VR, element.value)
    return copy


def encapsulate_pdf(
    pdf: bytes,
    source: Dataset,
    *,
    title: str,
    series_number: int,
    institution: str = "",
    now: dt.datetime | None = None,
) -> Dataset:
    """A new Encapsulated PDF instance (PS3.3 A.45.1) holding ``pdf``, filed in ``source``'s patient and study.

    New SOP Instance and Series Instance UIDs; a series of its own (Modality DOC, PS3.3 C.24.1); Encapsulated
    Document Module (C.24.2) with the document title, the radiology report concept (LOINC 18748-4), Burned In
    Annotation YES (the document names the patient) and the length before padding; SC Equipment (C.8.6.1)
    Conversion Type WSD (workstation).
    """
    now = now or timezone.localtime()
    ds = new_part10_dataset(PDF_SOP_CLASS)
    ds.InstanceCreationDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    _copy_patient_and_study(source, ds)
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = series_number
    ds.SeriesDescription = ATTACHED_SERIES_DESCRIPTION
    ds.Manufacturer = "radshare"
    if institution:
        ds.InstitutionName = institution[:64]
    ds.ConversionType = "WSD"
    ds.InstanceNumber = 1
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = title
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = RADIOLOGY_REPORT_CODE
    ds.ConceptNameCodeSequence = Sequence([code])
    ds.MIMETypeOfEncapsulatedDocument = PDF_MIME_TYPE
    ds.EncapsulatedDocument = pdf  # pydicom pads an odd length with one NUL byte (PS3.5 7.1.1)
    ds.EncapsulatedDocumentLength = len(pdf)
    return ds
