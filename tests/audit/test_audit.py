"""The audit trail: append-only, and what a portal entry holds (docs/security.md A16, A17)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.db import transaction
from django.forms.models import model_to_dict
from django.test import Client

from radshare.audit.actions import Action
from radshare.audit.models import AppendOnlyError, AuditEvent
from radshare.audit.services import ActorType, Outcome, record
from radshare.organisations.models import Organisation, Sender
from radshare.studies.synthetic import FakePatient
from tests.studies.factories import make_study

PATIENT = FakePatient("P-4711", "Jansen^Anna^Maria", dt.date(1968, 3, 14), sex="F", bsn="999999990")
PRIVATE = ("Jansen", "Anna", "Maria", "1968", "19680314", "14-03-1968", "999999990")


def as_text(event: AuditEvent) -> str:
    """Every stored value of the row, as one string."""
    values = model_to_dict(AuditEvent.objects.get(pk=event.pk))
    values.update(timestamp=event.timestamp.isoformat(), event_id=str(event.event_id))
    return json.dumps(values, default=str)


@pytest.mark.django_db
def test_entries_cannot_be_changed_or_deleted() -> None:
    event = record(Action.SHARE_EXPIRE, actor_type=ActorType.SYSTEM, detail={"n": 1})
    event.action = "test.changed"
    attempts = [
        event.save,
        event.delete,
        lambda: AuditEvent.objects.filter(pk=event.pk).update(action="test.changed"),
        lambda: AuditEvent.objects.filter(pk=event.pk).delete(),
        lambda: AuditEvent.objects.all().delete(),
        lambda: AuditEvent.objects.bulk_update([event], ["action"]),
        lambda: AuditEvent.objects.update_or_create(pk=event.pk, defaults={"action": "test.changed"}),
    ]
    for attempt in attempts:
        # Each in its own savepoint: some of Django's bulk methods open an atomic block around the refusal.
        with pytest.raises(AppendOnlyError), transaction.atomic():
            attempt()
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.action, stored.detail) == ("share.expire", {"n": 1})


@pytest.mark.django_db
def test_record_fills_the_who_and_when() -> None:
    event = record(
        Action.SHARE_EXPIRE,
        outcome=Outcome.DENIED,
        actor_type=ActorType.SYSTEM,
        actor_label="x" * 200,
        client="192.0.2.1",
        study_uids=["1.2.3", "1.2.3", "1.2.1"],
    )
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.outcome == Outcome.DENIED
    assert stored.actor_label == "x" * 150
    assert stored.study_uids == ["1.2.1", "1.2.3"]
    assert stored.timestamp.utcoffset() == dt.timedelta(0)


@pytest.mark.django_db
def test_study_view_entry_holds_who_what_where_and_no_patient_name(
    organisation: Organisation, sender: Sender
) -> None:
    study = make_study(organisation, PATIENT, study_date=dt.date(2024, 1, 10), description="CT thorax")
    client = Client(REMOTE_ADDR="198.51.100.23", headers={"user-agent": "TestBrowser/1.0 (X11)"})
    client.force_login(sender)
    assert client.get(f"/portal/studies/{study.pk}/").status_code == 200
    event = AuditEvent.objects.get(action="portal.study.view")
    assert event.outcome == Outcome.SUCCESS
    assert (event.actor_type, event.actor_id, event.actor_label) == (ActorType.SENDER, sender.pk, "alice")
    assert event.organisation_id == organisation.pk
    assert event.patient_ref == study.patient.pk
    assert event.study_uids == [study.study_instance_uid]
    assert event.client_address == "198.51.100.23"
    assert event.user_agent == "TestBrowser/1.0 (X11)"
    row = as_text(event)
    for private in PRIVATE:
        assert private not in row


@pytest.mark.django_db
def test_study_list_entry_names_the_criteria_not_their_values(
    organisation: Organisation, sender: Sender
) -> None:
    study = make_study(organisation, PATIENT, study_date=dt.date(2024, 1, 10), description="CT thorax")
    client = Client(REMOTE_ADDR="198.51.100.23")
    client.force_login(sender)
    query: dict[str, Any] = {"patient_name": "jansen anna", "patient_birth_date": "14-03-1968"}
    assert client.get("/portal/", query).status_code == 200
    event = AuditEvent.objects.get(action="portal.studies.list")
    assert event.study_uids == [study.study_instance_uid]
    assert event.detail == {"count": 1, "page": 1, "criteria": ["patient_birth_date", "patient_name"]}
    assert event.client_address == "198.51.100.23"
    row = as_text(event)
    for private in (*PRIVATE, "jansen"):
        assert private not in row
