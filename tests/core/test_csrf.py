"""CSRF protection under ``Referrer-Policy: no-referrer``, where browsers post forms with ``Origin: null``."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

PASSWORD = "correct horse battery staple"


def _login_post(client: Client, **headers: str) -> Any:
    client.get("/portal/login/")
    token = client.cookies["csrftoken"].value
    return client.post(
        "/portal/login/", {"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": token}, **headers
    )


@pytest.mark.django_db
def test_same_origin_post_with_null_origin_is_accepted(sender: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    response = _login_post(client, HTTP_ORIGIN="null", HTTP_SEC_FETCH_SITE="same-origin")
    assert response.status_code == 302
    assert response["Location"] == "/portal/"


@pytest.mark.django_db
@pytest.mark.parametrize("fetch_site", ["cross-site", "same-site", "none", ""])
def test_null_origin_from_elsewhere_is_refused(sender: Any, fetch_site: str) -> None:
    client = Client(enforce_csrf_checks=True)
    headers = {"HTTP_ORIGIN": "null"}
    if fetch_site:
        headers["HTTP_SEC_FETCH_SITE"] = fetch_site
    assert _login_post(client, **headers).status_code == 403


@pytest.mark.django_db
def test_foreign_origin_and_missing_token_are_refused(sender: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    assert _login_post(client, HTTP_ORIGIN="https://evil.example").status_code == 403
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/portal/login/",
        {"username": "alice", "password": PASSWORD},
        HTTP_ORIGIN="null",
        HTTP_SEC_FETCH_SITE="same-origin",
    )
    assert response.status_code == 403
