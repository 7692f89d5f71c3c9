"""The storage SCP with a pynetdicom client on loopback: admission, storage, refusal of bad data."""

from __future__ import annotations

from io import BytesIO
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from radshare.core.storage import get_storage, instance_key
from radshare.dicom import IMPLEMENTATION_UID
from radshare.organisations.services import add_pacs_node
from radshare.studies.models import Instance, Study
from radshare.studies.synthetic import FakePatient, ct_series

PATIENT = FakePatient("P1", "Test^Pat", __import__("datetime").date(1980, 5, 17), bsn="999999990")


def _associate(scp: Any, calling: str = "MODALITY") -> Any:
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage)
    return ae.associate("127.0.0.1", scp.address[1], ae_title=scp.ae_title)


@pytest.mark.django_db(transaction=True)
def test_registered_node_stores_and_study_is_indexed(scp: Any, organisation: Any) -> None:
    add_pacs_node(organisation, "MODALITY")
    assoc = _associate(scp)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0
    datasets = ct_series(PATIENT, count=3, size=32)
    statuses = [assoc.send_c_store(ds).Status for ds in datasets]
    (syntax,) = [c.transfer_syntax[0] for c in assoc.accepted_contexts if c.abstract_syntax == CTImageStorage]
    assoc.release()
    assert statuses == [0, 0, 0]
    study = Study.objects.get(organisation=organisation)
    assert study.number_of_instances == 3
    assert study.patient.bsn_last3 == "990"
    assert Instance.objects.filter(organisation=organisation).count() == 3
    # Each file is a Part 10 file: our file meta, then the data set as sent.
    for ds in datasets:
        instance = Instance.objects.get(organisation=organisation, sop_instance_uid=ds.SOPInstanceUID)
        with get_storage().open(instance_key(instance.storage_key)) as stored:
            kept = dcmread(BytesIO(stored.read()))
        assert kept.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert kept.file_meta.MediaStorageSOPClassUID == CTImageStorage
        assert kept.file_meta.TransferSyntaxUID == syntax  # as negotiated
        assert kept.file_meta.ImplementationClassUID == IMPLEMENTATION_UID
        assert kept.PatientID == "P1"
        assert kept.pixel_array.shape == (32, 32)


@pytest.mark.django_db(transaction=True)
def test_unknown_calling_ae_is_rejected(scp: Any, organisation: Any) -> None:
    assoc = _associate(scp, "STRANGER")
    assert assoc.is_rejected


@pytest.mark.django_db(transaction=True)
def test_dataset_without_uids_fails(scp: Any, organisation: Any) -> None:
    add_pacs_node(organisation, "MODALITY")
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.3.4"
    ds.PatientID = "X"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    assoc = _associate(scp)
    status = assoc.send_c_store(ds).Status
    assoc.release()
    assert status == 0xA900
    assert not Instance.objects.exists()
