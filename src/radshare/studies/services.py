"""Ingest (one entry point for the SCP, uploads and demo data) and the study browser's queries."""

from __future__ import annotations

import contextvars
import datetime as dt
import hashlib
import logging
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from django.db import IntegrityError, connection, transaction

from radshare import dicom
from radshare.audit.actions import Action
from radshare.audit.services import ActorType, Outcome, record
from radshare.core import crypto
from radshare.core.storage import get_storage
from radshare.organisations.models import Organisation, PacsNode
from radshare.studies import counts, signals
from radshare.studies.conflicts import Refused, record_conflict
from radshare.studies.counts import Counts
from radshare.studies.errors import (
    BEING_DESTROYED,
    ConflictError,
    OutOfResourcesError,
    StaleIdsError,
    StudyBeingDestroyedError,
)
from radshare.studies.files import PendingFile, settle, settled_once, start_put
from radshare.studies.header import Header, read_header
from radshare.studies.models import Instance, Patient, Series, Study

logger = logging.getLogger(__name__)

PLACEHOLDER_BIRTH_DATES = frozenset({dt.date(1900, 1, 1), dt.date(1800, 1, 1), dt.date(1899, 12, 31)})


class StoreOutcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"


class PatientConflictError(ConflictError):
    """The study is filed under another patient: refused, and recorded for an admin to decide
    (``studies/conflicts.py``, docs/architecture.md "Corrections from the PACS")."""

    def __init__(self, refused: Refused) -> None:
        super().__init__("this study is already filed under another patient")
        self.refused = refused


class _AlreadyHereError(Exception):
    """The SOP Instance UID is indexed already: ``_duplicate`` tells what that means for the received copy."""


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
    instance_pk: int | None  # None while the row waits for the insert of its batch (``inserted_once``)
    study_instance_uid: str
    patient_pk: int


def bsn_hash(bsn: str) -> str:
    """Keyed hash of a BSN for search (docs/security.md A23), under the current HASHING key (``core.crypto``)."""
    return crypto.keyed_hash(f"bsn:{bsn}".encode())


def bsn_hashes(bsn: str) -> list[str]:
    """The hashes a patient with this BSN may be stored under, one per candidate key (docs/security.md A28)."""
    return crypto.keyed_hashes(f"bsn:{bsn}".encode())


def _patient_fields(header: Header) -> dict[str, Any]:
    bsn = header.bsn
    return {
        "patient_name": header.patient_name,
        "patient_birth_date": header.patient_birth_date,
        "patient_sex": header.patient_sex,
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


def _patient_pk(organisation: Organisation, h: Header) -> int:
    key = (organisation.pk, h.issuer, h.patient_id)
    if (pk := _ids.patients.get(key)) is not None:
        return pk
    patient, created = Patient.objects.get_or_create(
        organisation=organisation,
        issuer_of_patient_id=key[1],
        patient_id=key[2],
        defaults=_patient_fields(h),
    )
    if not created:
        _fill_blanks(patient, _patient_fields(h))
    return patient.pk


def _study_pks(organisation: Organisation, h: Header, patient_pk: int) -> tuple[int, int, bool]:
    """(study pk, pk of the patient the study is filed under, whether the study was created now)."""
    key = (organisation.pk, h.study_uid)
    if (pks := _ids.studies.get(key)) is not None:
        return (*pks, False)
    study, created = Study.objects.get_or_create(
        organisation=organisation,
        study_instance_uid=key[1],
        defaults={
            "patient_id": patient_pk,
            "study_date": h.study_date,
            "study_time": h.study_time,
            "study_description": h.study_description,
            "accession_number": h.accession_number,
            "referring_physician_name": h.referring_physician_name,
        },
    )
    return study.pk, study.patient_id, created


def _series_pk(study_pk: int, h: Header) -> tuple[int, bool, str]:
    """(series pk, whether it was created now, its modality)."""
    key = (study_pk, h.series_uid)
    if (pk := _ids.series.get(key)) is not None:
        return pk, False, ""
    series, created = Series.objects.get_or_create(
        study_id=study_pk,
        series_instance_uid=key[1],
        defaults={
            "modality": h.modality,
            "series_number": h.series_number,
            "series_description": h.series_description,
            "body_part_examined": h.body_part_examined,
        },
    )
    return series.pk, created, series.modality


def _index(
    organisation: Organisation,
    h: Header,
    stored: StoredFile,
    source: str,
    node: PacsNode | None,
) -> tuple[StoreResult, Counts]:
    """Index one stored file; call inside a transaction. Returns what it adds to the counts, written already
    unless an enclosing ``counts.added_once`` sums them."""
    patient_pk = _patient_pk(organisation, h)
    study_pk, filed_under, study_created = _study_pks(organisation, h, patient_pk)
    if filed_under != patient_pk:
        _refuse_other_patient(organisation, h, study_pk, patient_pk)
    series_pk, series_created, modality = _series_pk(study_pk, h)
    instance = Instance(
        organisation=organisation,
        series_id=series_pk,
        sop_class_uid=h.sop_class_uid,
        sop_instance_uid=h.sop_instance_uid,
        instance_number=h.instance_number,
        transfer_syntax_uid=h.transfer_syntax,
        number_of_frames=h.number_of_frames,
        rows=h.rows,
        columns=h.columns,
        size=stored.size,
        sha256=stored.sha256,
        crc32=stored.crc32,
        storage_key=stored.key,
        source=source,
        source_node=node,
    )
    if (waiting := _rows.get()) is not None:
        waiting.append(instance)  # inserted with the others of the enclosing inserted_once
    else:
        _insert([instance])
    added = Counts()
    added.add_instance(
        organisation=organisation.pk,
        study=study_pk,
        patient=patient_pk,
        series=series_pk,
        size=stored.size,
        report=instance.sop_class_uid in dicom.REPORT_SOP_CLASSES,
        study_created=study_created,
        series_created=series_created,
        modality=modality,
    )
    if counts.pending() is None:
        added.write()  # else the caller adds them once the instance's rows are in (_index_or_record)
    study_uid = h.study_uid
    transaction.on_commit(
        lambda: _ids.remember(
            (
                (organisation.pk, h.issuer, h.patient_id),
                patient_pk,
            ),
            ((organisation.pk, study_uid), (study_pk, patient_pk)),
            ((study_pk, h.series_uid), series_pk),
        )
    )
    return StoreResult(StoreOutcome.STORED, instance.pk, study_uid, patient_pk), added


def _insert(instances: list[Instance]) -> None:
    """The rows of new instances, and the rows listeners keep beside them (imaging: the render, "pending" until a
    worker makes it), in the caller's transaction: one INSERT per table however many instances."""
    if not instances:
        return
    if connection.features.can_return_rows_from_bulk_insert:
        Instance.objects.bulk_create(instances)
    else:  # SQLite before 3.35 (RHEL 9's 3.34) gives no ids back from a multi-row INSERT; the rows need them
        for instance in instances:
            instance.save(force_insert=True)
    signals.instances_stored.send(sender=Instance, instances=instances)


_rows: contextvars.ContextVar[list[Instance] | None] = contextvars.ContextVar("radshare_rows", default=None)


@contextmanager
def inserted_once() -> Iterator[None]:
    """Inside one transaction (a batch of the journal's indexer): the rows of the instances stored in the block are
    inserted together when it ends, instead of one by one (Django builds each INSERT anew: about 1 ms of CPU per
    instance and its render row, on the core the SCP needs). Until then a stored instance's ``StoreResult`` has
    no ``instance_pk``. The caller must know that none of the block's instances is here already, and that no two
    are the same (the unique SOP Instance UID tells a duplicate only when its row is inserted): a duplicate makes
    the insert fail, and the transaction rolls back."""
    rows: list[Instance] = []
    token = _rows.set(rows)
    try:
        yield
    finally:
        _rows.reset(token)
    _insert(rows)


@contextmanager
def stored_together(*, all_new: bool) -> Iterator[None]:
    """Inside one transaction (a batch of the journal's indexer): what ``store_instance`` does per instance that
    can wait is done once, as the block ends and before it commits. The files are waited for together
    (``files.settled_once``); the rows are inserted together when ``all_new`` (``inserted_once``, whose condition
    the caller vouches for); the counts are summed and written once (``counts.added_once``)."""
    with counts.added_once(), inserted_once() if all_new else nullcontext(), settled_once():
        yield


def _refuse_other_patient(organisation: Organisation, h: Header, study_pk: int, patient_pk: int) -> None:
    """One Study Instance UID under two patients is a mix-up upstream, or a correction: filing it would show one
    patient's images to another. Refused, and recorded for an admin (``_index_or_record``); unless the cached id
    is stale because an admin moved the study to this patient meanwhile."""
    now = Study.objects.filter(pk=study_pk).values_list("patient_id", "destroy_started_at").first()
    if now is None:
        raise StaleIdsError
    filed_under, destroying = now
    if destroying is not None:
        raise StudyBeingDestroyedError(BEING_DESTROYED)
    if filed_under != patient_pk:
        refused = Refused(
            study_pk=study_pk,
            study_uid=h.study_uid,
            filed_under=filed_under,
            issuer=h.issuer,
            patient_id=h.patient_id,
            new_patient=_patient_fields(h),
        )
        raise PatientConflictError(refused)


def _index_or_record(
    organisation: Organisation,
    h: Header,
    stored: StoredFile,
    file: PendingFile,
    source: str,
    node: PacsNode | None,
) -> StoreResult:
    """``_index`` in its own transaction, which commits only once ``file`` is durable (its put still runs while
    the rows are written). A refusal for another patient rolls that back, then counts on the
    study's conflict in a transaction of its own, so that the count stays (docs/architecture.md "Corrections from
    the PACS")."""
    try:
        with transaction.atomic():
            result, added = _index(organisation, h, stored, source, node)
            try:
                settle(file)
            except OSError as exc:  # the rows roll back
                raise OutOfResourcesError(WRITE_FAILED) from exc
        if (summing := counts.pending()) is not None:
            summing.add(added)  # the instance's rows are in: its counts go with the enclosing transaction's
        return result
    except PatientConflictError as exc:
        sop_uid = h.sop_instance_uid
        if Instance.objects.filter(organisation=organisation, sop_instance_uid=sop_uid).exists():
            # Sent before, when the study still was this patient's: a duplicate, not a new conflict.
            raise _AlreadyHereError from None
        record_conflict(organisation, exc.refused, node)
        raise


def indexed_copy(
    organisation: Organisation, sop_uid: str
) -> tuple[int, str, str, int, dt.datetime | None] | None:
    """The indexed instance ``sop_uid`` of ``organisation``: its id, SHA-256, Study Instance UID, patient id and
    when its study's destruction began (None when it did not), or None when there is none."""
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
    return existing[0] if existing else None


def _duplicate(
    organisation: Organisation, sop_uid: str, sha256: str, node: PacsNode | None
) -> StoreResult | None:
    """The indexed copy of ``sop_uid``, which stays (a refusal while its study is being destroyed), or None."""
    existing = indexed_copy(organisation, sop_uid)
    if existing is None:
        return None
    instance_pk, stored_sha256, study_uid, patient_pk, destroying = existing
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
    header: Header | None = None,
    crc32: int | None = None,
    durable_file: Path | None = None,
) -> StoreResult:
    """Store one DICOM Part 10 file (file meta + data set) durably and index it (docs/security.md R1).

    The file is written (``files.start_put``) while its header is read and its rows are written; they commit once
    it is durable, and only then does this return (docs/architecture.md "C-STORE ingest"). The same SOP Instance
    UID again (per organisation) is acknowledged and not stored twice. Raises an ``IngestError`` subclass (with a
    DICOM status) when the data cannot be stored.

    ``header`` and ``crc32``: what the caller has read of ``data`` already (``read_header``, ``zlib.crc32``), so
    that it is not done twice: the journal's indexer files what the SCP read before it acknowledged.
    ``durable_file``: a durable file holding ``data`` (the journal's), which the storage takes as it is where it can.
    """
    file = start_put(get_storage(), data, durable_file)
    try:
        h = header or read_header(data)
        sop_uid = h.sop_instance_uid
        sha256 = hashlib.sha256(data).hexdigest()
        if crc32 is None:
            crc32 = zlib.crc32(data)  # as a ZIP member records it: the downloads never compute it
    except BaseException:
        file.discard()
        raise
    size = memoryview(data).nbytes
    # No look-up first: the unique constraint on the SOP Instance UID finds a duplicate, for the price of a put.
    for attempt in (1, 2):
        stored = StoredFile(key=file.name, size=size, sha256=sha256, crc32=crc32)
        try:
            return _index_or_record(organisation, h, stored, file, source, node)
        except (IntegrityError, StaleIdsError, _AlreadyHereError) as exc:
            file.discard()
            # Sent before, or by a concurrent association just now: the first copy stays, ours goes.
            if (dup := _duplicate(organisation, sop_uid, sha256, node)) is not None:
                return dup
            if attempt == 2:  # moved again meanwhile: a race the sender's retry settles
                raise OutOfResourcesError("the study changed meanwhile; send it again") from exc
            # Otherwise a cached id went stale (a row removed, a study moved): forget the cache and index afresh.
            _ids.clear()
            file = start_put(file.storage, data, durable_file)
        except BaseException:
            file.discard()
            raise
    raise AssertionError("not reached")
