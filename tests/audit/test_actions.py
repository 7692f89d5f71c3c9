"""Audit actions are one declared list, and the trail page words each of them in the reader's language."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import translation

from radshare.audit import actions
from radshare.audit.actions import Action
from radshare.audit.models import AuditEvent
from radshare.audit.services import ActorType, record
from radshare.organisations.models import Sender


@pytest.mark.django_db
def test_an_action_that_is_not_declared_is_refused() -> None:
    with pytest.raises(ValueError, match=r"made\.up"):
        record("made.up", actor_type=ActorType.SYSTEM)  # type: ignore[arg-type]
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("action", list(Action))
def test_every_action_has_english_and_dutch_words(action: Action) -> None:
    with translation.override("en"):
        english = actions.label(action.value)
    with translation.override("nl"):
        dutch = actions.label(action.value)
    assert english != action.value
    assert dutch not in (english, action.value)


def test_a_code_no_longer_declared_shows_as_it_was_stored() -> None:
    assert actions.label("share.forgotten") == "share.forgotten"


@pytest.mark.django_db
def test_a_login_to_the_operators_admin_is_recorded_as_such() -> None:
    Sender.objects.create_superuser("operator", password="operator pass phrase 1")
    client = Client()
    client.post("/admin/login/?next=/admin/", {"username": "operator", "password": "operator pass phrase 1"})
    client.get("/portal/")  # not a portal login
    assert list(AuditEvent.objects.values_list("action", flat=True)) == [Action.ADMIN_LOGIN]
