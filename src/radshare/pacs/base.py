"""What the PACS client's two transports (DIMSE and DICOMweb) share: the interface types, the translation of a
``StudyQuery`` into DICOM matching keys, and the reading of a study-level answer into a ``PacsStudy``.

Nothing here (nor in the transports) logs or raises with patient data (docs/security.md A21): a ``PacsError`` reason
names the failure, never a patient, id or UID.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
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


class Failure(StrEnum):
    """What went wrong with a PACS, as a stable code: stored on a share and in the audit trail, and the key of the
    text a person reads (``FAILURE_TEXTS``, in their language)."""

    NODE_OFF = "node_off"
    NODE_UNADDRESSED = "node_unaddressed"
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    BROKEN_OFF = "broken_off"
    ASSOCIATION_REJECTED = "association_rejected"
    NO_SERVICE = "no_service"
    ECHO_FAILED = "echo_failed"
    CREDENTIALS_REFUSED = "credentials_refused"
    HTTP_ERROR = "http_error"
    TLS_UNVERIFIED = "tls_unverified"
    UNREADABLE_ANSWER = "unreadable_answer"
    REQUEST_FAILED = "request_failed"
    QUERY_FAILED = "query_failed"
    NO_IMAGES = "no_images"
    MOVE_DESTINATION_UNKNOWN = "move_destination_unknown"
    MOVE_FAILED = "move_failed"
    RETRIEVE_FAILED = "retrieve_failed"
    OUT_OF_RESOURCES = "out_of_resources"
    CANCELLED = "cancelled"
    PARTIAL = "partial"


# What a sender or an organisation admin reads, by code (the English ``reason`` with its details goes to the log
# and the audit trail only).
FAILURE_TEXTS: dict[Failure, Promise] = {
    Failure.NODE_OFF: _("This PACS node is switched off."),
    Failure.NODE_UNADDRESSED: _(
        "This PACS node has neither a DICOM address (host and port) nor a DICOMweb URL."
    ),
    Failure.UNREACHABLE: _(
        "The PACS could not be reached. Check that it is running and that its address is right."
    ),
    Failure.TIMEOUT: _("The PACS did not answer in time. Try again later."),
    Failure.BROKEN_OFF: _("The PACS broke off the connection. Try again later."),
    Failure.ASSOCIATION_REJECTED: _(
        "The PACS refused the connection. Check that the PACS knows radshare's AE title, and the AE title of "
        "this PACS node."
    ),
    Failure.NO_SERVICE: _(
        "The PACS does not offer the DICOM service that was asked for (search or retrieve). Check its "
        "settings for radshare."
    ),
    Failure.ECHO_FAILED: _("The PACS answered the connection test with an error."),
    Failure.CREDENTIALS_REFUSED: _("The PACS refused radshare's DICOMweb user name, password or token."),
    Failure.HTTP_ERROR: _("The PACS answered with an error. Try again later."),
    Failure.TLS_UNVERIFIED: _("The security certificate (TLS) of the PACS could not be verified."),
    Failure.UNREADABLE_ANSWER: _("The PACS sent an answer that radshare cannot read."),
    Failure.REQUEST_FAILED: _("The request to the PACS failed. Try again later."),
    Failure.QUERY_FAILED: _("The PACS could not carry out the search."),
    Failure.NO_IMAGES: _("The PACS has no images of this study."),
    Failure.MOVE_DESTINATION_UNKNOWN: _(
        "The PACS does not know radshare as a destination (C-MOVE). Register radshare's AE title in the PACS."
    ),
    Failure.MOVE_FAILED: _(
        "The PACS could not send the images to radshare. Check that the PACS knows radshare's AE title and "
        "address, and that the AE title and host of this PACS node are right."
    ),
    Failure.RETRIEVE_FAILED: _("The PACS could not carry out the retrieve."),
    Failure.OUT_OF_RESOURCES: _("The PACS is too busy (out of resources). Try again later."),
    Failure.CANCELLED: _("The PACS cancelled the retrieve."),
    Failure.PARTIAL: _(
        "Some images could not be retrieved from the PACS. Try again: images that arrived are not fetched again."
    ),
}


def failure_text(code: str) -> str | None:
    """The text for a stored failure code, in the active language; None for a code that is not a ``Failure``."""
    try:
        return str(FAILURE_TEXTS[Failure(code)])
    except ValueError:
        return None


class PacsError(Exception):
    """A PACS could not do what was asked.

    ``code`` says what went wrong (``Failure``), and ``message`` says it to a person in the active language.
    ``reason`` is short English for operators and logs, with details, without patient data; ``temporary`` says
    whether trying again later may help (PACS down, busy, timed out, some images failed) or not (refused,
    misconfigured). ``result`` holds the counts of a retrieve that got part of the way.
    """

    def __init__(
        self, reason: str, *, code: Failure, temporary: bool, result: RetrieveResult | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.temporary = temporary
        self.result = result

    @property
    def message(self) -> str:
        return str(FAILURE_TEXTS[self.code])


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


def is_uid(value: str) -> bool:
    """A DICOM UID: digits and dots, at most 64 characters (PS3.5 9.1)."""
    return len(value) <= 64 and bool(_UID.match(value))


def study_uids(query: StudyQuery) -> list[str]:
    uids = [u.strip() for u in query.study_uids if u.strip()]
    for uid in uids:
        if not is_uid(uid):
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


def wait_for_index(organisation_pk: int, sop_uids: list[str], *, quiet_for: float = 5.0) -> None:
    """After a C-MOVE, in journal mode (``RADSHARE_INGEST_JOURNAL``): the SCP answered the PACS before its indexer
    filed the images, about a second later (docs/architecture.md "C-STORE ingest"). Wait until the index holds
    ``sop_uids``, or until it has gained none of them for ``quiet_for`` seconds."""
    if not settings.RADSHARE.ingest_journal or not sop_uids:
        return
    have, changed = -1, time.monotonic()
    while (now := len(stored_uids(organisation_pk, sop_uids))) < len(sop_uids):
        if now != have:
            have, changed = now, time.monotonic()
        elif time.monotonic() - changed > quiet_for:
            return
        time.sleep(0.2)


def partial_error(failed: int, asked: int, result: RetrieveResult, hint: str = "") -> PacsError:
    noun = "image" if asked == 1 else "images"
    reason = f"{failed} of {asked} {noun} could not be retrieved"
    return PacsError(
        reason + (f" ({hint})" if hint else ""), code=Failure.PARTIAL, temporary=True, result=result
    )
