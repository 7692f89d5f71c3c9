"""The corrections page for organisation admins (docs/architecture.md "Corrections from the PACS"), through HTTP:
the open conflicts listed, accept (the study moves, its live shares are revoked, their senders told, all audited),
dismiss (nothing changes), 403 for a plain sender, 404 for another organisation's conflict."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import translation

from radshare.audit.models import AuditEvent
from radshare.delivery import outbox
from radshare.delivery.models import Notification
from radshare.organisations.services import create_sender
from radshare.shares.destruction import destroy_due
from radshare.shares.models import Share
from radshare.studies.errors import ConflictError
from radshare.studies.models import Patient, Study, StudyConflict
from radshare.studies.services import store_instance
from radshare.studies.synthetic import ct_series, encode
from tests.shares.helpers import ANNA, PIET, make_share, make_study

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    with translation.override("en"):
        yield


def _text(response: Any) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def _client(user: Any, **kwargs: Any) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en", **kwargs)
    client.force_login(user)
    return client


@pytest.fixture
def admin(organisation: Any) -> Any:
    return create_sender(organisation, "boss", PASSWORD, admin=True, email="boss@hospital.example")


@pytest.fixture
def author(organisation: Any) -> Any:
    return create_sender(organisation, "alice", PASSWORD, email="alice@hospital.example")


@pytest.fixture
def corrected(organisation: Any, author: Any) -> tuple[Study, Share, StudyConflict]:
    """Anna's study, shared by alice, then sent again by the PACS under Piet's patient ID."""
    study = make_study(organisation, ANNA)
    share = make_share(organisation, [study], created_by=author).share
    (ds,) = ct_series(PIET, count=1, size=8, study_uid=study.study_instance_uid)
    with pytest.raises(ConflictError):
        store_instance(organisation, encode(ds), source="upload")
    return study, share, StudyConflict.objects.get()


@pytest.mark.django_db
def test_the_admin_sees_the_open_conflict_and_the_count_in_the_navigation(
    admin: Any, corrected: tuple[Study, Share, StudyConflict]
) -> None:
    study, _, conflict = corrected
    response = _client(admin).get("/portal/conflicts/")
    assert response.status_code == 200
    text = _text(response)
    assert "Corrections (1)" in text
    assert f'href="/portal/studies/{study.pk}/"' in text
    assert "CT thorax" in text
    assert "S1" in text  # filed under
    assert "Jansen, Anna" in text
    assert "S2" in text  # sent as
    assert "Bakker, Piet" in text
    assert "02-01-1950" in text
    assert "upload or unknown" in text
    assert f'<td data-label="Refused images" class="num">{conflict.refused}</td>' in text
    assert f'href="/portal/conflicts/{conflict.pk}/"' in text
    entry = AuditEvent.objects.get(action="portal.conflicts.list")
    assert entry.actor_label == "boss"
    assert entry.detail == {"conflicts": [conflict.pk]}

    page = _text(_client(admin).get(f"/portal/conflicts/{conflict.pk}/"))
    assert "1 share of this study is revoked at once, and its sender is told" in page
    assert "Move the study to patient S2" in page
    assert "Dismiss: keep the study with patient S1" in page
    assert page.count('name="csrfmiddlewaretoken"') >= 2
    assert AuditEvent.objects.filter(action="portal.conflict.view", detail__conflict=conflict.pk).exists()


@pytest.mark.django_db
def test_accepting_moves_the_study_revokes_its_shares_and_tells_their_senders(
    admin: Any,
    author: Any,
    corrected: tuple[Study, Share, StudyConflict],
    radshare_config: Any,
    tmp_path: Path,
) -> None:
    radshare_config(email_url=f"file://{tmp_path / 'mail'}")
    study, share, conflict = corrected
    old_patient = study.patient
    client = _client(admin)

    assert client.get(f"/portal/conflicts/{conflict.pk}/accept").status_code == 405  # a POST only
    response = client.post(f"/portal/conflicts/{conflict.pk}/accept", follow=True)

    assert response.redirect_chain == [("/portal/conflicts/", 302)]
    text = _text(response)
    assert "The study now belongs to patient S2. 1 share of it was revoked; its sender is told." in text
    assert "There are no open corrections." in text
    assert "Corrections (" not in text
    study.refresh_from_db()
    new_patient = Patient.objects.get(patient_id="S2")
    assert study.patient == new_patient
    assert (new_patient.patient_name, str(new_patient.patient_birth_date)) == ("Bakker^Piet", "1950-01-02")
    assert Patient.objects.filter(pk=old_patient.pk).exists()
    share.refresh_from_db()
    assert share.status == "revoked"
    assert share.revoked_by == admin
    conflict.refresh_from_db()
    assert (conflict.state, conflict.decided_by) == ("accepted", admin)
    # The revoked share was the old patient's: the moved study is not destroyed as "once shared".
    assert destroy_due() == 0
    assert Study.objects.filter(pk=study.pk, destroy_started_at__isnull=True).exists()

    [notice] = Notification.objects.filter(kind="revoked")
    assert (notice.share_id, notice.to_sender) == (share.pk, author)
    assert outbox.deliver(notice.pk) == "sent"
    [eml] = list((tmp_path / "mail").iterdir())
    mail = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert mail["To"] == "alice@hospital.example"
    assert mail["Subject"] == f"Deling {share.pk} is ingetrokken"  # in the installation's language (nl)
    body = mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "is ingetrokken omdat het onderzoek in het PACS is gecorrigeerd" in body
    assert f"/portal/shares/{share.pk}/" in body
    for patient_data in ("Jansen", "Anna", "Bakker", "Piet", "S1", "S2"):
        assert patient_data not in body

    accepted = AuditEvent.objects.get(action="portal.conflict.accept")
    assert accepted.actor_label == "boss"
    assert accepted.patient_ref == new_patient.pk
    assert accepted.study_uids == [study.study_instance_uid]
    assert accepted.detail == {
        "conflict": conflict.pk,
        "study": study.pk,
        "from_patient": old_patient.pk,
        "to_patient": new_patient.pk,
        "patient_created": True,
        "shares_revoked": [share.pk],
    }
    assert AuditEvent.objects.filter(
        action="share.revoke", detail__share=share.pk, actor_label="boss"
    ).exists()

    # Decided: a second accept changes nothing.
    again = client.post(f"/portal/conflicts/{conflict.pk}/accept", follow=True)
    assert "This correction has been decided already: nothing was changed." in _text(again)
    assert AuditEvent.objects.filter(action="portal.conflict.accept").count() == 1


@pytest.mark.django_db
def test_dismissing_leaves_the_study_its_shares_and_patients_alone(
    admin: Any, corrected: tuple[Study, Share, StudyConflict]
) -> None:
    study, share, conflict = corrected
    patients = sorted(Patient.objects.values_list("pk", "patient_id"))
    response = _client(admin).post(f"/portal/conflicts/{conflict.pk}/dismiss", follow=True)
    assert "The correction is dismissed: the study stays with its patient." in _text(response)
    assert Study.objects.get(pk=study.pk).patient_id == study.patient_id
    share.refresh_from_db()
    assert share.status == "preparing"
    assert share.is_live()
    assert sorted(Patient.objects.values_list("pk", "patient_id")) == patients
    assert not Notification.objects.filter(kind="revoked").exists()
    conflict.refresh_from_db()
    assert (conflict.state, conflict.decided_by) == ("dismissed", admin)
    entry = AuditEvent.objects.get(action="portal.conflict.dismiss")
    assert entry.detail == {"conflict": conflict.pk, "study": study.pk, "refused": 1}


@pytest.mark.django_db
def test_a_plain_sender_gets_403_and_no_link(
    author: Any, corrected: tuple[Study, Share, StudyConflict]
) -> None:
    _, _, conflict = corrected
    client = _client(author)
    assert client.get("/portal/conflicts/").status_code == 403
    assert client.get(f"/portal/conflicts/{conflict.pk}/").status_code == 403
    assert client.post(f"/portal/conflicts/{conflict.pk}/accept").status_code == 403
    assert client.post(f"/portal/conflicts/{conflict.pk}/dismiss").status_code == 403
    assert "/portal/conflicts/" not in _text(client.get("/portal/"))
    conflict.refresh_from_db()
    assert conflict.state == "open"


@pytest.mark.django_db
def test_another_organisations_conflict_is_404_and_audited(
    other_organisation: Any, corrected: tuple[Study, Share, StudyConflict]
) -> None:
    study, share, conflict = corrected
    stranger = _client(create_sender(other_organisation, "eve", PASSWORD, admin=True))
    assert stranger.get(f"/portal/conflicts/{conflict.pk}/").status_code == 404
    assert stranger.post(f"/portal/conflicts/{conflict.pk}/accept").status_code == 404
    assert stranger.post(f"/portal/conflicts/{conflict.pk}/dismiss").status_code == 404
    listed = _text(stranger.get("/portal/conflicts/"))
    assert "There are no open corrections." in listed
    assert "Jansen" not in listed
    for action in ("portal.conflict.view", "portal.conflict.accept", "portal.conflict.dismiss"):
        entry = AuditEvent.objects.get(action=action)
        assert (entry.outcome, entry.organisation_id) == ("denied", other_organisation.pk)
        assert entry.detail["requested_id"] == conflict.pk
    conflict.refresh_from_db()
    share.refresh_from_db()
    assert (conflict.state, share.status, Study.objects.get(pk=study.pk).patient_id) == (
        "open",
        "preparing",
        study.patient_id,
    )


@pytest.mark.django_db
def test_the_decisions_need_the_csrf_token(admin: Any, corrected: tuple[Study, Share, StudyConflict]) -> None:
    _, _, conflict = corrected
    client = _client(admin, enforce_csrf_checks=True)
    assert client.post(f"/portal/conflicts/{conflict.pk}/accept").status_code == 403
    assert client.post(f"/portal/conflicts/{conflict.pk}/dismiss").status_code == 403
    conflict.refresh_from_db()
    assert conflict.state == "open"
