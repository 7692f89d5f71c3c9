"""What the PACS client's two transports (DIMSE and DICOMweb) share: the interface types, the translation of a
``StudyQuery`` into DICOM matching keys, and the reading of a study-level answer into a ``PacsStudy``.

Nothing here (nor in the transports) logs or raises with patient data (docs/security.md A21): a ``PacsError`` reason
names the failure, never a patient, id or UID.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from radshare import dicom
from radshare.studies.models import Instance

ProgressCallback = Callable[[int, int | None], None]


@dataclass(frozen=True)
class RetrieveResult:
    """What a retrieve did.

    ``expected``: instances the PACS holds for the study (None if it could not say); ``received``: instances stored
    by this call; ``already_here``: instances not fetched (or fetched and found stored already) because the
    organisation holds them; ``failed``: instances that could not be retrieved (a returned result has none: a
    partial retrieve raises ``PacsError`` with the result attached).
    """

    expected: int | None
    received: int
    already_here: int
    failed: int


class PacsError(Exception):
    """A PACS could not do what was asked.

    ``reason`` is short English for operators and logs, without patient data; ``temporary`` says whether trying
    again later may help (PACS down, busy, timed out, some images failed) or not (refused, misconfigured).
    ``result`` holds the counts of a retrieve that got part of the way.
    """

    def __init__(self, reason: str, *, temporary: bool, result: RetrieveResult | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.temporary = temporary
        self.result = result


@dataclass(frozen=True)
class StudyQuery:
    """Search criteria; empty ones are not used. ``patient_name`` is matched as typed ("jansen", "Jansen, Piet",
    "van der Berg"): each word is a prefix, in this order (``Jansen*Piet*``); the DICOM wildcards ``*`` and ``?``
    may be typed too. ``modality`` matches any series of the study. Dates are inclusive."""

    patient_id: str = ""
    patient_name: str = ""
    birth_date: dt.date | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    accession_number: str = ""
    modality: str = ""
    study_uids: tuple[str, ...] = ()


@dataclass(frozen=True)
class PacsStudy:
    study_instance_uid: str
    patient_id: str
    issuer: str
    patient_name: str
    patient_birth_date: dt.date | None
    study_date: dt.date | None
    description: str
    accession_number: str
    modalities: tuple[str, ...]
    number_of_series: int | None
    number_of_instances: int | None


# Return keys of a study-level query, besides the matching keys (PS3.4 C.6.2.1.2, Study Root, STUDY level).
STUDY_RETURN_KEYS = (
    "StudyInstanceUID",
    "PatientID",
    "IssuerOfPatientID",
    "PatientName",
    "PatientBirthDate",
    "StudyDate",
    "StudyDescription",
    "AccessionNumber",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_MODALITY = re.compile(r"^[A-Z0-9_]{1,16}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


def _text(value: str, keyword: str, limit: int) -> str:
    """A query value: control characters and the DICOM value delimiter (backslash, which would turn the value
    into a list) removed; too long is an error rather than a silently different query."""
    cleaned = _CONTROL.sub("", value).strip()
    if len(cleaned) > limit:
        raise ValueError(f"{keyword} is longer than {limit} characters")
    return cleaned


def name_pattern(typed: str) -> str:
    """``Jansen, Piet`` -> ``Jansen*Piet*``: every word a prefix, in order.

    The component separator ``^`` is not sent: ``*`` matches it as well as a space (PS3.4 C.2.2.2.4), and some
    servers mishandle ``^`` in a URL (Orthanc 1.10 does not decode a percent-encoded ``^``).
    """
    words = [w for w in re.split(r"[\s,^]+", _text(typed, "patient name", 64)) if w]
    if not words:
        return ""
    pattern = "*".join(words)
    return pattern if pattern.endswith("*") else pattern + "*"


def date_range(date_from: dt.date | None, date_to: dt.date | None) -> str:
    """DICOM range matching (PS3.4 C.2.2.2.5): ``YYYYMMDD-YYYYMMDD``, open ends allowed."""
    if date_from is None and date_to is None:
        return ""
    if date_from is not None and date_to is not None and date_from > date_to:
        raise ValueError("the start date is after the end date")
    start = date_from.strftime("%Y%m%d") if date_from else ""
    end = date_to.strftime("%Y%m%d") if date_to else ""
    if start == end:
        return start
    return f"{start}-{end}"


def study_uids(query: StudyQuery) -> list[str]:
    uids = [u.strip() for u in query.study_uids if u.strip()]
    for uid in uids:
        if len(uid) > 64 or not _UID.match(uid):
            raise ValueError("a study instance UID is not a valid UID")
    return uids


def matching_keys(query: StudyQuery) -> dict[str, str]:
    """The query's matching keys (keyword -> value) other than Study Instance UID; raises ValueError for a query
    that is invalid or matches everything (a PACS-wide listing is never what a sender needs)."""
    keys: dict[str, str] = {}
    if patient_id := _text(query.patient_id, "patient id", 64):
        keys["PatientID"] = patient_id
    if name := name_pattern(query.patient_name):
        keys["PatientName"] = name
    if query.birth_date is not None:
        keys["PatientBirthDate"] = query.birth_date.strftime("%Y%m%d")
    if dates := date_range(query.date_from, query.date_to):
        keys["StudyDate"] = dates
    if accession := _text(query.accession_number, "accession number", 16):
        keys["AccessionNumber"] = accession
    if query.modality.strip():
        modality = query.modality.strip().upper()
        if not _MODALITY.match(modality):
            raise ValueError("the modality is not a DICOM modality code")
        keys["ModalitiesInStudy"] = modality
    if not keys and not study_uids(query):
        raise ValueError("give at least one search criterion")
    return keys


def modalities_of(ds: Dataset, keyword: str = "ModalitiesInStudy") -> tuple[str, ...]:
    value: Any = ds.get(keyword)
    if value in (None, ""):
        return ()
    items = value if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    seen: dict[str, None] = {}
    for item in items:
        for part in str(item).split("\\"):
            if part.strip():
                seen[part.strip().upper()] = None
    return tuple(seen)


def study_from_dataset(ds: Dataset) -> PacsStudy | None:
    """One study-level answer (C-FIND identifier or QIDO-RS JSON read into a Dataset); None without a UID."""
    uid = dicom.text(ds, "StudyInstanceUID")
    if not uid:
        return None
    return PacsStudy(
        study_instance_uid=uid,
        patient_id=dicom.text(ds, "PatientID"),
        issuer=dicom.text(ds, "IssuerOfPatientID"),
        patient_name=dicom.text(ds, "PatientName"),
        patient_birth_date=dicom.date(ds, "PatientBirthDate"),
        study_date=dicom.date(ds, "StudyDate"),
        description=dicom.text(ds, "StudyDescription"),
        accession_number=dicom.text(ds, "AccessionNumber"),
        modalities=modalities_of(ds),
        number_of_series=dicom.integer(ds, "NumberOfStudyRelatedSeries"),
        number_of_instances=dicom.integer(ds, "NumberOfStudyRelatedInstances"),
    )


def newest_first(studies: list[PacsStudy]) -> list[PacsStudy]:
    return sorted(
        studies, key=lambda s: (s.study_date is not None, s.study_date or dt.date.min), reverse=True
    )


@dataclass(frozen=True)
class RemoteInstance:
    """One instance the PACS holds (from an IMAGE-level query)."""

    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str


def instance_from_dataset(ds: Dataset) -> RemoteInstance | None:
    sop = dicom.text(ds, "SOPInstanceUID")
    series = dicom.text(ds, "SeriesInstanceUID")
    if not sop or not series:
        return None
    return RemoteInstance(series, sop, dicom.text(ds, "SOPClassUID"))


def stored_uids(organisation_pk: int, sop_uids: list[str]) -> set[str]:
    """Which of ``sop_uids`` the organisation holds already (the instance index is unique per organisation)."""
    found: set[str] = set()
    for start in range(0, len(sop_uids), 500):
        chunk = sop_uids[start : start + 500]
        found.update(
            Instance.objects.filter(organisation_id=organisation_pk, sop_instance_uid__in=chunk)
            .order_by()
            .values_list("sop_instance_uid", flat=True)
        )
    return found


def partial_error(failed: int, asked: int, result: RetrieveResult, hint: str = "") -> PacsError:
    noun = "image" if asked == 1 else "images"
    reason = f"{failed} of {asked} {noun} could not be retrieved"
    return PacsError(reason + (f" ({hint})" if hint else ""), temporary=True, result=result)
