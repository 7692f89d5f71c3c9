"""Creating and preparing shares: the rules the share dialog and the API both rely on."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone, translation

from radshare.audit.models import AuditEvent
from radshare.imaging import services as imaging
from radshare.shares import codes
from radshare.shares.models import Share
from radshare.shares.services import ShareError, prepare
from tests.shares.helpers import ANNA, NO_BIRTH, PIET, make_share, make_study


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    with translation.override("en"):
        yield


@pytest.mark.django_db
def test_a_share_stores_only_the_hash_and_an_encrypted_copy_of_its_code(
    organisation: Any, sender: Any
) -> None:
    study = make_study(organisation, ANNA)
    new = make_share(organisation, [study], created_by=sender, reason="second opinion")
    share = Share.objects.get(pk=new.share.pk)
    assert share.code_hash == codes.code_hash(new.code)
    assert codes.decrypt_code(share.code_encrypted) == new.code
    row = {f.name: str(getattr(share, f.attname)) for f in Share._meta.concrete_fields}
    assert not any(new.code in value or codes.format_code(new.code) in value for value in row.values())
    assert share.phone == "+31612345678"
    assert share.status == Share.Status.PREPARING
    assert share.expires_at - share.created_at == dt.timedelta(days=14)
    assert list(share.share_studies.values_list("study_instance_uid", flat=True)) == [
        study.study_instance_uid
    ]
    event = AuditEvent.objects.get(action="share.create")
    assert (event.actor_label, event.patient_ref, event.study_uids) == (
        "alice",
        study.patient_id,
        [study.study_instance_uid],
    )
    assert "Jansen" not in str(event.detail)
    assert "0612345678" not in str(event.detail)


@pytest.mark.django_db
def test_studies_of_two_patients_are_refused(organisation: Any) -> None:
    with pytest.raises(ShareError) as caught:
        make_share(organisation, [make_study(organisation, ANNA), make_study(organisation, PIET)])
    assert caught.value.code == "mixed_patients"
    assert "one patient" in str(caught.value.message)
    assert not Share.objects.exists()


@pytest.mark.django_db
def test_another_organisations_study_is_not_found(organisation: Any, other_organisation: Any) -> None:
    theirs = make_study(other_organisation, ANNA)
    with pytest.raises(ShareError) as caught:
        make_share(organisation, [theirs])
    assert caught.value.code == "study_not_found"


@pytest.mark.django_db
def test_care_provider_needs_consent(organisation: Any) -> None:
    study = make_study(organisation, ANNA)
    with pytest.raises(ShareError) as caught:
        make_share(organisation, [study], recipient_type="care_provider")
    assert (caught.value.code, caught.value.field) == ("consent_required", "consent_confirmed")
    assert make_share(organisation, [study], recipient_type="care_provider", consent_confirmed=True).share.pk


@pytest.mark.django_db
def test_placeholder_birth_date_must_be_confirmed(organisation: Any) -> None:
    study = make_study(organisation, NO_BIRTH)
    with pytest.raises(ShareError) as caught:
        make_share(organisation, [study])
    assert caught.value.code == "birth_date_required"
    for wrong in (dt.date(1900, 1, 1), timezone.localdate() + dt.timedelta(days=1), dt.date(1800, 5, 5)):
        with pytest.raises(ShareError) as caught:
            make_share(organisation, [study], birth_date=wrong)
        assert caught.value.code == "birth_date_invalid"
    share = make_share(organisation, [study], birth_date=dt.date(1971, 7, 7)).share
    assert share.confirmed_birth_date == dt.date(1971, 7, 7)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"phone": "12345"}, "phone_invalid"),
        ({"phone": ""}, "phone_invalid"),
        ({"email": "not-an-address"}, "email_invalid"),
        ({"delivery": "pigeon"}, "delivery_invalid"),
        ({"recipient_type": "neighbour"}, "recipient_invalid"),
        ({"language": "de"}, "language_invalid"),
    ],
)
def test_wrong_form_values_are_refused_and_store_nothing(organisation: Any, kwargs: Any, code: str) -> None:
    study = make_study(organisation, ANNA)
    with pytest.raises(ShareError) as caught:
        make_share(organisation, [study], **kwargs)
    assert caught.value.code == code
    assert not Share.objects.exists()


@pytest.mark.django_db
def test_letter_and_link_delivery_need_no_email_and_keep_none(organisation: Any) -> None:
    study = make_study(organisation, ANNA)
    for delivery in ("letter", "url"):
        share = make_share(organisation, [study], delivery=delivery, email="ignored@example.org").share
        assert share.email == ""


@pytest.mark.django_db
def test_a_landline_is_accepted_with_a_warning(organisation: Any) -> None:
    new = make_share(organisation, [make_study(organisation, ANNA)], phone="020 123 4567")
    assert new.share.phone == "+31201234567"
    assert "SMS" in str(new.warnings[0])


@pytest.mark.django_db(transaction=True)
def test_a_share_of_rendered_studies_is_ready_within_seconds(organisation: Any) -> None:
    studies = [make_study(organisation, ANNA), make_study(organisation, ANNA, kind="cr")]
    imaging.render_pending_now(parallel=False)
    started = timezone.now()
    new = make_share(organisation, studies)
    from django_tasks_db.models import DBTaskResult

    from radshare.shares.tasks import prepare_share

    task = DBTaskResult.objects.get(task_path=prepare_share.module_path)
    assert task.args_kwargs["args"] == [new.share.pk]
    assert prepare_share.call(new.share.pk) == "ready"
    share = Share.objects.get(pk=new.share.pk)
    assert share.status == Share.Status.READY
    assert share.ready_at is not None
    assert (share.ready_at - started).total_seconds() < 5
    assert AuditEvent.objects.filter(action="share.ready").count() == 1
    assert prepare(new.share.pk) == "ready"  # idempotent


@pytest.mark.django_db(transaction=True)
def test_preparation_waits_for_renders_and_looks_again(organisation: Any) -> None:
    study = make_study(organisation, ANNA)
    new = make_share(organisation, [study])
    from django_tasks_db.models import DBTaskResult

    from radshare.shares.tasks import prepare_share

    assert prepare_share.call(new.share.pk) == "preparing"
    again = DBTaskResult.objects.filter(task_path=prepare_share.module_path).order_by("-enqueued_at").first()
    assert again is not None
    assert again.args_kwargs["kwargs"] == {"attempt": 1}
    assert again.run_after is not None
    assert again.run_after > timezone.now()
    imaging.render_pending_now(parallel=False)
    assert prepare_share.call(new.share.pk, attempt=1) == "ready"
