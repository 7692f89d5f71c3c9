"""Request plumbing: security headers, URL zoning by ``RADSHARE_ROLE``, the operator-only admin and an access
log without query strings."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory

from radshare.core.middleware import TrustedProxyMiddleware
from radshare.organisations.models import Sender
from tests.conftest import pass_second_factor

SUPERUSER_PASSWORD = "operator pass phrase 1"
SENDER_PASSWORD = "correct horse battery staple"  # the ``sender`` fixture's


def english(user: Sender | None = None) -> Client:
    client = Client(headers={"accept-language": "en"})
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def operator(db: None) -> Sender:
    return Sender.objects.create_superuser("operator", password=SUPERUSER_PASSWORD)


def assert_security_headers(response: Any) -> None:
    csp = response["Content-Security-Policy"]
    for directive in (
        "default-src 'self'",
        "script-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ):
        assert directive in csp, (response.wsgi_request.path, csp)
    assert "unsafe-inline" not in csp
    assert response["Referrer-Policy"] == "no-referrer"
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "no-store" in [d.strip() for d in response["Cache-Control"].split(",")]


@pytest.mark.django_db
def test_security_headers_on_portal_pages(sender: Sender) -> None:
    anonymous = english()
    assert_security_headers(anonymous.get("/portal/login/"))
    assert_security_headers(anonymous.get("/portal/"))  # the redirect to the login page
    assert_security_headers(anonymous.post("/portal/login/", {"username": "alice", "password": "wrong"}))
    client = english(sender)
    for path, status in (
        ("/portal/", 200),
        ("/portal/?patient_name=x", 200),
        ("/portal/studies/999999/", 404),
        ("/", 200),
        ("/healthz", 200),
        ("/no/such/page", 404),
    ):
        response = client.get(path)
        assert response.status_code == status, path
        assert_security_headers(response)


@pytest.mark.django_db
def test_error_pages_hold_no_internals(sender: Sender) -> None:
    response = english(sender).get("/portal/studies/999999/")
    html = response.content.decode()
    assert "Page not found" in html
    for leak in ("Traceback", "DoesNotExist", "Study matching query", "studies/views.py"):
        assert leak not in html


@pytest.mark.django_db
def test_public_role_serves_no_portal_and_no_admin(
    radshare_config: Any, sender: Sender, operator: Sender
) -> None:
    radshare_config(role="public")
    for user in (None, sender, operator):
        client = english(user)
        for path in ("/portal/", "/portal/login/", "/admin/", "/admin/login/"):
            assert client.get(path).status_code == 404, path
        assert client.post("/portal/login/", {"username": "alice", "password": "x"}).status_code == 404
        assert client.get("/").status_code == 200
        assert client.get("/healthz").status_code == 200


@pytest.mark.django_db
def test_internal_role_serves_no_recipient_pages(radshare_config: Any, sender: Sender) -> None:
    radshare_config(role="internal")
    client = english(sender)
    for path in ("/", "/?code=ABCD-EFGH-JKMN", "/r/anything"):
        assert client.get(path).status_code == 404, path
    assert client.get("/portal/").status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code in (200, 503)  # served; whether ready: tests/core/test_health.py


@pytest.mark.django_db
def test_all_role_serves_both(sender: Sender) -> None:
    client = english(sender)
    assert client.get("/").status_code == 200
    assert client.get("/portal/").status_code == 200


@pytest.mark.django_db
def test_admin_refuses_senders(sender: Sender) -> None:
    response = english(sender).get("/admin/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/admin/"
    assert english(sender).get("/admin/organisations/organisation/").status_code == 302
    client = english()
    login = client.post("/admin/login/?next=/admin/", {"username": "alice", "password": SENDER_PASSWORD})
    assert login.status_code == 200
    assert client.get("/admin/").status_code == 302
    # Even with Django's staff flag a sender is no operator: only superusers get in.
    Sender.objects.filter(pk=sender.pk).update(is_staff=True)
    staff = english()
    staff.post("/admin/login/?next=/admin/", {"username": "alice", "password": SENDER_PASSWORD})
    assert staff.get("/admin/").status_code == 302
    assert staff.get("/admin/audit/auditevent/").status_code == 302


@pytest.mark.django_db
def test_admin_admits_a_superuser(operator: Sender) -> None:
    client = english()
    login = client.post(
        "/admin/login/?next=/admin/", {"username": "operator", "password": SUPERUSER_PASSWORD}
    )
    assert login.status_code == 302
    assert login["Location"] == "/admin/"
    # Operators always pass the second login step (docs/security.md A9; tests/security/test_two_factor.py).
    assert client.get("/admin/")["Location"] == "/admin/two-factor/?next=/admin/"
    pass_second_factor(client, operator, site="admin")
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/organisations/organisation/").status_code == 200
    assert client.get("/admin/audit/auditevent/").status_code == 200


@pytest.mark.django_db
def test_access_log_never_holds_the_query_string(caplog: pytest.LogCaptureFixture, sender: Sender) -> None:
    caplog.set_level(logging.INFO)
    client = english(sender)
    client.get("/portal/", {"patient_id": "PID-SECRET-1", "patient_name": "Geheimnaam"})
    client.get("/", {"code": "ABCD-EFGH-JKMN"})
    client.get("/no/such/page", {"code": "ABCD-EFGH-JKMN"})
    english().get("/portal/", {"patient_name": "Geheimnaam"})  # redirected to the login page with ?next=
    access = [r.getMessage() for r in caplog.records if r.name == "radshare.access"]
    assert len(access) == 4
    assert access[0].startswith("GET /portal/ 200 ")
    assert access[2].startswith("GET /no/such/page 404 ")
    everything = "\n".join(f"{r.name} {r.getMessage()} {r.args}" for r in caplog.records)
    for secret in ("PID-SECRET-1", "Geheimnaam", "ABCD-EFGH-JKMN", "?", "patient_", "code="):
        assert secret not in everything


@pytest.mark.django_db
def test_database_unavailable_is_a_503_page_with_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    """A page whose database is away (or whose pooled connections are all busy) asks to retry (R7)."""

    def fail(*args: object, **kwargs: object) -> None:
        raise OperationalError("couldn't get a connection after 10.00 sec")

    monkeypatch.setattr("radshare.recipients.views.render", fail)
    response = Client(raise_request_exception=False).get("/", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "Busy for a moment" in response.content.decode()
    assert "connection" not in response.content.decode()
    dutch = Client(raise_request_exception=False).get("/", HTTP_ACCEPT_LANGUAGE="nl")
    assert dutch.status_code == 503
    assert "Even druk" in dutch.content.decode()


@pytest.mark.parametrize(
    ("peer", "trusted", "secure"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("10.1.2.3", "10.1.0.0/16", True),
        ("10.9.2.3", "10.1.0.0/16", False),  # anyone else claiming https is not believed
        ("127.0.0.1", "", False),
    ],
)
def test_forwarded_proto_is_believed_from_trusted_proxies_only(
    radshare_config: Any, peer: str, trusted: str, secure: bool
) -> None:
    radshare_config(trusted_proxies=tuple(t for t in [trusted] if t), base_url="https://radshare.example.org")
    seen: list[bool] = []

    def view(request: HttpRequest) -> HttpResponse:
        seen.append(request.is_secure())
        return HttpResponse("ok")

    request = RequestFactory().get("/", REMOTE_ADDR=peer, HTTP_X_FORWARDED_PROTO="https")
    response = TrustedProxyMiddleware(view)(request)
    assert seen == [secure]
    # HSTS whenever the base URL is https, believed or not (browsers ignore it over plain http).
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_no_hsts_for_an_http_base_url(radshare_config: Any) -> None:
    radshare_config(base_url="http://localhost:8000")
    response = TrustedProxyMiddleware(lambda request: HttpResponse("ok"))(RequestFactory().get("/"))
    assert "Strict-Transport-Security" not in response
