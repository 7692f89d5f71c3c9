"""Sender login: Argon2 hashes, audited outcomes, throttling per account and address and per address (docs/security.md
A9; the lock-out rules in detail: test_login_lockout.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from radshare.audit.models import AuditEvent
from radshare.audit.services import ActorType, Outcome, record
from radshare.organisations.models import Sender
from radshare.organisations.services import (
    LOGIN_WINDOW,
    MAX_FAILED_PER_ACCOUNT_AND_ADDRESS,
    MAX_FAILED_PER_ADDRESS,
    create_sender,
)

PASSWORD = "correct horse battery staple"
THROTTLED = "Too many failed attempts. Wait 15 minutes and try again, or ask your administrator."
WRONG = "Please enter a correct username and password."


def english(address: str = "127.0.0.1") -> Client:
    return Client(headers={"accept-language": "en"}, REMOTE_ADDR=address)


def log_in(client: Client, username: str, password: str) -> Any:
    return client.post("/portal/login/", {"username": username, "password": password})


def logged_in(client: Client) -> bool:
    return client.get("/portal/").status_code == 200


@pytest.mark.argon2
@pytest.mark.django_db
def test_login_works_and_the_hash_is_argon2(sender: Sender) -> None:
    client = english()
    response = log_in(client, "alice", PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == "/portal/"
    assert logged_in(client)
    stored = Sender.objects.get(pk=sender.pk).password
    assert stored.startswith("argon2$argon2id$")
    assert PASSWORD not in stored
    event = AuditEvent.objects.get(action="portal.login")
    assert (event.outcome, event.actor_type, event.actor_id, event.actor_label) == (
        Outcome.SUCCESS,
        ActorType.SENDER,
        sender.pk,
        "alice",
    )
    assert event.organisation_id == sender.organisation_id
    assert event.client_address == "127.0.0.1"


@pytest.mark.django_db
def test_login_follows_next_only_within_the_site(sender: Sender) -> None:
    client = english()
    response = client.post(
        "/portal/login/?next=/portal/studies/1/", {"username": "alice", "password": PASSWORD}
    )
    assert response["Location"] == "/portal/studies/1/"
    client = english()
    response = client.post(
        "/portal/login/?next=https://evil.example.org/", {"username": "alice", "password": PASSWORD}
    )
    assert response["Location"] == "/portal/"


@pytest.mark.django_db
def test_failed_login_is_audited_and_explained(sender: Sender) -> None:
    client = english("10.0.0.7")
    response = log_in(client, "alice", "wrong password")
    assert response.status_code == 200
    assert WRONG in response.content.decode()
    assert not logged_in(client)
    event = AuditEvent.objects.get(action="portal.login.failed")
    assert (event.outcome, event.actor_type, event.actor_label, event.client_address) == (
        Outcome.FAILURE,
        ActorType.ANONYMOUS,
        "alice",
        "10.0.0.7",
    )
    assert "wrong password" not in str(event.detail)
    # A known account's failures are filed under its organisation (its admins read them); unknown ones are not.
    assert event.organisation_id == sender.organisation_id
    log_in(client, "nobody", "wrong password")
    assert AuditEvent.objects.get(action="portal.login.failed", actor_label="nobody").organisation_id is None


@pytest.mark.django_db
def test_the_eleventh_attempt_is_refused_even_with_the_right_password(sender: Sender) -> None:
    client = english()
    for _ in range(MAX_FAILED_PER_ACCOUNT_AND_ADDRESS):
        assert WRONG in log_in(client, "alice", "wrong password").content.decode()
    assert AuditEvent.objects.filter(action="portal.login.failed", actor_label="alice").count() == 10
    response = log_in(client, "alice", PASSWORD)
    assert response.status_code == 200
    assert THROTTLED in response.content.decode()
    assert not logged_in(client)
    # Refused before the password check, yet on the record.
    throttled = AuditEvent.objects.get(action="portal.login.throttled")
    assert (throttled.outcome, throttled.actor_label) == (Outcome.DENIED, "alice")
    assert not AuditEvent.objects.filter(action="portal.login").exists()
    # The limit is per account (and address): another sender logs in from the same address.
    create_sender(sender.organisation, "bob", "another long pass phrase")
    assert log_in(english(), "bob", "another long pass phrase").status_code == 302


@pytest.mark.django_db
def test_failures_outside_the_window_do_not_count(sender: Sender) -> None:
    long_ago = timezone.now() - LOGIN_WINDOW - dt.timedelta(minutes=1)
    for _ in range(MAX_FAILED_PER_ACCOUNT_AND_ADDRESS):
        with time_machine.travel(long_ago, tick=False):
            record(
                "portal.login.failed",
                outcome=Outcome.FAILURE,
                actor_type=ActorType.ANONYMOUS,
                actor_label="alice",
                client="127.0.0.1",
            )
    assert log_in(english(), "alice", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_too_many_failures_from_one_address_throttle_every_account(sender: Sender) -> None:
    for i in range(MAX_FAILED_PER_ADDRESS):
        record(
            "portal.login.failed",
            outcome=Outcome.FAILURE,
            actor_type=ActorType.ANONYMOUS,
            actor_label=f"guess{i}",
            client="192.0.2.66",
        )
    response = log_in(english("192.0.2.66"), "alice", PASSWORD)
    assert THROTTLED in response.content.decode()
    assert log_in(english("192.0.2.67"), "alice", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_logout_is_a_post_and_is_audited(sender: Sender) -> None:
    client = english()
    log_in(client, "alice", PASSWORD)
    assert client.get("/portal/logout/").status_code == 405
    assert logged_in(client)
    response = client.post("/portal/logout/")
    assert response.status_code == 302
    assert response["Location"] == "/portal/login/"
    assert not logged_in(client)
    assert AuditEvent.objects.filter(action="portal.logout", actor_id=sender.pk).count() == 1


@pytest.mark.django_db
def test_login_gets_a_new_session_id(sender: Sender) -> None:
    client = english()
    session = client.session
    session["before"] = "login"
    session.save()
    before = session.session_key
    log_in(client, "alice", PASSWORD)
    assert client.cookies["sessionid"].value != before


@pytest.mark.django_db
def test_admin_login_is_throttled_too() -> None:
    Sender.objects.create_superuser("operator", password="operator pass phrase 1")
    client = english("10.0.0.9")
    for _ in range(MAX_FAILED_PER_ACCOUNT_AND_ADDRESS):
        response = client.post("/admin/login/?next=/admin/", {"username": "operator", "password": "guess"})
        assert response.status_code == 200
    assert AuditEvent.objects.filter(action="admin.login.failed", actor_label="operator").count() == 10
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "operator", "password": "operator pass phrase 1"}
    )
    assert response.status_code == 200
    assert THROTTLED in response.content.decode()
    assert client.get("/admin/").status_code == 302
