"""Ingest (one entry point for the SCP, uploads and demo data) and the study browser's queries."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import zlib
from dataclasses import dataclass
from enum import StrEnum
from io import BytesIO
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from pydicom import dcmread
from pydicom.dataset import Dataset

from radshare import dicom
from radshare.audit.actions import Action
from radshare.audit.services import ActorType, Outcome, record
from radshare.core import crypto
from radshare.core.storage import get_storage
from radshare.core.usage import Usage, count_each
from radshare.dicom import DICOM_READ_ERRORS
from radshare.organisations.models import Organisation, PacsNode
from radshare.studies import signals
from radshare.studies.conflicts import Refused, record_conflict
from radshare.studies.encoding import EncodingError, check_encoding
from radshare.studies.files import PendingFile, start_put
from radshare.studies.models import Instance, Patient, Series, Study

logger = logging.getLogger(__name__)

# Header attributes the index needs; everything up to the pixel data is small, so read it all but pixels.
PLACEHOLDER_BIRTH_DATES = frozenset({dt.date(1900, 1, 1), dt.date(1800, 1, 1), dt.date(1899, 12, 31)})


class StoreOutcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"


class IngestError(Exception):
    """The data cannot be stored. ``status`` is the DICOM C-STORE failure status (PS3.4 Annex B.2.3)."""

    status = 0xC000

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotDicomError(IngestError):
    status = 0xC000  # Error: cannot understand


class TruncatedError(NotDicomError):
    """The data ends before a value, a sequence or the pixel data does, or holds fewer pixel bytes than its
    image attributes call for (PS3.5 sections 7.5 and 8.1.1, Annex A.4).

    0xC000 "cannot understand" (PS3.4 Annex B.2.3), not 0xA900 "does not match SOP class", for pixel data too:
    the usual cause is a transfer or copy cut off, which is 0xC000 wherever the cut falls (in the header it
    leaves bytes no reader understands), and the defect lies in the encoding (PS3.5), not in the attributes
    the IOD requires (PS3.3), which is what radshare answers 0xA900 for.
    """

    status = 0xC000


class MissingAttributeError(IngestError):
    status = 0xA900  # Error: data set does not match SOP class


class ConflictError(IngestError):
    status = 0xA900


class PatientConflictError(ConflictError):
    """The study is filed under another patient: refused, and recorded for an admin to decide
    (``studies/conflicts.py``, docs/architecture.md "Corrections from the PACS")."""

    def __init__(self, refused: Refused) -> None:
        super().__init__("this study is already filed under another patient")
        self.refused = refused


class _StaleIdsError(Exception):
    """A cached id no longer holds (the study moved to another patient): forget the cache and index afresh."""


class _AlreadyHereError(Exception):
    """The SOP Instance UID is indexed already: ``_duplicate`` tells what that means for the received copy."""


class OutOfResourcesError(IngestError):
    status = 0xA700  # Refused: out of resources


class StudyBeingDestroyedError(OutOfResourcesError):
    """An instance of a study whose destruction has started: refused for now (0xA700), so the sender tries again
    and the study is then simply new (docs/architecture.md "Destruction"). Acknowledging it would lose it."""


BEING_DESTROYED = "the study is being removed; send it again later"
WRITE_FAILED = "the file could not be written (storage full or unavailable)"


@dataclass(frozen=True)
class StoredFile:
    key: str  # Instance.storage_key: the name under instances/ (radshare.core.storage.layout)
    size: int
    sha256: str
    crc32: int  # as a ZIP member records it (docs/architecture.md "Downloads")


@dataclass(frozen=True)
class StoreResult:
    outcome: StoreOutcome
    instance_pk: int
    study_instance_uid: str
    patient_pk: int


def bsn_hash(bsn: str) -> str:
    """Keyed hash of a BSN for search (docs/security.md A23), under the current HASHING key (``core.crypto``)."""
    return crypto.keyed_hash(f"bsn:{bsn}".encode())


def bsn_hashes(bsn: str) -> list[str]:
    """The hashes a patient with this BSN may be stored under, one per candidate key (docs/security.md A28)."""
    return crypto.keyed_hashes(f"bsn:{bsn}".encode())


def _bsn(ds: Dataset) -> str:
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


# OSError: pydicom's "No tag to read" for a sequence it cannot finish (reading memory, no file is involved).
_HEADER_READ_ERRORS: tuple[type[Exception], ...] = (*DICOM_READ_ERRORS, OSError)

# Every attribute indexing reads: converted while parsing, so a value pydicom cannot convert is refused as
# unreadable (0xC000) here and never fails the indexing half-way (an SCP answer of 0xC211 with a traceback).
INDEXED_KEYWORDS = (
    "SOPInstanceUID",
    "SOPClassUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "PatientID",
    "IssuerOfPatientID",
    "OtherPatientIDsSequence",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "ReferringPhysicianName",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "BodyPartExamined",
    "InstanceNumber",
    "NumberOfFrames",
    "Rows",
    "Columns",
)


def parse_header(data: bytes | memoryview) -> Dataset:
    """Check the encoding of the whole file, then read everything up to the pixel data; never decode pixels
    (docs/architecture.md "Ingest path"). Raises ``NotDicomError`` (``TruncatedError`` when the data ends too early)."""
    try:
        check_encoding(data)
    except EncodingError as exc:
        raise (TruncatedError if exc.incomplete else NotDicomError)(exc.reason) from exc
    try:
        ds = dcmread(BytesIO(data), stop_before_pixels=True)
        for keyword in INDEXED_KEYWORDS:
            ds.get(keyword)
        _bsn(ds)  # the items of Other Patient IDs Sequence
    except _HEADER_READ_ERRORS as exc:
        raise NotDicomError(f"not a readable DICOM data set ({type(exc).__name__})") from exc
    for keyword in ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID"):
        if not dicom.text(ds, keyword, 64):
            raise MissingAttributeError(f"{keyword} is missing or empty")
    return ds


def read_header(data: bytes | memoryview) -> tuple[Dataset, str]:
    """``parse_header``, and the file's transfer syntax: everything ingest checks before it acknowledges."""
    ds = parse_header(data)
    transfer_syntax = dicom.text(getattr(ds, "file_meta", Dataset()), "TransferSyntaxUID", 64)
    if not transfer_syntax:
        raise MissingAttributeError("the file meta information has no Transfer Syntax UID")
    return ds, transfer_syntax


def _patient_fields(ds: Dataset) -> dict[str, Any]:
    bsn = _bsn(ds)
    return {
        "patient_name": dicom.text(ds, "PatientName", 324),
        "patient_birth_date": dicom.date(ds, "PatientBirthDate"),
        "patient_sex": dicom.text(ds, "PatientSex", 16),
        "bsn_last3": bsn[-3:] if bsn else "",
        "bsn_hash": bsn_hash(bsn) if bsn else "",
    }


def _fill_blanks(obj: Any, values: dict[str, Any]) -> None:
    """Later instances may complete, never overwrite, what the first one said."""
    changed = [k for k, v in values.items() if v not in ("", None) and getattr(obj, k) in ("", None)]
    for k in changed:
        setattr(obj, k, values[k])
    if changed:
        obj.save(update_fields=changed)


class _IdCache:
    """Ids of patients, studies and series already indexed, so a series of hundreds of images costs one look-up
    per series instead of three per image. Filled only after a commit (a rolled-back row is never cached); a stale
    entry (a row purged meanwhile) fails the insert with an IntegrityError, and the caller clears the cache."""

    LIMIT = 4096

    def __init__(self) -> None:
        self.patients: dict[tuple[int, str, str], int] = {}
        self.studies: dict[tuple[int, str], tuple[int, int]] = {}
        self.series: dict[tuple[int, str], int] = {}

    def clear(self) -> None:
        self.patients.clear()
        self.studies.clear()
        self.series.clear()

    def remember(
        self,
        patient: tuple[tuple[int, str, str], int],
        study: tuple[tuple[int, str], tuple[int, int]],
        series: tuple[tuple[int, str], int],
    ) -> None:
        if len(self.series) > self.LIMIT:
            self.clear()
        self.patients[patient[0]] = patient[1]
        self.studies[study[0]] = study[1]
        self.series[series[0]] = series[1]


_ids = _IdCache()


def forget_cached_ids() -> None:
    """Rows were removed (a study destroyed): this process looks its ids up afresh."""
    _ids.clear()


def _patient_pk(organisation: Organisation, ds: Dataset) -> int:
    key = (organisation.pk, dicom.text(ds, "IssuerOfPatientID", 64), dicom.text(ds, "PatientID", 64))
    if (pk := _ids.patients.get(key)) is not None:
        return pk
    patient, created = Patient.objects.get_or_create(
        organisation=organisation,
        issuer_of_patient_id=key[1],
        patient_id=key[2],
        defaults=_patient_fields(ds),
    )
    if not created:
        _fill_blanks(patient, _patient_fields(ds))
    return patient.pk


def _study_pks(organisation: Organisation, ds: Dataset, patient_pk: int) -> tuple[int, int, bool]:
    """(study pk, pk of the patient the study is filed under, whether the study was created now)."""
    key = (organisation.pk, dicom.text(ds, "StudyInstanceUID", 64))
    if (pks := _ids.studies.get(key)) is not None:
        return (*pks, False)
    study, created = Study.objects.get_or_create(
        organisation=organisation,
        study_instance_uid=key[1],
        defaults={
            "patient_id": patient_pk,
            "study_date": dicom.date(ds, "StudyDate"),
            "study_time": dicom.text(ds, "StudyTime", 16),
            "study_description": dicom.text(ds, "StudyDescription", 200),
            "accession_number": dicom.text(ds, "AccessionNumber", 64),
            "referring_physician_name": dicom.text(ds, "ReferringPhysicianName", 324),
        },
    )
    return study.pk, study.patient_id, created


def _series_pk(study_pk: int, ds: Dataset) -> tuple[int, bool, str]:
    """(series pk, whether it was created now, its modality)."""
    key = (study_pk, dicom.text(ds, "SeriesInstanceUID", 64))
    if (pk := _ids.series.get(key)) is not None:
        return pk, False, ""
    series, created = Series.objects.get_or_create(
        study_id=study_pk,
        series_instance_uid=key[1],
        defaults={
            "modality": dicom.text(ds, "Modality", 16),
            "series_number": dicom.integer(ds, "SeriesNumber"),
            "series_description": dicom.text(ds, "SeriesDescription", 200),
            "body_part_examined": dicom.text(ds, "BodyPartExamined", 64),
        },
    )
    return series.pk, created, series.modality


# The count updates of every new instance, as plain SQL (SQLite and PostgreSQL): built through the ORM they cost more
# CPU than the file's fsync (docs/architecture.md "C-STORE ingest").
_SERIES_COUNTS = (
    "UPDATE studies_series SET number_of_instances = number_of_instances + 1,"
    " number_of_reports = number_of_reports + %s, size = size + %s WHERE id = %s"
)
_STUDY_COUNTS = (
    "UPDATE studies_study SET number_of_instances = number_of_instances + 1,"
    " number_of_reports = number_of_reports + %s, size = size + %s, number_of_series = number_of_series + %s,"
    " last_instance_at = %s WHERE id = %s AND patient_id = %s AND destroy_started_at IS NULL"
)


def _add_to_counts(
    study_pk: int,
    patient_pk: int,
    series_pk: int,
    size: int,
    series_created: bool,
    modality: str,
    sop_class_uid: str,
) -> None:
    """One more instance of ``size`` bytes in its series and study (a report counted apart from the images,
    ``dicom.REPORT_SOP_CLASSES``); a new series also counts in the study's series and modalities. The study must
    still be filed under ``patient_pk``: an admin may have moved it since this process cached its ids
    (docs/architecture.md "Corrections from the PACS"), and not be being destroyed. In the instance's transaction:
    the counts are right whenever it commits, however the association ends."""
    reports = 1 if sop_class_uid in dicom.REPORT_SOP_CLASSES else 0
    # The retention of an unshared study counts from its last instance.
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        # The study first: its row lock (PostgreSQL) orders concurrent associations adding series to one study.
        cursor.execute(_STUDY_COUNTS, [reports, size, int(series_created), now, study_pk, patient_pk])
        if cursor.rowcount == 0:
            if Study.objects.filter(pk=study_pk, destroy_started_at__isnull=True).exists():
                raise _StaleIdsError  # moved to another patient
            raise StudyBeingDestroyedError(BEING_DESTROYED)
        cursor.execute(_SERIES_COUNTS, [reports, size, series_pk])
    if series_created and modality:
        # Under the study's row lock (SQLite: the write transaction), read every series: concurrent associations
        # adding series of other modalities to the same study each see the others' committed rows.
        modalities = (
            Series.objects.filter(study_id=study_pk).exclude(modality="").values_list("modality", flat=True)
        )
        Study.objects.filter(pk=study_pk).update(modalities_in_study="\\".join(sorted(set(modalities)))[:100])


def _index(
    organisation: Organisation,
    ds: Dataset,
    stored: StoredFile,
    transfer_syntax: str,
    source: str,
    node: PacsNode | None,
) -> StoreResult:
    """Index one stored file; call inside a transaction."""
    patient_pk = _patient_pk(organisation, ds)
    study_pk, filed_under, study_created = _study_pks(organisation, ds, patient_pk)
    if filed_under != patient_pk:
        _refuse_other_patient(organisation, ds, study_pk, patient_pk)
    series_pk, series_created, modality = _series_pk(study_pk, ds)
    instance = Instance.objects.create(
        organisation=organisation,
        series_id=series_pk,
        sop_class_uid=dicom.text(ds, "SOPClassUID", 64),
        sop_instance_uid=dicom.text(ds, "SOPInstanceUID", 64),
        instance_number=dicom.integer(ds, "InstanceNumber"),
        transfer_syntax_uid=transfer_syntax,
        number_of_frames=max(dicom.integer(ds, "NumberOfFrames") or 1, 1),
        rows=dicom.integer(ds, "Rows"),
        columns=dicom.integer(ds, "Columns"),
        size=stored.size,
        sha256=stored.sha256,
        crc32=stored.crc32,
        storage_key=stored.key,
        source=source,
        source_node=node,
    )
    # Listeners add their rows in this transaction (imaging: the render, "pending" until a worker makes it).
    signals.instance_stored.send(sender=Instance, instance=instance)
    _add_to_counts(
        study_pk, patient_pk, series_pk, stored.size, series_created, modality, instance.sop_class_uid
    )
    # Usage (per organisation and day), in this transaction: counted once whatever the ingest path.
    received = {Usage.INSTANCES_RECEIVED: 1, Usage.BYTES_RECEIVED: stored.size}
    count_each({**received, Usage.STUDIES_RECEIVED: int(study_created)}, organisation=organisation.pk)
    study_uid = dicom.text(ds, "StudyInstanceUID", 64)
    transaction.on_commit(
        lambda: _ids.remember(
            (
                (organisation.pk, dicom.text(ds, "IssuerOfPatientID", 64), dicom.text(ds, "PatientID", 64)),
                patient_pk,
            ),
            ((organisation.pk, study_uid), (study_pk, patient_pk)),
            ((study_pk, dicom.text(ds, "SeriesInstanceUID", 64)), series_pk),
        )
    )
    return StoreResult(StoreOutcome.STORED, instance.pk, study_uid, patient_pk)


def _refuse_other_patient(organisation: Organisation, ds: Dataset, study_pk: int, patient_pk: int) -> None:
    """One Study Instance UID under two patients is a mix-up upstream, or a correction: filing it would show one
    patient's images to another. Refused, and recorded for an admin (``_index_or_record``); unless the cached id
    is stale because an admin moved the study to this patient meanwhile."""
    now = Study.objects.filter(pk=study_pk).values_list("patient_id", "destroy_started_at").first()
    if now is None:
        raise _StaleIdsError
    filed_under, destroying = now
    if destroying is not None:
        raise StudyBeingDestroyedError(BEING_DESTROYED)
    if filed_under != patient_pk:
        refused = Refused(
            study_pk=study_pk,
            study_uid=dicom.text(ds, "StudyInstanceUID", 64),
            filed_under=filed_under,
            issuer=dicom.text(ds, "IssuerOfPatientID", 64),
            patient_id=dicom.text(ds, "PatientID", 64),
            new_patient=_patient_fields(ds),
        )
        raise PatientConflictError(refused)


def _index_or_record(
    organisation: Organisation,
    ds: Dataset,
    stored: StoredFile,
    file: PendingFile,
    transfer_syntax: str,
    source: str,
    node: PacsNode | None,
) -> StoreResult:
    """``_index`` in its own transaction, which commits only once ``file`` is durable (its put still runs while
    the rows are written). A refusal for another patient rolls that back, then counts on the
    study's conflict in a transaction of its own, so that the count stays (docs/architecture.md "Corrections from
    the PACS")."""
    try:
        with transaction.atomic():
            result = _index(organisation, ds, stored, transfer_syntax, source, node)
            try:
                file.wait()
            except OSError as exc:  # the rows roll back
                raise OutOfResourcesError(WRITE_FAILED) from exc
            return result
    except PatientConflictError as exc:
        sop_uid = dicom.text(ds, "SOPInstanceUID", 64)
        if Instance.objects.filter(organisation=organisation, sop_instance_uid=sop_uid).exists():
            # Sent before, when the study still was this patient's: a duplicate, not a new conflict.
            raise _AlreadyHereError from None
        record_conflict(organisation, exc.refused, node)
        raise


def _duplicate(
    organisation: Organisation, sop_uid: str, sha256: str, node: PacsNode | None
) -> StoreResult | None:
    """The indexed copy of ``sop_uid``, which stays (a refusal while its study is being destroyed), or None."""
    existing = (
        Instance.objects.filter(organisation=organisation, sop_instance_uid=sop_uid)
        .order_by()
        .values_list(
            "pk",
            "sha256",
            "series__study__study_instance_uid",
            "series__study__patient_id",
            "series__study__destroy_started_at",
        )[:1]
    )
    if not existing:
        return None
    instance_pk, stored_sha256, study_uid, patient_pk, destroying = existing[0]
    if destroying is not None:
        raise StudyBeingDestroyedError(BEING_DESTROYED)
    if stored_sha256 != sha256:
        # DICOM requires changed content to get a new UID: keep the first copy, tell the organisation.
        record(
            Action.DICOM_STORE_CONFLICT,
            outcome=Outcome.FAILURE,
            node=node,
            organisation=organisation,
            actor_type=None if node else ActorType.SYSTEM,
            patient=patient_pk,
            study_uids=[study_uid],
            detail={
                "instance": instance_pk,
                "reason": "same SOP Instance UID, different content; first kept",
            },
        )
    return StoreResult(StoreOutcome.DUPLICATE, instance_pk, study_uid, patient_pk)


def store_instance(
    organisation: Organisation,
    data: bytes | memoryview,
    *,
    source: str,
    node: PacsNode | None = None,
) -> StoreResult:
    """Store one DICOM Part 10 file (file meta + data set) durably and index it (docs/security.md R1).

    The file is written (``files.start_put``) while its header is read and its rows are written; they commit once
    it is durable, and only then does this return (docs/architecture.md "C-STORE ingest"). The same SOP Instance
    UID again (per organisation) is acknowledged and not stored twice. Raises an ``IngestError`` subclass (with a
    DICOM status) when the data cannot be stored.
    """
    file = start_put(get_storage(), data)
    try:
        ds, transfer_syntax = read_header(data)
        sop_uid = dicom.text(ds, "SOPInstanceUID", 64)
        sha256 = hashlib.sha256(data).hexdigest()
        crc32 = zlib.crc32(data)  # as a ZIP member records it: the downloads never compute it
    except BaseException:
        file.discard()
        raise
    size = memoryview(data).nbytes
    # No look-up first: the unique constraint on the SOP Instance UID finds a duplicate, for the price of a put.
    for attempt in (1, 2):
        stored = StoredFile(key=file.name, size=size, sha256=sha256, crc32=crc32)
        try:
            return _index_or_record(organisation, ds, stored, file, transfer_syntax, source, node)
        except (IntegrityError, _StaleIdsError, _AlreadyHereError) as exc:
            file.discard()
            # Sent before, or by a concurrent association just now: the first copy stays, ours goes.
            if (dup := _duplicate(organisation, sop_uid, sha256, node)) is not None:
                return dup
            if attempt == 2:  # moved again meanwhile: a race the sender's retry settles
                raise OutOfResourcesError("the study changed meanwhile; send it again") from exc
            # Otherwise a cached id went stale (a row removed, a study moved): forget the cache and index afresh.
            _ids.clear()
            file = start_put(file.storage, data)
        except BaseException:
            file.discard()
            raise
    raise AssertionError("not reached")
