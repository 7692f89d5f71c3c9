"""DICOM values as readable text, and which SOP classes are reports (shared by the SR and PDF code)."""

from __future__ import annotations

import datetime as dt

from pydicom.dataset import Dataset
from pydicom.valuerep import DA, DT, TM

# Which SOP classes are reports is radshare.dicom's rule (ingest counts them too); re-exported for the reports' code.
from radshare.dicom import DICOM_READ_ERRORS
from radshare.dicom import PDF_SOP_CLASS as PDF_SOP_CLASS
from radshare.dicom import REPORT_SOP_CLASSES as REPORT_SOP_CLASSES
from radshare.dicom import SR_SOP_CLASSES as SR_SOP_CLASSES

PDF_MIME_TYPE = "application/pdf"

# What pydicom raises on broken data (as ingest catches it), plus unreadable files and absurdly deep nesting.
READ_ERRORS: tuple[type[Exception], ...] = (*DICOM_READ_ERRORS, OSError, RecursionError)


def is_sr(sop_class_uid: str) -> bool:
    return sop_class_uid in SR_SOP_CLASSES


def is_pdf(sop_class_uid: str) -> bool:
    return sop_class_uid == PDF_SOP_CLASS


def is_report(sop_class_uid: str) -> bool:
    """Whether instances of this SOP class are a report (shown as text or PDF), not an image."""
    return sop_class_uid in REPORT_SOP_CLASSES


class ReportError(Exception):
    """A report that cannot be shown: the file is damaged, or not what its SOP class promises."""


# --- values ---------------------------------------------------------------------------------------


def as_str(value: object) -> str:
    """A DICOM value as one string (a multi-valued one joined as DICOM writes it); None as ""."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)  # type: ignore[attr-defined]
    return str(value).strip()


def text_value(value: object) -> str:
    """Free text (UT/ST/LT) with its line breaks normalised to ``\\n`` (PS3.5 6.1.3: CR LF, or as written)."""
    raw = value if isinstance(value, str) else as_str(value)
    return raw.replace("\r\n", "\n").replace("\n\r", "\n").replace("\r", "\n").strip()


def code_meaning(ds: Dataset, keyword: str) -> str:
    """Code Meaning of the first item of a code sequence (PS3.3 8.8, Table 8.8-1)."""
    items = ds.get(keyword) or []
    return as_str(items[0].get("CodeMeaning")) if len(items) else ""


def parse_date(value: object) -> dt.date | None:
    try:
        return DA(as_str(value)) if as_str(value) else None
    except ValueError:
        return None


def parse_time(value: object) -> dt.time | None:
    try:
        return TM(as_str(value)) if as_str(value) else None
    except ValueError:
        return None


def parse_datetime(value: object) -> dt.datetime | None:
    """A DT value as written, wall-clock time (an offset, when given, is not converted)."""
    try:
        parsed = DT(as_str(value)) if as_str(value) else None
    except ValueError:
        return None
    return parsed.replace(tzinfo=None) if parsed is not None else None


def format_date(value: dt.date) -> str:
    return value.strftime("%d-%m-%Y")


def format_time(value: dt.time) -> str:
    return value.strftime("%H:%M:%S" if value.second else "%H:%M")


def format_datetime(value: dt.datetime | dt.date) -> str:
    if isinstance(value, dt.datetime):
        return f"{format_date(value)} {format_time(value.time())}"
    return format_date(value)


def date_and_time(ds: Dataset, date_keyword: str, time_keyword: str) -> dt.datetime | dt.date | None:
    date = parse_date(ds.get(date_keyword))
    if date is None:
        return None
    time = parse_time(ds.get(time_keyword))
    return dt.datetime.combine(date, time) if time is not None else date
