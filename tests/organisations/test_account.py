"""A sender's own account page (``/portal/account/``): the e-mail address their notices go to, validated and
audited without the address itself; and the copy button beside a new API key."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from radshare.audit.actions import Action
from radshare.audit.models import AuditEvent
from radshare.organisations.models import Sender
from radshare.organisations.services import create_sender

PASSWORD = "correct horse battery staple"


def _client(user: Sender) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


def _text(response: Any) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


@pytest.mark.django_db
def test_a_sender_sets_their_own_address_validated_and_audited(sender: Sender) -> None:
    client = _client(sender)
    page = _text(client.get("/portal/account/"))
    assert "My account" in page
    assert "Your account has no e-mail address" in page
    assert 'id="id_email_helptext"' in page
    assert 'href="/portal/account/" aria-current="page"' in page  # in the portal's menu

    refused = client.post("/portal/account/", {"email": "alice@"})
    assert refused.status_code == 422
    assert 'aria-invalid="true"' in _text(refused)
    sender.refresh_from_db()
    assert sender.email == ""
    assert not AuditEvent.objects.filter(action=Action.PORTAL_ACCOUNT_EMAIL).exists()

    saved = client.post("/portal/account/", {"email": " alice@hospital.example "}, follow=True)
    assert "Your e-mail address has been saved." in _text(saved)
    sender.refresh_from_db()
    assert sender.email == "alice@hospital.example"
    [entry] = AuditEvent.objects.filter(action=Action.PORTAL_ACCOUNT_EMAIL)
    assert (entry.actor_id, entry.actor_label, entry.organisation_id) == (
        sender.pk,
        "alice",
        sender.organisation_id,
    )
    assert entry.detail == {"sender_id": sender.pk, "had_address": False, "has_address": True}
    assert "alice@" not in str(entry.detail)  # no address in the trail (docs/security.md A21)

    client.post("/portal/account/", {"email": "alice@hospital.example"})  # unchanged: nothing to record
    assert AuditEvent.objects.filter(action=Action.PORTAL_ACCOUNT_EMAIL).count() == 1
    client.post("/portal/account/", {"email": ""})
    sender.refresh_from_db()
    assert sender.email == ""
    assert AuditEvent.objects.filter(action=Action.PORTAL_ACCOUNT_EMAIL).count() == 2


@pytest.mark.django_db
def test_the_account_page_changes_only_the_senders_own_address(organisation: Any, sender: Sender) -> None:
    other = create_sender(organisation, "bob", PASSWORD, email="bob@hospital.example")
    _client(sender).post("/portal/account/", {"email": "alice@hospital.example", "username": "bob"})
    other.refresh_from_db()
    assert other.email == "bob@hospital.example"
    assert Client().get("/portal/account/")["Location"].startswith("/portal/login/")


@pytest.mark.django_db
def test_a_new_api_key_has_a_copy_button(organisation: Any) -> None:
    admin = create_sender(organisation, "carol", PASSWORD, admin=True)
    response = _client(admin).post("/portal/api-keys/", {"name": "PACS"}, follow=True)
    html = response.content.decode()
    assert 'id="new-api-key"' in html
    button = re.search(r"<button [^>]*data-copy=\"new-api-key\"[^>]*>", html)
    assert button is not None
    assert 'data-status="api-key-copy-status"' in button.group(0)
    assert 'id="api-key-copy-status"' in html
    assert "radshare/copy.js" in html
    again = _client(admin).get("/portal/api-keys/").content.decode()
    assert 'data-copy="new-api-key"' not in again  # shown once, with its key
