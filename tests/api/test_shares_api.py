"""The PACS button's share calls: POST /api/v1/shares and GET /api/v1/shares/{id}."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.test import Client

from radshare.imaging import services as imaging
from radshare.organisations.services import create_api_key
from radshare.shares import codes
from radshare.shares.models import Share
from radshare.studies.models import Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import FakePatient, cr_image, ct_series, encode

ANNA = FakePatient("A1", "Jansen^Anna", dt.date(1968, 3, 14))
PIET = FakePatient("P1", "Bakker^Piet", dt.date(1950, 1, 2))


def _study(organisation: Any, patient: FakePatient, kind: str = "ct") -> Study:
    datasets = ct_series(patient, count=2, size=32) if kind == "ct" else [cr_image(patient)]
    for ds in datasets:
        result = store_instance(organisation, encode(ds), source="upload")
    return Study.objects.get(organisation=organisation, study_instance_uid=result.study_instance_uid)


def _post(key: str, body: dict[str, Any]) -> Any:
    return Client().post(
        "/api/v1/shares",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


def _body(studies: list[Study], patient_id: str = "A1", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "patient_id": patient_id,
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
    study = _study(organisation, ANNA)
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
def test_letter_delivery_names_a_letter_url_that_answers_404_for_now(organisation: Any, key: str) -> None:
    response = _post(key, _body([_study(organisation, ANNA)], delivery="letter"))
    data = response.json()
    assert data["url"] is None
    assert data["letter_url"].endswith(f"/api/v1/shares/{data['id']}/letter.pdf")
    letter = Client().get(f"/api/v1/shares/{data['id']}/letter.pdf", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert letter.status_code == 404


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
        ({"patient_id": "P1"}, 422, "mixed_patients"),
        ({"study_instance_uids": ["1.2.3.4.5"]}, 404, "not_found"),
        ({"study_instance_uids": []}, 422, "invalid_request"),
    ],
)
def test_refusals_in_the_error_shape(
    organisation: Any, key: str, change: Any, status: int, code: str
) -> None:
    response = _post(key, {**_body([_study(organisation, ANNA)]), **change})
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    assert set(response.json()) == {"code", "message"}
    assert not Share.objects.exists()


@pytest.mark.django_db
def test_studies_of_two_patients_are_refused_with_422(organisation: Any, key: str) -> None:
    both = [_study(organisation, ANNA), _study(organisation, PIET)]
    response = _post(key, _body(both))
    assert (response.status_code, response.json()["code"]) == (422, "mixed_patients")


@pytest.mark.django_db
def test_other_organisations_key_gets_404(organisation: Any, other_organisation: Any, key: str) -> None:
    study = _study(organisation, ANNA)
    share_id = _post(key, _body([study])).json()["id"]
    their_key = create_api_key(other_organisation, "theirs")[1]
    assert _post(their_key, _body([study])).status_code == 404
    response = Client().get(f"/api/v1/shares/{share_id}", HTTP_AUTHORIZATION=f"Bearer {their_key}")
    assert (response.status_code, response.json()["code"]) == (404, "not_found")


@pytest.mark.django_db(transaction=True)
def test_status_and_progress_until_ready(organisation: Any, key: str) -> None:
    studies = [_study(organisation, ANNA), _study(organisation, ANNA, kind="cr")]
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
