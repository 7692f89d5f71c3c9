"""The REST API against its own OpenAPI schema (/api/v1/openapi.json), with Schemathesis, in-process (WSGI).

With a valid API key, generated requests (examples, boundary values, then random ones; valid and invalid) must
never get a 5xx, and every answer must conform to the schema: a declared status code and content type, a body
that matches. Invalid requests must be refused, and an answer that needs the key must not come without it.
Most generated bodies are refused anyway (422): hooks put the organisation's real patient, study and shares into
part of the valid ones, so success answers are checked too; ``test_success_answers_conform`` sees each one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from radshare.api import throttle
from radshare.organisations.services import create_api_key
from radshare.shares.models import Share
from radshare.shares.services import SYSTEM, revoke
from tests.shares.helpers import ANNA, make_share, make_study

schema = schemathesis.openapi.from_wsgi(
    "/api/v1/openapi.json",
    get_wsgi_application(),
    config=schemathesis.Config.from_dict(
        # Valid and invalid data; the key is ours (below), not a generated Authorization header.
        {"generation": {"mode": "all", "with-security-parameters": False}}
    ),
)

CHECKS = [
    schemathesis.checks.not_a_server_error,  # no 5xx
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.negative_data_rejection,  # a request the schema forbids gets a 4xx
    schemathesis.checks.ignored_auth,  # a success answer: asked again without a key (and a wrong one), a 401
]


@dataclass(frozen=True)
class Known:
    """What the organisation holds: the hooks draw from it, so some requests name real things."""

    key: str
    patient_id: str
    study_instance_uid: str
    email_share: int  # notified: it may be sent again
    letter_share: int
    url_share: int
    revoked_share: int

    @property
    def share_ids(self) -> list[int]:
        return [self.email_share, self.letter_share, self.url_share, self.revoked_share]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


_known: Known | None = None  # the running test's; read by the hooks while Hypothesis draws


@pytest.fixture
def known(organisation: Any) -> Iterator[Known]:
    global _known
    study = make_study(organisation, ANNA)
    email = make_share(organisation, [study]).share
    Share.objects.filter(pk=email.pk).update(status=Share.Status.NOTIFIED)
    revoked = make_share(organisation, [study]).share
    revoke(revoked, SYSTEM)
    _known = Known(
        key=create_api_key(organisation, "schemathesis")[1],
        patient_id=study.patient.patient_id,
        study_instance_uid=study.study_instance_uid,
        email_share=email.pk,
        letter_share=make_share(organisation, [study], delivery="letter").share.pk,
        url_share=make_share(organisation, [study], delivery="url").share.pk,
        revoked_share=revoked.pk,
    )
    yield _known
    _known = None


@pytest.fixture(autouse=True)
def _no_throttle(monkeypatch: pytest.MonkeyPatch) -> None:
    """After each success, Schemathesis asks again without the key and with a wrong one, all from one address:
    past the throttle's limit every answer would be a 429 (a documented one). The throttle has its own tests
    (tests/security/test_edges.py); here the limit is out of reach, so the generated requests reach the API."""
    monkeypatch.setattr(throttle, "LIMIT", 10**9)


@pytest.fixture
def _one_connection() -> Iterator[None]:
    """Keep the test's database connection (and its transaction) across requests to the WSGI app.

    Django closes the connection at the start and end of every request; its test client stops that, and so
    must we: the app runs in this thread, on this connection, inside the test's transaction.
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@schema.hook("flatmap_path_parameters")
def _real_share_ids(ctx: schemathesis.HookContext, path_parameters: dict[str, Any]) -> Any:
    """Besides the generated id (a 404, mostly), one of the organisation's shares in all their states. Only in
    place of an integer: any integer fits the schema, so a negative case stays negative (in its body)."""
    if (
        _known is None
        or not isinstance(path_parameters, dict)
        or type(path_parameters.get("share_id")) is not int
    ):
        return st.just(path_parameters)
    real = st.sampled_from(_known.share_ids).map(lambda share_id: {**path_parameters, "share_id": share_id})
    return st.one_of(st.just(path_parameters), real)


@schema.hook("filter_query")
def _sendable(ctx: schemathesis.HookContext, query: dict[str, Any] | None) -> bool:
    """No list or object in the query (the schema has none there: they are invalid values Schemathesis made).
    On the wire they often come out as no parameter at all, or as a valid string (``[[None]]``: "None"), so the
    request is rightly answered, and Schemathesis would count that against the API."""
    return not isinstance(query, dict) or not any(isinstance(value, list | dict) for value in query.values())


def _positive(case: schemathesis.Case) -> bool:
    """Generated to fit the schema: then it may name real things. A negative case stays as generated (it is
    expected to be refused, and would not be if the real values replaced what made it invalid)."""
    return case.meta is None or case.meta.generation.mode.is_positive


def _with(case: schemathesis.Case, **parts: Any) -> schemathesis.Case:
    for name, value in parts.items():
        setattr(case, name, value)
    return case


@schema.hook("flatmap_case").apply_to(operation_id="list_studies")
def _real_patient(ctx: schemathesis.HookContext, case: schemathesis.Case) -> Any:
    if _known is None or not _positive(case) or not isinstance(case.query, dict):
        return st.just(case)
    queries = [{**case.query, "patient_id": _known.patient_id}, {"patient_id": _known.patient_id}]
    return st.one_of(st.just(case), st.sampled_from(queries).map(lambda query: _with(case, query=query)))


@schema.hook("flatmap_case").apply_to(operation_id="create_share")
def _real_studies(ctx: schemathesis.HookContext, case: schemathesis.Case) -> Any:
    """The generated body as is, with the real patient and study, or that and a valid recipient too."""
    if _known is None or not _positive(case) or not isinstance(case.body, dict):
        return st.just(case)
    ours = {**case.body, "patient_id": _known.patient_id, "study_instance_uids": [_known.study_instance_uid]}
    ours.pop("issuer", None)
    valid = st.fixed_dictionaries(
        {
            "recipient": st.fixed_dictionaries(
                {
                    "type": st.sampled_from(["patient", "care_provider"]),
                    "phone": st.just("0612345678"),
                    "email": st.just("anna@example.org"),
                }
            ),
            "delivery": st.sampled_from(["email", "letter", "url"]),
            "language": st.sampled_from(["nl", "en"]),
        }
    ).map(lambda fields: {**ours, **fields})
    bodies = st.one_of(st.just(ours), valid).map(lambda body: _with(case, body=body))
    return st.one_of(st.just(case), bodies)


@pytest.mark.django_db
@pytest.mark.usefixtures("_one_connection")
@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    # One organisation, study and set of shares serves all examples of an operation; requests take milliseconds.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_conforms_to_its_schema(case: schemathesis.Case, known: Known) -> None:
    case.call_and_validate(headers=known.auth, checks=CHECKS)


@pytest.mark.django_db
@pytest.mark.usefixtures("_one_connection")
def test_success_answers_conform(known: Known) -> None:
    """Each operation's success answer, with its body (the letter: a PDF), conforms to the schema."""

    def call(operation_id: str, status: int, **parts: Any) -> Any:
        case = schema.find_operation_by_id(operation_id).Case(**parts)
        response = case.call_and_validate(headers=known.auth, checks=CHECKS)
        assert response.status_code == status, response.text
        return response

    studies = call("list_studies", 200, query={"patient_id": known.patient_id}).json()
    assert [s["study_instance_uid"] for s in studies] == [known.study_instance_uid]
    for delivery in ("email", "letter", "url"):
        body = {
            "patient_id": known.patient_id,
            "study_instance_uids": [known.study_instance_uid],
            "recipient": {"type": "patient", "phone": "0612345678", "email": "anna@example.org"},
            "delivery": delivery,
        }
        call("create_share", 201, body=body)
    email = {"share_id": known.email_share}
    call("resend_share", 202, path_parameters=email, body={"email": "anna.j@example.org"})
    assert call("get_share", 200, path_parameters=email).json()["notification"] is not None
    letter = call("share_letter", 200, path_parameters={"share_id": known.letter_share})
    assert letter.headers["content-type"] == ["application/pdf"]
    assert letter.content.startswith(b"%PDF")
    call("revoke_share", 200, path_parameters={"share_id": known.url_share})
