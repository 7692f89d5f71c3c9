"""Moving patients' BSN hashes to the current key (docs/security.md A23, A28; ``radshare keys rotate``).

The index keeps only a keyed hash of a patient's BSN; the whole number exists only in the stored DICOM files. To
hash it again with the current key, the BSN is read back from one of the patient's stored instances: the first
whose BSN gives the stored hash under a candidate key. A patient none of whose first few files gives it (files not
readable, or a correction from the PACS that moved a study of another number) keeps its hash, which finds the
patient only while its key is listed as an old key.
"""

from __future__ import annotations

from pydicom import dcmread

from radshare.core import crypto
from radshare.core.crypto import Rotation
from radshare.core.storage import Storage, get_storage, instance_key
from radshare.dicom import DICOM_READ_ERRORS
from radshare.studies.header import bsn as bsn_of
from radshare.studies.models import Instance, Patient
from radshare.studies.services import bsn_hash, bsn_hashes

FILES_PER_PATIENT = 3  # read at most this many of a patient's files
_BSN_TAGS = ["PatientID", "IssuerOfPatientID", "OtherPatientIDsSequence"]
_READ_ERRORS: tuple[type[Exception], ...] = (OSError, *DICOM_READ_ERRORS)  # a file gone or not readable


def _bsn_in(storage: Storage, storage_key: str) -> str:
    try:
        with storage.open(instance_key(storage_key)) as stored:
            return bsn_of(dcmread(stored, stop_before_pixels=True, specific_tags=_BSN_TAGS))
    except _READ_ERRORS:
        return ""


def _stored_bsn(storage: Storage, patient_pk: int, stored: str) -> str | None:
    """The BSN whose hash under a candidate key is ``stored``, read from the patient's files; None if none."""
    files = (
        Instance.objects.filter(series__study__patient_id=patient_pk, broken_at__isnull=True)
        .order_by("pk")
        .values_list("storage_key", flat=True)[:FILES_PER_PATIENT]
    )
    for storage_key in files:
        bsn = _bsn_in(storage, storage_key)
        if bsn and stored in bsn_hashes(bsn):
            return bsn
    return None


def rotate_bsn_hashes(*, apply: bool = True) -> Rotation:
    """Hash every patient's BSN again with the current key; ``apply=False`` only counts. The files are read
    before the table is written, in one short transaction (ingest is not held up meanwhile)."""
    storage = get_storage()
    moves: list[tuple[int, str, dict[str, str]]] = []
    left = 0
    for pk, stored in Patient.objects.exclude(bsn_hash="").values_list("pk", "bsn_hash").iterator():
        bsn = _stored_bsn(storage, pk, stored)
        if bsn is None:
            left += 1
        elif (new := bsn_hash(bsn)) != stored:
            moves.append((pk, stored, {"bsn_hash": new}))
    return crypto.apply_moves(Patient, "bsn_hash", moves, left, apply=apply)
