"""Corrections from the PACS (docs/architecture.md "Corrections from the PACS"): a study sent again under another
patient is refused with 0xA900 through the real ingest path, and recorded as one open ``StudyConflict`` per study
and new patient; accepting moves the study (also for an ingest process that cached its ids), dismissing changes
nothing."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from radshare.audit.models import AuditEvent
from radshare.organisations.services import add_pacs_node, create_sender
from radshare.shares.conflicts import accept
from radshare.shares.services import Actor
from radshare.studies import conflicts, services
from radshare.studies.errors import ConflictError
from radshare.studies.models import Instance, Patient, Study, StudyConflict
from radshare.studies.services import StoreOutcome, bsn_hash, store_instance
from radshare.studies.synthetic import FakePatient, ct_series, encode
from tests.conftest import storage_dir

OLD = FakePatient("PAT-A", "Eerste^Anna", dt.date(1960, 1, 2))
NEW = FakePatient("PAT-B", "Tweede^Bert", dt.date(1990, 6, 7), sex="M", bsn="999999990", issuer="HOSP")
THIRD = FakePatient("PAT-C", "Derde^Cor", dt.date(1975, 3, 4))
REFUSED = 0xA900
CALLING = "MODALITY"


def _series(patient: FakePatient, study_uid: str, count: int = 1) -> list[Dataset]:
    return ct_series(patient, count=count, size=8, study_uid=study_uid)


def _store_refused(organisation: Any, ds: Dataset) -> ConflictError:
    with pytest.raises(ConflictError) as refused:
        store_instance(organisation, encode(ds), source="upload")
    assert refused.value.status == REFUSED
    return refused.value


def _study_of(organisation: Any, patient: FakePatient, count: int = 2) -> Study:
    uid = generate_uid()
    for ds in _series(patient, uid, count):
        store_instance(organisation, encode(ds), source="upload")
    return Study.objects.get(study_instance_uid=uid)


@pytest.mark.django_db
def test_a_study_sent_under_another_patient_is_refused_and_recorded_once_per_new_patient(
    organisation: Any,
) -> None:
    study = _study_of(organisation, OLD)
    files_before = sorted(storage_dir().rglob("*.dcm"))

    first, second = _series(NEW, study.study_instance_uid, count=2)
    _store_refused(organisation, first)
    conflict = StudyConflict.objects.get()
    assert (conflict.state, conflict.refused, conflict.study_id) == ("open", 1, study.pk)
    assert (conflict.old_patient_id, conflict.old_issuer_of_patient_id) == ("PAT-A", "")
    assert (conflict.new_patient_id, conflict.new_issuer_of_patient_id) == ("PAT-B", "HOSP")
    assert conflict.source_node is None
    seen = conflict.last_seen_at

    _store_refused(organisation, second)
    conflict.refresh_from_db()
    assert conflict.refused == 2
    assert conflict.last_seen_at >= seen
    assert StudyConflict.objects.count() == 1

    # The new patient as the index would store it: of the BSN only the last 3 digits and the keyed hash.
    assert conflict.new_patient == {
        "patient_name": "Tweede^Bert",
        "patient_birth_date": "1990-06-07",
        "patient_sex": "M",
        "bsn_last3": "990",
        "bsn_hash": bsn_hash("999999990"),
    }
    assert "999999990" not in json.dumps(conflict.new_patient)

    # Nothing of the refused instances is stored; the study and its patient are as they were.
    study.refresh_from_db()
    assert (study.patient.patient_id, study.number_of_instances) == ("PAT-A", 2)
    assert Instance.objects.count() == 2
    assert not Patient.objects.filter(patient_id="PAT-B").exists()
    assert sorted(storage_dir().rglob("*.dcm")) == files_before

    # Audited once per new conflict, not per instance, with no patient data in the detail.
    [entry] = AuditEvent.objects.filter(action="dicom.store.patient_conflict")
    assert entry.outcome == "failure"
    assert entry.patient_ref == study.patient_id
    assert entry.study_uids == [study.study_instance_uid]
    assert entry.detail["conflict"] == conflict.pk
    assert "PAT-B" not in json.dumps(entry.detail)
    assert "Tweede" not in json.dumps(entry.detail)

    # Another new patient for the same study is another conflict.
    _store_refused(organisation, _series(THIRD, study.study_instance_uid)[0])
    assert StudyConflict.objects.filter(state="open").count() == 2
    assert AuditEvent.objects.filter(action="dicom.store.patient_conflict").count() == 2


@pytest.mark.django_db
def test_another_organisation_files_the_same_study_uid_without_conflict(
    organisation: Any, other_organisation: Any
) -> None:
    study = _study_of(organisation, OLD)
    (ds,) = _series(NEW, study.study_instance_uid)
    assert store_instance(other_organisation, encode(ds), source="upload").outcome == StoreOutcome.STORED
    assert not StudyConflict.objects.exists()


@pytest.mark.django_db
def test_dismissing_changes_nothing_and_a_new_refusal_opens_a_new_conflict(organisation: Any) -> None:
    study = _study_of(organisation, OLD)
    admin = create_sender(organisation, "boss", "correct horse battery staple", admin=True)
    _store_refused(organisation, _series(NEW, study.study_instance_uid)[0])
    conflict = StudyConflict.objects.get()

    conflicts.dismiss(organisation, conflict.pk, admin)
    conflict.refresh_from_db()
    assert (conflict.state, conflict.decided_by) == ("dismissed", admin)
    assert conflict.decided_at is not None
    with pytest.raises(conflicts.ConflictClosedError):
        conflicts.dismiss(organisation, conflict.pk, admin)
    with pytest.raises(conflicts.ConflictClosedError):
        conflicts.move_study(organisation, conflict.pk, admin)
    study.refresh_from_db()
    assert study.patient.patient_id == "PAT-A"

    _store_refused(organisation, _series(NEW, study.study_instance_uid)[0])
    assert StudyConflict.objects.filter(state="open", refused=1).count() == 1
    assert StudyConflict.objects.filter(state="dismissed").count() == 1


@pytest.mark.django_db
def test_moving_to_a_patient_the_index_has_uses_that_patient_and_keeps_the_old_one(organisation: Any) -> None:
    study = _study_of(organisation, OLD)
    _study_of(organisation, NEW)  # the new patient has a study of their own already
    existing = Patient.objects.get(patient_id="PAT-B")
    _store_refused(organisation, _series(NEW, study.study_instance_uid)[0])
    _store_refused(organisation, _series(THIRD, study.study_instance_uid)[0])
    to_new = StudyConflict.objects.get(new_patient_id="PAT-B")

    move = conflicts.move_study(organisation, to_new.pk, None)

    assert (move.to_patient, move.patient_created) == (existing, False)
    study.refresh_from_db()
    assert study.patient == existing
    assert Patient.objects.filter(patient_id="PAT-A").exists()  # left alone, now without studies
    assert Patient.objects.count() == 2
    # The other open conflict of the study now names the patient it is filed under.
    other = StudyConflict.objects.get(new_patient_id="PAT-C")
    assert (other.state, other.old_patient_id) == ("open", "PAT-B")


@pytest.mark.django_db
def test_another_organisations_conflict_cannot_be_decided(organisation: Any, other_organisation: Any) -> None:
    study = _study_of(organisation, OLD)
    _store_refused(organisation, _series(NEW, study.study_instance_uid)[0])
    conflict = StudyConflict.objects.get()
    with pytest.raises(conflicts.ConflictClosedError):
        conflicts.move_study(other_organisation, conflict.pk, None)
    with pytest.raises(conflicts.ConflictClosedError):
        conflicts.dismiss(other_organisation, conflict.pk, None)
    conflict.refresh_from_db()
    assert conflict.state == "open"


@pytest.mark.django_db(transaction=True)
def test_after_a_move_ingest_files_the_new_patients_images_and_refuses_the_old_ones(
    organisation: Any,
) -> None:
    """The ingest process cached the study's ids under the old patient (filled on commit, hence a transactional
    test); the move happens elsewhere. Its next instances must follow the database, not the cache."""
    study = _study_of(organisation, OLD)
    assert services._ids.studies  # the cache holds the study under the old patient
    _store_refused(organisation, _series(NEW, study.study_instance_uid)[0])
    conflict = StudyConflict.objects.get()

    accept(organisation, conflict.pk, Actor())

    # The cache still says "old patient": the old patient's images of the study are refused all the same, and
    # counted as a correction back.
    _store_refused(organisation, _series(OLD, study.study_instance_uid)[0])
    back = StudyConflict.objects.get(state="open")
    assert (back.old_patient_id, back.new_patient_id, back.refused) == ("PAT-B", "PAT-A", 1)

    new_images = _series(NEW, study.study_instance_uid, count=2)
    results = [store_instance(organisation, encode(ds), source="upload") for ds in new_images]
    assert [r.outcome for r in results] == [StoreOutcome.STORED, StoreOutcome.STORED]
    study.refresh_from_db()
    assert study.patient.patient_id == "PAT-B"
    assert study.number_of_instances == Instance.objects.filter(series__study=study).count() == 4
    assert {r.patient_pk for r in results} == {study.patient_id}


@pytest.mark.django_db(transaction=True)
def test_the_scp_answers_0xa900_and_counts_the_refusals_on_one_conflict(scp: Any, organisation: Any) -> None:
    node = add_pacs_node(organisation, CALLING)
    study_uid = generate_uid()
    own = _series(OLD, study_uid, count=2)
    foreign = _series(NEW, study_uid, count=2)
    ae = AE(ae_title=CALLING)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", scp.address[1], ae_title=scp.ae_title)
    assert assoc.is_established
    try:
        statuses = [int(assoc.send_c_store(ds).Status) for ds in (*own, foreign[0])]
        assert statuses == [0x0000, 0x0000, REFUSED]
        conflict = StudyConflict.objects.get()
        assert (conflict.state, conflict.refused, conflict.source_node_id) == ("open", 1, node.pk)

        assert int(assoc.send_c_store(foreign[1]).Status) == REFUSED
        conflict.refresh_from_db()
        assert conflict.refused == 2
    finally:
        assoc.release()
        for thread in list(scp.server.active_associations):
            thread.join(timeout=30)
    assert StudyConflict.objects.count() == 1
    assert Study.objects.get().number_of_instances == 2
    [entry] = AuditEvent.objects.filter(action="dicom.store.patient_conflict")
    assert (entry.actor_type, entry.actor_label) == ("dicom_node", CALLING)
    store = AuditEvent.objects.get(action="dicom.store")
    assert (store.detail["stored"], store.detail["refused"]) == (2, 2)
