"""The REST API: bearer-key authentication (A11), organisation scoping (A10), the error shape, the studies
endpoint, the OpenAPI schema and the docs page (local assets only, under our CSP), and zoning."""

from __future__ import annotations

import datetime as dt
import re
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.db import OperationalError
from django.test import Client
from django.utils import timezone

from radshare.api import throttle
from radshare.audit.models import AuditEvent
from radshare.organisations.models import ApiKey, Organisation
from radshare.organisations.services import create_api_key, create_sender, revoke_api_key
from radshare.studies.models import Study
from radshare.studies.synthetic import FakePatient
from tests.studies.factories import make_study

ANNA = FakePatient("P100", "Jansen^Anna", dt.date(1968, 3, 14), sex="F")
PIET = FakePatient("P200", "Jansen^Piet", dt.date(1970, 5, 1), sex="M")
URL = "/api/v1/studies"
UNAUTHORIZED = {
    "code": "unauthorized",
    "message": "A valid API key is required: Authorization: Bearer <key>.",
}


def bearer(key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


@pytest.fixture
def key_a(organisation: Organisation) -> str:
    return create_api_key(organisation, "PACS A")[1]


@pytest.fixture
def key_b(other_organisation: Organisation) -> str:
    return create_api_key(other_organisation, "PACS B")[1]


@pytest.fixture
def anna_studies(organisation: Organisation) -> list[Study]:
    return [
        make_study(
            organisation,
            ANNA,
            modalities=("CT", "SR"),
            study_date=dt.date(2024, 1, 10),
            accession="ACC-1",
            description="CT thorax",
            images=2,
        ),
        make_study(organisation, ANNA, modalities=("CR",), study_date=dt.date(2024, 3, 5), accession="ACC-2"),
        make_study(organisation, PIET, modalities=("MR",), study_date=dt.date(2024, 4, 1)),
    ]


# --- authentication ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_missing_wrong_malformed_and_revoked_keys_get_the_same_401(
    organisation: Organisation, key_a: str
) -> None:
    client = Client()
    key = ApiKey.objects.get(organisation=organisation)
    revoked_plain = create_api_key(organisation, "old PACS")[1]
    revoked = ApiKey.objects.get(name="old PACS")
    revoke_api_key(organisation, revoked.pk, None)
    wrong_secret = key_a[:-4] + ("AAAA" if not key_a.endswith("AAAA") else "BBBB")
    attempts: list[dict[str, str]] = [
        {},
        bearer("nonsense"),
        bearer(wrong_secret),
        bearer(revoked_plain),
        {"HTTP_AUTHORIZATION": f"Basic {key_a}"},
        {"HTTP_AUTHORIZATION": "Bearer "},
        bearer("rs_" + "x" * 5000),
    ]
    bodies = set()
    for headers in attempts:
        response = client.get(URL, {"patient_id": "P100"}, **headers)  # type: ignore[arg-type]
        assert response.status_code == 401, headers
        assert response.json() == UNAUTHORIZED
        assert response["WWW-Authenticate"].startswith("Bearer")
        bodies.add(response.content)
    assert len(bodies) == 1
    # One entry for the address's minute, with its count, once that minute is over (api/throttle.py).
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        assert throttle.report_closed_minutes() == 1
    [event] = AuditEvent.objects.filter(action="api.auth.failed")
    assert event.outcome == AuditEvent.Outcome.DENIED
    assert event.actor_type == AuditEvent.ActorType.ANONYMOUS
    assert event.client_address == "127.0.0.1"
    assert event.detail["failures"] == len(attempts)
    row = repr(event.__dict__)
    # No key material in the audit trail: neither the secrets nor even the prefixes.
    for plain in (key_a, revoked_plain, wrong_secret):
        assert plain not in row
        assert plain[:11] not in row
    key.refresh_from_db()
    assert key.last_used_at is None  # a wrong secret with this key's prefix did not count as a use
    # the right key works
    assert client.get(URL, {"patient_id": "P100"}, **bearer(key_a)).status_code == 200  # type: ignore[arg-type]


@pytest.mark.django_db
def test_a_session_login_is_no_api_credential(organisation: Organisation) -> None:
    sender = create_sender(organisation, "alice", "correct horse battery staple", admin=True)
    client = Client()
    client.force_login(sender)
    response = client.get(URL, {"patient_id": "P100"})
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


@pytest.mark.django_db
def test_a_key_works_without_csrf_token_and_updates_last_used(organisation: Organisation, key_a: str) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.get(URL, {"patient_id": "P100"}, **bearer(key_a))  # type: ignore[arg-type]
    assert response.status_code == 200
    assert ApiKey.objects.get(organisation=organisation).last_used_at is not None
    assert response["Cache-Control"] == "no-store"


# --- the studies endpoint ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_lists_the_patients_studies_with_their_fields(
    organisation: Organisation, key_a: str, anna_studies: list[Study]
) -> None:
    response = Client().get(URL, {"patient_id": "P100"}, **bearer(key_a))  # type: ignore[arg-type]
    assert response.status_code == 200
    body = response.json()
    ct, cr = anna_studies[0], anna_studies[1]
    assert [s["study_instance_uid"] for s in body] == [
        cr.study_instance_uid,
        ct.study_instance_uid,
    ]  # newest first
    first = body[1]
    assert first == {
        "study_instance_uid": ct.study_instance_uid,
        "study_date": "2024-01-10",
        "description": "CT thorax",
        "accession_number": "ACC-1",
        "modalities": ["CT", "SR"],
        "number_of_series": 2,
        "number_of_instances": 4,
        "size": ct.size,
        "patient": {"patient_id": "P100", "issuer": "", "name": "Jansen^Anna", "birth_date": "1968-03-14"},
        "pacs_node": None,
        "in_radshare": True,
    }
    assert ct.size > 0
    event = AuditEvent.objects.get(action="api.studies.list")
    key = ApiKey.objects.get(organisation=organisation)
    assert event.actor_type == AuditEvent.ActorType.API_KEY
    assert event.actor_id == key.pk
    assert event.actor_label == f"API key {key.prefix}"
    assert event.organisation_id == organisation.pk
    assert event.patient_ref == ct.patient_id
    assert sorted(event.study_uids) == sorted([ct.study_instance_uid, cr.study_instance_uid])
    assert event.detail["count"] == 2
    assert key_a not in repr(event.__dict__)


@pytest.mark.django_db
def test_issuer_narrows_and_unknown_patient_is_an_empty_list(key_a: str, anna_studies: list[Study]) -> None:
    client = Client()
    assert client.get(URL, {"patient_id": "P100", "issuer": "OTHER"}, **bearer(key_a)).json() == []  # type: ignore[arg-type]
    assert client.get(URL, {"patient_id": "NOBODY"}, **bearer(key_a)).json() == []  # type: ignore[arg-type]
    assert len(client.get(URL, {"patient_id": " p100 "}, **bearer(key_a)).json()) == 2  # type: ignore[arg-type]


@pytest.mark.django_db
def test_organisation_b_key_sees_none_of_organisation_a(
    other_organisation: Organisation, key_b: str, anna_studies: list[Study]
) -> None:
    """Design: another organisation's patient has no studies for this key, so the answer is an empty list (the
    same as for an unknown patient id): nothing tells B that A holds this patient."""
    make_study(
        other_organisation,
        FakePatient("P999", "Bakker^Bert", dt.date(1955, 7, 7)),
        study_date=dt.date(2024, 1, 1),
    )
    client = Client()
    for patient_id in ("P100", "P200"):
        response = client.get(URL, {"patient_id": patient_id}, **bearer(key_b))  # type: ignore[arg-type]
        assert response.status_code == 200
        assert response.json() == []
    assert len(client.get(URL, {"patient_id": "P999"}, **bearer(key_b)).json()) == 1  # type: ignore[arg-type]
    event = AuditEvent.objects.filter(action="api.studies.list").first()
    assert event is not None
    assert event.organisation_id == other_organisation.pk


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"patient_id": ""},
        {"patient_id": "   "},
        {"patient_id": "x" * 65},
        {"patient_id": "P100", "issuer": ""},
    ],
)
def test_missing_or_bad_patient_id_is_422_in_the_error_shape(
    key_a: str, anna_studies: list[Study], params: dict[str, str]
) -> None:
    response = Client().get(URL, params, **bearer(key_a))  # type: ignore[arg-type]
    assert response.status_code == 422
    body = response.json()
    assert set(body) == {"code", "message"}
    assert body["code"] == "invalid_request"
    assert "patient_id" in body["message"] or "issuer" in body["message"]
    assert "x" * 65 not in body["message"]  # the input is not echoed
    assert not AuditEvent.objects.filter(action="api.studies.list").exists()


@pytest.mark.django_db
def test_other_methods_and_paths_are_not_500(key_a: str) -> None:
    client = Client()
    assert client.post(URL, {"patient_id": "P100"}, **bearer(key_a)).status_code == 405  # type: ignore[arg-type]
    for path in ("/api/v1/nothing-here", "/api/v2/studies", "/api/v1/studies/"):
        response = client.get(path, **bearer(key_a))  # type: ignore[arg-type]
        assert response.status_code == 404
        assert response.json() == {"code": "not_found", "message": "No such API endpoint."}


# --- schema, docs, zoning ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_openapi_declares_the_endpoint_the_bearer_scheme_and_the_errors() -> None:
    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["info"]["title"] == "radshare"
    operation = schema["paths"]["/api/v1/studies"]["get"]
    assert set(operation["responses"]) >= {"200", "401", "422"}
    for status in ("401", "422"):
        ref = operation["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        error = schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]
        assert set(error["required"]) == {"code", "message"}
    params = {p["name"]: p for p in operation["parameters"]}
    assert params["patient_id"]["required"] is True
    assert params["issuer"].get("required", False) is False
    schemes = schema["components"]["securitySchemes"]
    assert list(schemes.values()) == [{"type": "http", "scheme": "bearer"}]
    assert operation["security"] == [{name: []} for name in schemes]


@pytest.mark.django_db
def test_docs_page_uses_only_local_assets_and_no_inline_script() -> None:
    client = Client()
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    html = response.content.decode()
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "cdn" not in html.lower()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets
    for asset in assets:
        assert asset.startswith("/static/"), asset
        assert client.get(asset).status_code == 200, asset
    # Every <script> either loads a local file or is inert JSON data (not executed, so CSP allows it).
    for attributes in re.findall(r"<script([^>]*)>", html):
        assert 'src="/static/' in attributes or 'type="application/json"' in attributes, attributes


@pytest.mark.django_db
def test_public_web_process_serves_no_api(radshare_config: Any, key_a: str) -> None:
    radshare_config(role="public")
    client = Client()
    assert client.get(URL, {"patient_id": "P100"}, **bearer(key_a)).status_code == 404  # type: ignore[arg-type]
    assert client.get("/api/v1/openapi.json").status_code == 404
    assert client.get("/api/v1/docs").status_code == 404
    radshare_config(role="internal")
    assert client.get("/api/v1/openapi.json").status_code == 200


@pytest.mark.parametrize(
    ("raised", "status", "code"),
    [
        (RuntimeError("boom at /srv/secret/path"), 500, "server_error"),
        # The database away or every pooled connection busy: try again, not a crash (R7).
        (OperationalError("pool timeout"), 503, "unavailable"),
    ],
)
def test_an_unexpected_error_answers_json_without_internals(
    key_a: str, monkeypatch: pytest.MonkeyPatch, raised: Exception, status: int, code: str
) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise raised

    monkeypatch.setattr("radshare.api.views.search_studies", fail)
    client = Client(raise_request_exception=False)
    response = client.get(URL, {"patient_id": "P100"}, **bearer(key_a))
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code
    assert "boom" not in body["message"]
    assert "secret" not in response.content.decode()
    assert ("Retry-After" in response) == (status == 503)
