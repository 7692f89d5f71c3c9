"""Onward sharing (docs/architecture.md "Onward shares"): a patient passes their share on to a care provider. The rules
(who may, how many, until when), the refusals (no side effect), ending and revoking, destruction, and the texts."""

from __future__ import annotations

import io
import re
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from radshare.audit.actions import Action
from radshare.audit.models import AuditEvent
from radshare.core import crypto
from radshare.delivery import content
from radshare.imaging import services as imaging
from radshare.organisations.models import Organisation
from radshare.shares import codes
from radshare.shares.destruction import destroy_due
from radshare.shares.models import Share
from radshare.shares.rotation import rotate_recipient_names
from radshare.shares.services import SYSTEM, Actor, prepare, revoke
from radshare.shares.tasks import expire_shares
from radshare.studies.models import Study
from tests.conftest import config_with
from tests.downloads.test_downloads import DESKTOP
from tests.recipients.conftest import logged_in_client, ready_share
from tests.shares.helpers import ANNA, make_study

PROVIDER = {
    "name": "Anna Jansen-de Vries",
    "email": "dr.bakker@kliniek.example",
    "phone": "0687654321",
    "note": "Second opinion please",
    "consent": "on",
}


@pytest.fixture
def onward_org(organisation: Organisation) -> Organisation:
    organisation.onward_sharing = Organisation.OnwardSharing.PATIENTS
    organisation.save()
    return organisation


def _patient_share(organisation: Organisation, **kwargs: Any) -> tuple[Share, list[Study]]:
    studies = [make_study(organisation, ANNA), make_study(organisation, ANNA, kind="cr")]
    share, _code = ready_share(organisation, studies, delivery="url", email="", **kwargs)
    return share, studies


def _pass_on(client: Client, studies: list[Study], **changes: Any) -> Any:
    data: dict[str, Any] = {**PROVIDER, "studies": [s.pk for s in studies], **changes}
    return client.post("/r/pass-on", {k: v for k, v in data.items() if v is not None})


@pytest.mark.django_db
def test_a_patient_passes_the_share_on_as_a_share_of_its_own(onward_org: Organisation) -> None:
    share, studies = _patient_share(onward_org)
    client = logged_in_client(share)
    page = client.get("/r/studies").content.decode()
    assert 'href="/r/pass-on"' in page
    form = client.get("/r/pass-on")
    assert form.status_code == 200
    assert "Give the care provider your date of birth." in form.content.decode()

    response = _pass_on(client, studies[:1])
    assert response.status_code == 302
    assert response["Location"] == "/r/studies"
    onward = Share.objects.get(parent=share)
    assert onward.recipient_type == Share.RecipientType.CARE_PROVIDER
    assert onward.delivery == Share.Delivery.EMAIL
    assert onward.email == PROVIDER["email"]
    assert onward.phone == "+31687654321"
    assert onward.consent_confirmed  # the patient's own consent, recorded
    assert onward.passed_on_by == PROVIDER["name"]
    assert onward.reason == PROVIDER["note"]
    assert onward.code_hash
    assert onward.code_hash != share.code_hash
    assert onward.expires_at <= share.expires_at
    assert onward.organisation_id == share.organisation_id
    assert onward.patient_id == share.patient_id
    assert list(onward.share_studies.values_list("study_id", flat=True)) == [studies[0].pk]
    created = AuditEvent.objects.get(action=Action.SHARE_ONWARD_CREATE)
    assert created.detail == {"share": onward.pk, "original": share.pk, "consent": True}
    assert created.actor_type == "recipient"
    assert created.actor_label == f"share {share.pk}"
    assert PROVIDER["name"] not in str(created.detail)
    assert PROVIDER["email"] not in str(created.detail)
    # The patient's list shows it with masked contact details and a way to end it.
    page = client.get("/r/studies").content.decode()
    assert "d***@kliniek.example" in page
    assert PROVIDER["email"] not in page
    assert f'href="/r/pass-on/{onward.pk}/end"' in page


@pytest.mark.django_db
def test_an_onward_share_ends_no_later_than_the_original(onward_org: Organisation) -> None:
    share, studies = _patient_share(onward_org)
    with time_machine.travel(timezone.now() + timedelta(days=10)):
        assert _pass_on(logged_in_client(share), studies).status_code == 302
        onward = Share.objects.get(parent=share)
        assert onward.expires_at == share.expires_at  # not 14 days from now


@pytest.mark.django_db
def test_the_setting_off_hides_the_action_and_the_server_refuses(organisation: Organisation) -> None:
    assert organisation.onward_sharing == Organisation.OnwardSharing.OFF  # the default
    share, studies = _patient_share(organisation)
    client = logged_in_client(share)
    assert "/r/pass-on" not in client.get("/r/studies").content.decode()
    assert client.get("/r/pass-on").status_code == 404
    assert _pass_on(client, studies).status_code == 404
    assert not Share.objects.filter(parent=share).exists()
    refused = AuditEvent.objects.get(action=Action.SHARE_ONWARD_REFUSED)
    assert refused.outcome == "denied"
    assert refused.detail == {"share": share.pk, "reason": "setting_off"}


@pytest.mark.django_db
def test_a_care_provider_cannot_pass_on(onward_org: Organisation) -> None:
    share, studies = _patient_share(onward_org, recipient_type="care_provider", consent_confirmed=True)
    client = logged_in_client(share)
    assert "/r/pass-on" not in client.get("/r/studies").content.decode()
    assert client.get("/r/pass-on").status_code == 404
    assert _pass_on(client, studies).status_code == 404
    assert Share.objects.count() == 1


def _ready_onward(share: Share) -> Share:
    onward = Share.objects.filter(parent=share).latest("pk")
    imaging.render_pending_now(parallel=False)
    assert prepare(onward.pk) == "ready"
    onward.refresh_from_db()
    return onward


@pytest.mark.django_db
def test_an_onward_share_cannot_be_passed_on_again(onward_org: Organisation) -> None:
    share, studies = _patient_share(onward_org)
    _pass_on(logged_in_client(share), studies)
    provider = logged_in_client(_ready_onward(share))
    page = provider.get("/r/studies").content.decode()
    assert "/r/pass-on" not in page
    assert PROVIDER["name"] in page
    assert PROVIDER["note"] in page
    assert provider.get("/r/pass-on").status_code == 404
    assert _pass_on(provider, studies).status_code == 404
    assert Share.objects.count() == 2


@pytest.mark.django_db
def test_at_most_three_onward_shares_ended_ones_included(onward_org: Organisation) -> None:
    share, studies = _patient_share(onward_org)
    client = logged_in_client(share)
    for _ in range(3):
        assert _pass_on(client, studies).status_code == 302
    first = Share.objects.filter(parent=share).earliest("pk")
    assert client.post(f"/r/pass-on/{first.pk}/end").status_code == 302
    assert "You cannot pass these images on again." in client.get("/r/studies").content.decode()
    assert client.get("/r/pass-on").status_code == 403
    assert _pass_on(client, studies).status_code == 403
    assert Share.objects.filter(parent=share).count() == 3
    assert AuditEvent.objects.filter(action=Action.SHARE_ONWARD_REFUSED, detail__reason="limit").count() == 1


@pytest.mark.django_db
def test_the_form_refuses_what_is_missing_and_stores_nothing(onward_org: Organisation) -> None:
    share, studies = _patient_share(onward_org)
    _other, other_studies = _patient_share(onward_org)
    client = logged_in_client(share)
    assert _pass_on(client, studies, consent=None).status_code == 422
    assert _pass_on(client, []).status_code == 422
    assert _pass_on(client, studies, name="").status_code == 422
    assert _pass_on(client, studies, phone="12").status_code == 422
    landline = _pass_on(client, studies, phone="0201234567")  # may not receive the SMS code
    assert landline.status_code == 422
    assert "landline" in landline.content.decode()
    # A study of another share is no choice of this one.
    assert _pass_on(client, [other_studies[0]]).status_code == 422
    assert not Share.objects.filter(parent__isnull=False).exists()
    assert not AuditEvent.objects.filter(action=Action.SHARE_ONWARD_CREATE).exists()


@pytest.mark.django_db
def test_the_patient_ends_an_onward_share_at_once(onward_org: Organisation) -> None:
    share, studies = _patient_share(onward_org)
    client = logged_in_client(share)
    _pass_on(client, studies)
    onward = _ready_onward(share)
    provider = logged_in_client(onward)
    assert provider.get("/r/studies").status_code == 200

    confirm = client.get(f"/r/pass-on/{onward.pk}/end")
    assert confirm.status_code == 200
    assert b'method="post"' in confirm.content
    assert Share.objects.get(pk=onward.pk).is_live()
    assert client.post(f"/r/pass-on/{onward.pk}/end")["Location"] == "/r/studies"
    onward.refresh_from_db()
    assert onward.status == Share.Status.REVOKED
    assert onward.code_hash is None
    assert onward.email == ""
    assert onward.passed_on_by_encrypted == ""
    assert provider.get("/r/studies")["Location"] == "/r/ended"
    share.refresh_from_db()
    assert share.is_live()  # the original goes on
    ended = AuditEvent.objects.get(action=Action.SHARE_ONWARD_END)
    assert ended.detail == {"share": onward.pk, "original": share.pk}


@pytest.mark.django_db
def test_another_shares_onward_share_is_not_found(onward_org: Organisation) -> None:
    share, studies = _patient_share(onward_org)
    _pass_on(logged_in_client(share), studies)
    onward = Share.objects.get(parent=share)
    other, _other_studies = _patient_share(onward_org)
    stranger = logged_in_client(other)
    assert stranger.get(f"/r/pass-on/{onward.pk}/end").status_code == 404
    assert stranger.post(f"/r/pass-on/{onward.pk}/end").status_code == 404
    assert Share.objects.get(pk=onward.pk).is_live()


@pytest.mark.django_db
def test_revoking_the_original_ends_its_onward_shares_in_the_same_transaction(
    onward_org: Organisation,
) -> None:
    share, studies = _patient_share(onward_org)
    client = logged_in_client(share)
    _pass_on(client, studies)
    _pass_on(client, studies[:1])
    onward = list(Share.objects.filter(parent=share))
    revoke(share, SYSTEM)
    for o in onward:
        o.refresh_from_db()
        assert o.status == Share.Status.REVOKED
        assert o.code_hash is None
        assert o.phone == ""
    events = AuditEvent.objects.filter(action=Action.SHARE_ONWARD_REVOKED)
    assert sorted(e.detail["share"] for e in events) == sorted(o.pk for o in onward)
    assert {e.detail["original"] for e in events} == {share.pk}


@pytest.mark.django_db
def test_an_onward_share_keeps_the_images_no_longer_than_the_original(onward_org: Organisation) -> None:
    share, studies = _patient_share(onward_org)
    _pass_on(logged_in_client(share), studies)
    onward = _ready_onward(share)
    assert destroy_due() == 0  # both live: the studies stay
    with time_machine.travel(share.expires_at + timedelta(seconds=1), tick=False):
        assert expire_shares.call() == 2  # the onward share ended with the original, not later
        assert destroy_due() == 2
    onward.refresh_from_db()
    assert onward.status == Share.Status.EXPIRED
    assert not Study.objects.filter(pk__in=[s.pk for s in studies]).exists()


@pytest.mark.django_db
def test_a_revoked_original_takes_its_onward_shares_images_with_it(onward_org: Organisation) -> None:
    share, studies = _patient_share(onward_org)
    _pass_on(logged_in_client(share), studies)
    _ready_onward(share)
    revoke(share, SYSTEM)
    assert destroy_due() == 2  # no onward share holds them any longer
    assert not Study.objects.filter(pk__in=[s.pk for s in studies]).exists()


@pytest.mark.django_db
def test_the_providers_email_and_sms_say_who_passed_it_on_and_from_where(onward_org: Organisation) -> None:
    share, studies = _patient_share(onward_org)
    _pass_on(logged_in_client(share), studies)
    onward = _ready_onward(share)
    code = codes.decrypt_code(onward.code_encrypted)
    assert code is not None
    mail = content.share_email(onward, code)
    for part in (mail.text, mail.html):
        assert PROVIDER["name"] in part
        assert "Hospital A" in part
        assert "Jansen^Anna" not in part
        assert "Jansen, Anna" not in part
        assert PROVIDER["note"] not in part  # the note is read after logging in
        assert "1968" not in part
    assert "passed on" in mail.subject
    assert PROVIDER["name"] not in mail.subject
    sms = content.sms_code_text(onward.organisation.name, "123456", 5, "en", onward=True)
    assert "123456" in sms
    assert "a patient passed on to you through Hospital A" in sms
    assert PROVIDER["name"] not in sms
    assert len(sms) <= content.SMS_MAX_CHARS
    long_name = content.sms_code_text("Ziekenhuis " * 20, "123456", 5, "nl", onward=True)
    assert content.gsm7_length(long_name) <= content.SMS_MAX_CHARS


@pytest.mark.django_db
def test_the_sender_sees_the_onward_shares_on_the_originals_page(
    onward_org: Organisation, sender: Any
) -> None:
    share, studies = _patient_share(onward_org, created_by=sender)
    _pass_on(logged_in_client(share), studies)
    onward = Share.objects.get(parent=share)
    assert onward.created_by_id == sender.pk  # the lock notices reach the sender who shared
    portal = Client()
    portal.force_login(sender)
    page = portal.get(f"/portal/shares/{share.pk}/").content.decode()
    assert f'href="/portal/shares/{onward.pk}/"' in page
    assert "d***@kliniek.example" in page
    assert PROVIDER["email"] not in page
    assert "share.onward.create" in page
    # In the list of shares it is told apart from the sender's own.
    listed = re.sub(r"\s+", " ", portal.get("/portal/shares/", HTTP_ACCEPT_LANGUAGE="en").content.decode())
    rows = {m.group(1): m.group(0) for m in re.finditer(r"<tr>.*?shares/(\d+)/.*?</tr>", listed)}
    assert "Passed on by the patient" in rows[str(onward.pk)]
    assert "Passed on by the patient" not in rows[str(share.pk)]
    revoke(share, Actor(user=sender))
    page = portal.get(f"/portal/shares/{share.pk}/").content.decode()
    assert "share.onward.revoked" in page
    # The onward share's page names the original it was passed on from.
    assert f'href="/portal/shares/{share.pk}/"' in portal.get(f"/portal/shares/{onward.pk}/").content.decode()


@pytest.mark.django_db
def test_the_setting_is_set_with_the_cli(organisation: Organisation) -> None:
    out = io.StringIO()
    call_command("org", "set", "hospital-a", "--onward-sharing", "patients", stdout=out)
    assert "onward sharing patients" in out.getvalue()
    organisation.refresh_from_db()
    assert organisation.onward_sharing == Organisation.OnwardSharing.PATIENTS
    call_command("org", "set", "hospital-a", "--onward-sharing", "off", stdout=io.StringIO())
    organisation.refresh_from_db()
    assert organisation.onward_sharing == Organisation.OnwardSharing.OFF


@pytest.mark.django_db
def test_the_typed_name_moves_to_a_new_key(onward_org: Organisation, settings: Any) -> None:
    share, studies = _patient_share(onward_org)
    _pass_on(logged_in_client(share), studies)
    old = settings.RADSHARE.secret_key
    settings.RADSHARE = config_with(secret_key="a-new-secret-key-" + "x" * 40, old_secret_keys=(old,))
    onward = Share.objects.get(parent=share)
    assert not crypto.is_current(Share.NAME_PURPOSE, onward.passed_on_by_encrypted)
    assert rotate_recipient_names().moved == 1
    settings.RADSHARE = config_with(secret_key="a-new-secret-key-" + "x" * 40, old_secret_keys=())
    onward.refresh_from_db()
    assert onward.passed_on_by == PROVIDER["name"]  # under the new key alone


@pytest.mark.django_db
def test_an_onward_share_counts_its_own_downloads(onward_org: Organisation, radshare_config: Any) -> None:
    """The daily download limit holds per share: the patient's downloads do not use up the provider's, nor the
    other way round."""
    radshare_config(downloads_per_day=1)
    share, studies = _patient_share(onward_org)
    patient = logged_in_client(share)
    _pass_on(patient, studies)
    provider = logged_in_client(_ready_onward(share))
    url, desktop = "/r/download/dicom.zip", {"user-agent": DESKTOP}
    assert provider.get(url, headers=desktop).status_code == 200
    assert provider.get(url, headers=desktop).status_code == 429  # the provider's one of today is used
    assert patient.get(url, headers=desktop).status_code == 200  # the patient's own is still there
    assert patient.get(url, headers=desktop).status_code == 429
