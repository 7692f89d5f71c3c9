"""A sender's own account page (``/portal/account/``): the e-mail address their notices go to, validated and
audited without the address itself; and the copy button beside a new API key."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from radshare.audit.actions import Action
from radshare.audit.models import AuditEvent
from radshare.delivery import outbox
from radshare.delivery.models import Notification
from radshare.organisations.models import Sender
from radshare.organisations.services import MAX_FAILED_PER_ACCOUNT_AND_ADDRESS, create_sender

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

    saved = client.post(
        "/portal/account/", {"email": " alice@hospital.example ", "password": PASSWORD}, follow=True
    )
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

    # unchanged: no password asked, nothing to record
    assert client.post("/portal/account/", {"email": "alice@hospital.example"}).status_code == 302
    assert AuditEvent.objects.filter(action=Action.PORTAL_ACCOUNT_EMAIL).count() == 1
    client.post("/portal/account/", {"email": "", "password": PASSWORD})
    sender.refresh_from_db()
    assert sender.email == ""
    assert AuditEvent.objects.filter(action=Action.PORTAL_ACCOUNT_EMAIL).count() == 2


@pytest.mark.django_db
def test_a_new_address_takes_the_password_and_wrong_ones_lock_like_logins(sender: Sender) -> None:
    """A session left open must not redirect (or silence) the notices that would tell the owner: changing or
    clearing the address takes the password, and guessing it here counts towards the login locks."""
    sender.email = "alice@hospital.example"
    sender.save(update_fields=["email"])
    client = _client(sender)
    page = _text(client.get("/portal/account/"))
    assert 'autocomplete="current-password"' in page
    for password, says in (("", "Type your password."), ("guess", "That is not your password.")):
        for address in ("mallory@evil.example", ""):
            refused = client.post("/portal/account/", {"email": address, "password": password})
            assert refused.status_code == 422
            assert says in _text(refused)
    sender.refresh_from_db()
    assert sender.email == "alice@hospital.example"
    assert not AuditEvent.objects.filter(action=Action.PORTAL_ACCOUNT_EMAIL).exists()
    assert AuditEvent.objects.filter(action=Action.PORTAL_LOGIN_FAILED, actor_label="alice").count() == 2
    for _ in range(MAX_FAILED_PER_ACCOUNT_AND_ADDRESS - 2):
        client.post("/portal/account/", {"email": "mallory@evil.example", "password": "guess"})
    # Locked: even the right password is not checked now, here or at the login page.
    locked = client.post("/portal/account/", {"email": "mallory@evil.example", "password": PASSWORD})
    assert "Too many failed attempts" in _text(locked)
    sender.refresh_from_db()
    assert sender.email == "alice@hospital.example"
    login = Client(HTTP_ACCEPT_LANGUAGE="en").post(
        "/portal/login/", {"username": "alice", "password": PASSWORD}
    )
    assert "Too many failed attempts" in _text(login)


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


@pytest.mark.django_db
def test_the_old_address_is_told_of_a_change_and_of_a_removal(
    sender: Sender, tmp_path: Path, radshare_config: Any, settings: Any
) -> None:
    """Someone who changes a sender's address (with the password, say from a phished login) is not silent: the old
    address gets one e-mail naming the account, and neither the new address nor anything else."""
    settings.LANGUAGE_CODE = "en"  # sender notices are in the installation's language
    radshare_config(email_url=f"file://{tmp_path / 'mail'}")
    client = _client(sender)
    client.post("/portal/account/", {"email": "alice@hospital.example", "password": PASSWORD})
    assert not Notification.objects.exists()  # no old address: nobody to tell
    client.post("/portal/account/", {"email": "mallory@evil.example", "password": PASSWORD})
    client.post("/portal/account/", {"email": "", "password": PASSWORD})
    changed, removed = Notification.objects.order_by("pk")
    for notice in (changed, removed):
        assert (notice.kind, notice.to_sender_id) == (Notification.Kind.EMAIL_CHANGED, sender.pk)
        assert "hospital" not in notice.secret  # the old address waits encrypted
        assert outbox.deliver(notice.pk) == "sent"
        notice.refresh_from_db()
        assert notice.secret == ""  # and is wiped once sent
    mails = [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for p in sorted((tmp_path / "mail").glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    ]
    assert [str(m["To"]) for m in mails] == ["alice@hospital.example", "mallory@evil.example"]
    texts = [m.get_body(preferencelist=("plain",)).get_content() for m in mails]  # type: ignore[union-attr]
    assert "alice" in texts[0]
    assert "was changed" in texts[0]
    assert "was removed" in texts[1]
    for text in texts:
        assert "If this was not you" in text
        assert "mallory" not in texts[0]  # the new address is not given away
    assert "changed" in str(mails[0]["Subject"])
