"""Sharing studies that are still in the PACS (a real Orthanc): the PACS search page, the deep link of a PACS button,
the API, retrieval during preparation with its progress, a PACS that is down and the retry, and Orthanc pushing a
study into radshare's SCP."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from django.test import Client

from radshare.audit.models import AuditEvent
from radshare.core.storage import get_storage, instance_key
from radshare.imaging import services as imaging
from radshare.organisations.services import create_api_key
from radshare.shares.models import Share
from radshare.shares.tasks import prepare_share
from radshare.studies.models import Instance, Study
from tests.interop.conftest import PATIENT
from tests.interop.orthanc import Orthanc
from tests.interop.test_pacs_client import dataset_bytes, dimse_node, web_node

pytestmark = [pytest.mark.interop, pytest.mark.once]


def _text(response: Any) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def _sender_client(sender: Any) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(sender)
    return client


def _form(**overrides: Any) -> dict[str, Any]:
    data = {"recipient_type": "patient", "delivery": "url", "phone": "0612345678", "language": "en"}
    data.update(overrides)
    return data


def _prepare_until_ready(share: Share) -> None:
    assert prepare_share.call(share.pk) in ("preparing", "ready")
    imaging.render_pending_now(parallel=False)
    assert prepare_share.call(share.pk) == "ready"


def _assert_as_in_orthanc(orthanc: Orthanc, study_uid: str) -> None:
    study = Study.objects.get(study_instance_uid=study_uid)
    instances = list(Instance.objects.filter(series__study=study))
    name = next(n for n, s in orthanc.studies.items() if s.study_uid == study_uid)
    assert sorted(i.sop_instance_uid for i in instances) == sorted(orthanc.studies[name].sop_uids)
    storage = get_storage()
    for instance in instances:
        with storage.open(instance_key(instance.storage_key)) as f:
            ours = dataset_bytes(f.read())
        theirs = dataset_bytes(orthanc.files[instance.sop_instance_uid])
        assert hashlib.sha256(ours).hexdigest() == hashlib.sha256(theirs).hexdigest()


@pytest.mark.django_db
def test_search_the_pacs_then_share_what_it_holds(orthanc: Orthanc, organisation: Any, sender: Any) -> None:
    node = dimse_node(orthanc, organisation, retrieve="get")
    client = _sender_client(sender)
    page = client.get("/portal/pacs/", {"patient_id": PATIENT.patient_id})
    assert page.status_code == 200
    text = _text(page)
    ct_uid = orthanc.studies["ct"].study_uid
    assert f'value="{node.pk}:{ct_uid}"' in text
    assert "already in radshare" not in text
    dialog = client.get("/portal/shares/new", {"pacs": f"{node.pk}:{ct_uid}"})
    assert dialog.status_code == 200
    assert f"in PACS {node.ae_title}" in _text(dialog)
    response = client.post("/portal/shares/new", _form(pacs=f"{node.pk}:{ct_uid}"))
    assert response.status_code == 302, _text(response)
    share = Share.objects.get()
    assert share.status == "retrieving"
    assert share.patient is not None
    assert share.patient.patient_id == PATIENT.patient_id
    _prepare_until_ready(share)
    _assert_as_in_orthanc(orthanc, ct_uid)
    detail = _text(client.get(f"/portal/shares/{share.pk}/"))
    assert "pacs.retrieve" in detail
    assert "already in radshare" in _text(client.get("/portal/pacs/", {"patient_id": PATIENT.patient_id}))
    assert AuditEvent.objects.filter(action="pacs.query", actor_label="alice").exists()


@pytest.mark.django_db
def test_the_pacs_buttons_deep_link_and_the_mixed_patient_rule(
    orthanc: Orthanc, organisation: Any, sender: Any
) -> None:
    dimse_node(orthanc, organisation, retrieve="get")
    client = _sender_client(sender)
    ct_uid, other_uid = orthanc.studies["ct"].study_uid, orthanc.studies["other"].study_uid
    link = client.get("/portal/shares/new", {"patient_id": PATIENT.patient_id, "study_uid": ct_uid})
    assert link.status_code == 200
    assert "in PACS" in _text(link)
    mixed = client.get("/portal/shares/new", {"study_uid": [ct_uid, other_uid]})
    assert mixed.status_code == 422
    assert "more than one patient" in _text(mixed)
    wrong = client.get("/portal/shares/new", {"patient_id": "SOMEONE-ELSE", "study_uid": ct_uid})
    assert wrong.status_code == 422
    # Without login the deep link asks for it first and comes back here.
    anonymous = Client().get("/portal/shares/new", {"study_uid": ct_uid})
    assert anonymous.status_code == 302
    assert "/portal/login/" in anonymous["Location"]
    assert "next=" in anonymous["Location"]


@pytest.mark.django_db
def test_the_api_shares_studies_only_in_the_pacs_by_wado_rs(orthanc: Orthanc, organisation: Any) -> None:
    web_node(orthanc, organisation)
    key = create_api_key(organisation, "PACS button")[1]
    uid = orthanc.studies["ct"].study_uid
    listed = Client().get(
        "/api/v1/studies",
        {"patient_id": PATIENT.patient_id, "source": "pacs"},
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert listed.status_code == 200, listed.content
    [found] = [s for s in listed.json() if s["study_instance_uid"] == uid]
    assert (found["pacs_node"], found["in_radshare"], found["number_of_instances"]) == (
        "ORTHANCWEB",
        False,
        11,
    )
    assert found["patient"]["patient_id"] == PATIENT.patient_id
    response = Client().post(
        "/api/v1/shares",
        {
            "patient_id": PATIENT.patient_id,
            "study_instance_uids": [uid],
            "recipient": {"type": "patient", "phone": "0612345678", "email": "p@example.org"},
        },
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert response.status_code == 201, response.content
    share_id = response.json()["id"]
    assert response.json()["status"] == "retrieving"
    _prepare_until_ready(Share.objects.get(pk=share_id))
    status = Client().get(f"/api/v1/shares/{share_id}", HTTP_AUTHORIZATION=f"Bearer {key}").json()
    assert status["status"] == "ready"
    assert (status["instances_retrieved"], status["instances_expected"]) == (11, 11)
    _assert_as_in_orthanc(orthanc, uid)
    again = (
        Client()
        .get(
            "/api/v1/studies",
            {"patient_id": PATIENT.patient_id, "source": "pacs"},
            HTTP_AUTHORIZATION=f"Bearer {key}",
        )
        .json()
    )
    assert next(s for s in again if s["study_instance_uid"] == uid)["in_radshare"] is True
    unknown = Client().post(
        "/api/v1/shares",
        {
            "patient_id": PATIENT.patient_id,
            "study_instance_uids": ["1.2.3.999"],
            "recipient": {"type": "patient", "phone": "0612345678", "email": "p@example.org"},
        },
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert unknown.status_code == 404


@pytest.mark.django_db
def test_a_pacs_that_is_down_fails_the_share_clearly_and_retry_completes_it(
    orthanc: Orthanc, organisation: Any, sender: Any
) -> None:
    node = dimse_node(orthanc, organisation, retrieve="get")
    client = _sender_client(sender)
    uid = orthanc.studies["ct"].study_uid
    assert client.post("/portal/shares/new", _form(pacs=f"{node.pk}:{uid}")).status_code == 302
    share = Share.objects.get()
    orthanc.stop()
    try:
        assert prepare_share.call(share.pk) == "failed"
    finally:
        orthanc.start()
    share.refresh_from_db()
    assert share.status == "failed"
    assert share.status_reason == "pacs:unreachable"  # the code; the sender reads its text in their language
    page = _text(client.get(f"/portal/shares/{share.pk}/"))
    assert "Preparing this share failed." in page
    assert "The PACS could not be reached." in page
    assert (
        not Instance.objects.filter(series__study__study_instance_uid=uid).exists()
        or share.status == "failed"
    )
    client.post(f"/portal/shares/{share.pk}/retry")
    share.refresh_from_db()
    assert share.status == "retrieving"
    _prepare_until_ready(share)
    _assert_as_in_orthanc(orthanc, uid)


@pytest.mark.django_db(transaction=True)
def test_orthanc_pushing_a_study_into_radshares_scp_is_indexed(
    orthanc_to_scp: Orthanc, organisation: Any, scp: Any
) -> None:
    dimse_node(orthanc_to_scp, organisation)  # admits Orthanc's C-STORE
    uid = orthanc_to_scp.studies["mr-small"].study_uid
    orthanc_id = orthanc_to_scp.rest("POST", "/tools/lookup", data=uid).json()[0]["ID"]
    orthanc_to_scp.rest(
        "POST", "/modalities/radshare/store", json={"Resources": [orthanc_id], "Synchronous": True}
    )
    study = Study.objects.get(organisation=organisation, study_instance_uid=uid)
    assert study.number_of_instances == len(orthanc_to_scp.studies["mr-small"].sop_uids)


@pytest.mark.django_db
def test_test_connection_on_the_pacs_nodes_page(orthanc: Orthanc, organisation: Any) -> None:
    from radshare.organisations.services import create_sender

    dimse = dimse_node(orthanc, organisation, retrieve="get")
    web = web_node(orthanc, organisation)
    client = _sender_client(create_sender(organisation, "carol", "correct horse battery staple", admin=True))
    for node, answer in ((dimse, "C-ECHO ok"), (web, "QIDO-RS ok")):
        page = _text(client.post(f"/portal/pacs-nodes/{node.pk}/test/", follow=True))
        assert f"Connection to {node.ae_title} works: {answer}" in page


@pytest.mark.django_db
def test_orthanc_stopping_mid_retrieve_fails_the_share_and_retry_completes_it(
    orthanc: Orthanc, organisation: Any, sender: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import radshare.pacs.client as pacs_client
    import radshare.shares.retrieve as share_retrieve

    node = dimse_node(orthanc, organisation, retrieve="get")
    client = _sender_client(sender)
    uid = orthanc.studies["ct"].study_uid
    assert client.post("/portal/shares/new", _form(pacs=f"{node.pk}:{uid}")).status_code == 302
    share = Share.objects.get()
    real = pacs_client.retrieve_study
    killed: list[int] = []

    def stops_after_the_first_image(
        node: Any, study_uid: str, *, on_progress: Any = None, timeout: float = 300
    ) -> Any:
        def progress(done: int, expected: int | None) -> None:
            if on_progress is not None:
                on_progress(done, expected)
            if done >= 1 and not killed:
                assert orthanc.process is not None
                orthanc.process.kill()  # the PACS goes down in the middle of the transfer
                killed.append(done)

        return real(node, study_uid, on_progress=progress, timeout=5)

    monkeypatch.setattr(
        share_retrieve, "retrieve_study", stops_after_the_first_image
    )  # where it is looked up
    try:
        assert prepare_share.call(share.pk) == "failed"
    finally:
        orthanc.stop()
        orthanc.start()  # back, with the same storage
    monkeypatch.undo()
    assert killed
    share.refresh_from_db()
    assert share.status == "failed"
    assert share.status_reason
    arrived = Instance.objects.filter(series__study__study_instance_uid=uid).count()
    assert 1 <= arrived < len(orthanc.studies["ct"].sop_uids)  # some came, not all
    assert not share.share_studies.filter(
        study__isnull=False
    ).exists()  # nothing half-prepared reaches anyone
    client.post(f"/portal/shares/{share.pk}/retry")
    _prepare_until_ready(share)
    _assert_as_in_orthanc(orthanc, uid)
