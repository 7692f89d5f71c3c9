"""The PACS button's share calls: POST /api/v1/shares and GET /api/v1/shares/{id}."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from radshare.imaging import services as imaging
from radshare.organisations.services import create_api_key
from radshare.shares import codes
from radshare.shares.models import Share
from radshare.studies.models import Study
from tests.shares.helpers import ANNA, PIET, make_study


def _post(key: str, body: dict[str, Any]) -> Any:
    return Client().post(
        "/api/v1/shares",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


def _body(studies: list[Study], patient_id: str = "", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "patient_id": patient_id or studies[0].patient.patient_id,
        "study_instance_uids": [s.study_instance_uid for s in studies],
        "recipient": {"type": "patient", "phone": "0612345678", "email": "anna@example.org"},
    }
    body.update(overrides)
    return body


@pytest.fixture
def key(organisation: Any) -> str:
    return create_api_key(organisation, "PACS button")[1]


@pytest.mark.django_db
def test_create_with_link_delivery_returns_the_link(organisation: Any, key: str) -> None:
    study = make_study(organisation, ANNA)
    response = _post(key, _body([study], delivery="url", language="en"))
    assert response.status_code == 201, response.content
    data = response.json()
    share = Share.objects.get(pk=data["id"])
    assert data["status"] == "preparing"
    code = codes.normalize_code(data["url"].split("?code=")[1])
    assert code is not None
    assert codes.code_hash(code) == share.code_hash
    assert share.api_key is not None
    assert data["letter_url"] is None


@pytest.mark.django_db
def test_letter_delivery_names_the_letter_url_which_serves_the_pdf(organisation: Any, key: str) -> None:
    response = _post(key, _body([make_study(organisation, ANNA)], delivery="letter"))
    data = response.json()
    assert data["url"] is None
    assert data["letter_url"].endswith(f"/api/v1/shares/{data['id']}/letter")
    letter = Client().get(f"/api/v1/shares/{data['id']}/letter", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert letter.status_code == 200
    assert letter["Content-Type"] == "application/pdf"
    assert letter.content.startswith(b"%PDF")
    assert letter["Content-Disposition"] == f'attachment; filename="radshare-letter-{data["id"]}.pdf"'
    assert letter["Cache-Control"] == "no-store"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        (
            {"recipient": {"type": "care_provider", "phone": "0612345678", "email": "gp@example.org"}},
            422,
            "consent_required",
        ),
        (
            {"recipient": {"type": "patient", "phone": "12345", "email": "a@example.org"}},
            422,
            "phone_invalid",
        ),
        ({"recipient": {"type": "patient", "phone": "0612345678", "email": ""}}, 422, "email_invalid"),
        ({"patient_id": "S2"}, 422, "mixed_patients"),
        ({"study_instance_uids": ["1.2.3.4.5"]}, 404, "not_found"),
        ({"study_instance_uids": []}, 422, "invalid_request"),
    ],
)
def test_refusals_in_the_error_shape(
    organisation: Any, key: str, change: Any, status: int, code: str
) -> None:
    response = _post(key, {**_body([make_study(organisation, ANNA)]), **change})
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    assert set(response.json()) == {"code", "message"}
    assert not Share.objects.exists()


@pytest.mark.django_db
def test_studies_of_two_patients_are_refused_with_422(organisation: Any, key: str) -> None:
    both = [make_study(organisation, ANNA), make_study(organisation, PIET)]
    response = _post(key, _body(both))
    assert (response.status_code, response.json()["code"]) == (422, "mixed_patients")


@pytest.mark.django_db
def test_other_organisations_key_gets_404(organisation: Any, other_organisation: Any, key: str) -> None:
    study = make_study(organisation, ANNA)
    share_id = _post(key, _body([study])).json()["id"]
    their_key = create_api_key(other_organisation, "theirs")[1]
    assert _post(their_key, _body([study])).status_code == 404
    response = Client().get(f"/api/v1/shares/{share_id}", HTTP_AUTHORIZATION=f"Bearer {their_key}")
    assert (response.status_code, response.json()["code"]) == (404, "not_found")


@pytest.mark.django_db(transaction=True)
def test_status_and_progress_until_ready(organisation: Any, key: str) -> None:
    studies = [make_study(organisation, ANNA), make_study(organisation, ANNA, kind="cr")]
    share_id = _post(key, _body(studies)).json()["id"]
    get = Client().get(f"/api/v1/shares/{share_id}", HTTP_AUTHORIZATION=f"Bearer {key}").json()
    assert (get["status"], get["instances"], get["instances_prepared"]) == ("preparing", 3, 0)
    assert sorted(get["study_instance_uids"]) == sorted(s.study_instance_uid for s in studies)
    imaging.render_pending_now(parallel=False)
    from radshare.shares.tasks import prepare_share

    assert prepare_share.call(share_id) == "ready"
    get = Client().get(f"/api/v1/shares/{share_id}", HTTP_AUTHORIZATION=f"Bearer {key}").json()
    assert (get["status"], get["instances_prepared"]) == ("ready", 3)
    assert get["ready_at"] is not None


@pytest.mark.django_db
def test_openapi_declares_the_share_calls() -> None:
    schema = Client().get("/api/v1/openapi.json").json()
    post = schema["paths"]["/api/v1/shares"]["post"]
    assert {"201", "401", "404", "422"} <= set(post["responses"])
    assert "/api/v1/shares/{share_id}" in schema["paths"]
    for path, method, codes_ in [
        ("/api/v1/shares/{share_id}/revoke", "post", {"200", "401", "404", "409"}),
        ("/api/v1/shares/{share_id}/resend", "post", {"202", "401", "404", "409", "422"}),
        ("/api/v1/shares/{share_id}/letter", "get", {"200", "401", "404", "409"}),
    ]:
        assert codes_ <= set(schema["paths"][path][method]["responses"]), path


def _call(key: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    return getattr(Client(), method)(
        path,
        json.dumps(body) if body is not None else None,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


@pytest.mark.django_db
def test_revoke_ends_the_share_and_a_second_revoke_is_a_conflict(organisation: Any, key: str) -> None:
    share_id = _post(key, _body([make_study(organisation, ANNA)])).json()["id"]
    response = _call(key, "post", f"/api/v1/shares/{share_id}/revoke")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "revoked"
    share = Share.objects.get(pk=share_id)
    assert (share.code_hash, share.code_encrypted, share.email, share.phone) == (None, "", "", "")
    again = _call(key, "post", f"/api/v1/shares/{share_id}/revoke")
    assert (again.status_code, again.json()["code"]) == (409, "share_ended")
    letter = _call(key, "get", f"/api/v1/shares/{share_id}/letter")
    assert (letter.status_code, letter.json()["code"]) == (409, "share_ended")


@pytest.mark.django_db
def test_resend_waits_for_ready_and_needs_email_delivery(organisation: Any, key: str) -> None:
    from radshare.delivery.models import Notification

    share_id = _post(key, _body([make_study(organisation, ANNA)])).json()["id"]
    early = _call(key, "post", f"/api/v1/shares/{share_id}/resend")
    assert (early.status_code, early.json()["code"]) == (409, "not_ready")
    Share.objects.filter(pk=share_id).update(status="notified")
    bad = _call(key, "post", f"/api/v1/shares/{share_id}/resend", {"email": "nope"})
    assert (bad.status_code, bad.json()["code"]) == (422, "email_invalid")
    ok = _call(key, "post", f"/api/v1/shares/{share_id}/resend", {"email": "anna.j@example.org"})
    assert ok.status_code == 202, ok.content
    assert ok.json()["notification"]["state"] == "pending"
    assert Share.objects.get(pk=share_id).email == "anna.j@example.org"
    assert Notification.objects.filter(share_id=share_id, kind="share_link").count() == 1
    link_id = _post(key, _body([make_study(organisation, ANNA)], delivery="url")).json()["id"]
    Share.objects.filter(pk=link_id).update(status="ready")
    other = _call(key, "post", f"/api/v1/shares/{link_id}/resend")
    assert (other.status_code, other.json()["code"]) == (409, "not_email")


@pytest.mark.django_db
def test_organisation_b_gets_404_on_read_revoke_resend_and_letter(
    organisation: Any, other_organisation: Any, key: str
) -> None:
    share_id = _post(key, _body([make_study(organisation, ANNA)])).json()["id"]
    theirs = create_api_key(other_organisation, "theirs")[1]
    for method, path in [
        ("get", ""),
        ("post", "/revoke"),
        ("post", "/resend"),
        ("get", "/letter"),
    ]:
        response = _call(theirs, method, f"/api/v1/shares/{share_id}{path}")
        assert (response.status_code, response.json()["code"]) == (404, "not_found"), path
    assert Share.objects.get(pk=share_id).status == "preparing"


@pytest.mark.django_db
def test_a_revoked_key_gets_401_on_every_share_call(organisation: Any) -> None:
    from radshare.organisations.services import revoke_api_key

    api_key, secret = create_api_key(organisation, "soon revoked")
    share_id = _post(secret, _body([make_study(organisation, ANNA)])).json()["id"]
    revoke_api_key(organisation, api_key.pk, None)
    for method, path in [("get", ""), ("post", "/revoke"), ("post", "/resend"), ("get", "/letter")]:
        response = _call(secret, method, f"/api/v1/shares/{share_id}{path}")
        assert (response.status_code, response.json()["code"]) == (401, "unauthorized"), path
    assert _post(secret, _body([make_study(organisation, ANNA)])).status_code == 401


@pytest.mark.django_db
def test_a_wrong_method_is_a_405_in_the_error_shape(key: str) -> None:
    for method, path in [
        ("put", "/api/v1/shares/1"),
        ("delete", "/api/v1/shares"),
        ("get", "/api/v1/shares/1/revoke"),
    ]:
        response = _call(key, method, path)
        assert response.status_code == 405, path
        assert response["Content-Type"] == "application/json"
        assert response.json()["code"] == "method_not_allowed"
        assert response["Allow"]
