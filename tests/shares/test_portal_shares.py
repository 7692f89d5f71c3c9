"""The share dialog, the shares overview and a share's page, through HTTP as a logged-in sender."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone, translation

from radshare.audit.models import AuditEvent
from radshare.organisations.services import create_sender
from radshare.shares import codes
from radshare.shares.models import Share
from radshare.shares.services import Actor, revoke
from tests.shares.helpers import ANNA, NO_BIRTH, PIET, make_share, make_study


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    with translation.override("en"):
        yield


@pytest.fixture
def client(sender: Any) -> Client:
    c = Client(HTTP_ACCEPT_LANGUAGE="en")
    c.force_login(sender)
    return c


def _form(studies: list[Any], **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "study": [s.pk for s in studies],
        "recipient_type": "patient",
        "delivery": "email",
        "email": "anna@example.org",
        "phone": "0612345678",
        "language": "nl",
        "reason": "",
    }
    data.update(overrides)
    return data


def _text(response: Any) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


@pytest.mark.django_db
def test_the_dialog_lists_the_selected_studies_with_the_s22_columns(
    client: Client, organisation: Any
) -> None:
    ct, cr = make_study(organisation, ANNA), make_study(organisation, ANNA, kind="cr")
    response = client.get("/portal/shares/new", {"study": [ct.pk, cr.pk]})
    assert response.status_code == 200
    text = _text(response)
    for column in ("Type", "Patient", "Date of birth", "Study", "Study date", "Size"):
        assert f">{column}</th>" in text
    assert "Jansen, Anna" in text or "Jansen^Anna" in text or "Anna Jansen" in text
    assert "14-03-1968" in text
    assert "CR" in text
    assert "CT" in text
    assert "The link works 14 days" in text
    assert 'name="consent_confirmed"' in text  # shown, and hidden by the script for a patient
    assert 'name="birth_date"' not in text  # the images carry a real one


@pytest.mark.django_db
def test_sharing_from_the_dialog_makes_the_share_and_opens_its_page(
    client: Client, organisation: Any
) -> None:
    study = make_study(organisation, ANNA)
    response = client.post("/portal/shares/new", _form([study], phone="0612345678"))
    assert response.status_code == 302
    share = Share.objects.get()
    assert response["Location"] == f"/portal/shares/{share.pk}/"
    assert (share.phone, share.email, share.recipient_type, share.delivery) == (
        "+31612345678",
        "anna@example.org",
        "patient",
        "email",
    )
    assert share.created_by is not None
    assert share.created_by.username == "alice"
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert "The share has been made." in _text(page)


@pytest.mark.django_db
def test_studies_of_two_patients_are_refused_on_the_server(client: Client, organisation: Any) -> None:
    anna, piet = make_study(organisation, ANNA), make_study(organisation, PIET)
    shown = client.get("/portal/shares/new", {"study": [anna.pk, piet.pk]})
    assert shown.status_code == 422
    assert "more than one patient" in _text(shown)
    assert 'name="phone"' not in _text(shown)  # no form to fill in
    posted = client.post("/portal/shares/new", _form([anna, piet]))
    assert posted.status_code == 422
    assert Share.objects.count() == 0


@pytest.mark.django_db
def test_the_browser_marks_each_study_with_its_patient_for_the_client_side_check(
    client: Client, organisation: Any
) -> None:
    anna, piet = make_study(organisation, ANNA), make_study(organisation, PIET)
    text = _text(client.get("/portal/"))
    assert 'form="share-select"' in text
    assert f'value="{anna.pk}" form="share-select" data-patient="{anna.patient_id}"' in text
    assert f'value="{piet.pk}" form="share-select" data-patient="{piet.patient_id}"' in text
    assert anna.patient_id != piet.patient_id
    assert "more than one patient" in text  # the message the script shows
    assert "radshare/share.js" in text


@pytest.mark.django_db
def test_a_missing_birth_date_must_be_confirmed_in_the_dialog(client: Client, organisation: Any) -> None:
    study = make_study(organisation, NO_BIRTH)
    assert 'name="birth_date"' in _text(client.get("/portal/shares/new", {"study": study.pk}))
    missing = client.post("/portal/shares/new", _form([study]))
    assert missing.status_code == 422
    assert Share.objects.count() == 0
    ok = client.post(
        "/portal/shares/new", _form([study], birth_date="02-05-1971", birth_date_again="2-5-1971")
    )
    assert ok.status_code == 302
    assert str(Share.objects.get().confirmed_birth_date) == "1971-05-02"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("typed", "stored"),
    [("0612345678", "+31612345678"), ("612345678", "+31612345678"), ("+44 7700 900123", "+447700900123")],
)
def test_phone_numbers_are_stored_in_e164(client: Client, organisation: Any, typed: str, stored: str) -> None:
    study = make_study(organisation, ANNA)
    # +44 7700 900xxx is the UK's range for fiction: usable, but the sender is asked to check it.
    response = client.post("/portal/shares/new", _form([study], phone=typed, phone_warning_accepted="on"))
    assert response.status_code == 302
    assert Share.objects.get().phone == stored


@pytest.mark.django_db
def test_an_invalid_number_is_refused_on_its_field(client: Client, organisation: Any) -> None:
    study = make_study(organisation, ANNA)
    response = client.post("/portal/shares/new", _form([study], phone="12345"))
    assert response.status_code == 422
    assert "not a valid Dutch number" in _text(response)
    assert Share.objects.count() == 0


@pytest.mark.django_db
def test_a_landline_is_warned_about_and_needs_the_senders_confirmation(
    client: Client, organisation: Any
) -> None:
    study = make_study(organisation, ANNA)
    warned = client.post("/portal/shares/new", _form([study], phone="020 123 4567"))
    assert warned.status_code == 422
    assert "may not receive SMS" in _text(warned)
    assert 'name="phone_warning_accepted"' in _text(warned)
    assert Share.objects.count() == 0
    accepted = client.post(
        "/portal/shares/new", _form([study], phone="020 123 4567", phone_warning_accepted="on")
    )
    assert accepted.status_code == 302
    assert Share.objects.get().phone == "+31201234567"


@pytest.mark.django_db
def test_a_care_provider_needs_the_consent_checkbox(client: Client, organisation: Any) -> None:
    study = make_study(organisation, ANNA)
    refused = client.post("/portal/shares/new", _form([study], recipient_type="care_provider"))
    assert refused.status_code == 422
    assert "Confirm that the patient consents" in _text(refused)
    assert Share.objects.count() == 0
    ok = client.post(
        "/portal/shares/new", _form([study], recipient_type="care_provider", consent_confirmed="on")
    )
    assert ok.status_code == 302
    assert Share.objects.get().consent_confirmed


@pytest.mark.django_db
def test_email_delivery_needs_a_valid_address(client: Client, organisation: Any) -> None:
    study = make_study(organisation, ANNA)
    response = client.post("/portal/shares/new", _form([study], email="not-an-address"))
    assert response.status_code == 422
    assert "valid e-mail address" in _text(response)
    assert client.post("/portal/shares/new", _form([study], email="", delivery="letter")).status_code == 302


@pytest.mark.django_db
def test_show_link_delivery_shows_the_link_its_qr_code_and_a_copy_button(
    client: Client, organisation: Any
) -> None:
    study = make_study(organisation, ANNA)
    response = client.post("/portal/shares/new", _form([study], delivery="url", email=""), follow=True)
    text = _text(response)
    match = re.search(r'id="share-link" type="text" readonly value="([^"]+)"', text)
    assert match is not None
    code = codes.normalize_code(match.group(1).split("?code=")[1])
    assert code is not None
    assert codes.code_hash(code) == Share.objects.get().code_hash
    assert "<svg" in text
    assert 'class="qr"' in text
    assert 'data-copy="share-link"' in text


@pytest.mark.django_db
def test_another_organisations_study_in_the_selection_is_a_404(
    client: Client, organisation: Any, other_organisation: Any
) -> None:
    theirs = make_study(other_organisation, ANNA)
    assert client.get("/portal/shares/new", {"study": theirs.pk}).status_code == 404
    assert client.post("/portal/shares/new", _form([theirs])).status_code == 404
    assert client.get("/portal/shares/new", {"study": "x"}).status_code == 404
    assert Share.objects.count() == 0
    assert AuditEvent.objects.filter(action="portal.share.new", outcome="denied").exists()


@pytest.mark.django_db
def test_the_overview_lists_searches_and_filters(client: Client, organisation: Any) -> None:
    anna = make_share(organisation, [make_study(organisation, ANNA)]).share
    piet = make_share(organisation, [make_study(organisation, PIET)], delivery="letter", email="").share
    revoke(piet, Actor())

    def ids(**query: str) -> set[int]:
        page = client.get("/portal/shares/", query)
        assert page.status_code == 200
        return {int(pk) for pk in re.findall(r'href="/portal/shares/(\d+)/"', page.content.decode())}

    assert ids() == {anna.pk, piet.pk}
    assert ids(q="jansen") == {anna.pk}
    assert ids(q="S2") == {piet.pk}
    assert ids(status="revoked") == {piet.pk}
    assert ids(status="live") == {anna.pk}
    assert ids(delivery="letter") == {piet.pk}
    assert ids(recipient_type="care_provider") == set()
    assert ids(status="nonsense") == set()  # a bad filter shows nothing, not everything


@pytest.mark.django_db
def test_the_share_page_shows_its_audit_trail(client: Client, organisation: Any, sender: Any) -> None:
    share = make_share(organisation, [make_study(organisation, ANNA)], created_by=sender).share
    text = _text(client.get(f"/portal/shares/{share.pk}/"))
    assert "share.create" in text
    assert "portal.share.view" in text  # this very look is recorded too
    assert "alice" in text


@pytest.mark.django_db
def test_revoke_asks_first_then_ends_the_share_and_leaves_a_tombstone(
    client: Client, organisation: Any
) -> None:
    share = make_share(organisation, [make_study(organisation, ANNA)]).share
    confirm = client.get(f"/portal/shares/{share.pk}/revoke")
    assert confirm.status_code == 200
    assert "cannot be undone" in _text(confirm)
    share.refresh_from_db()
    assert share.status == "preparing"  # a GET changes nothing
    done = client.post(f"/portal/shares/{share.pk}/revoke", follow=True)
    assert "no longer works" in _text(done)
    share.refresh_from_db()
    assert share.status == "revoked"
    assert (share.code_hash, share.code_encrypted, share.email, share.phone) == (None, "", "", "")
    assert share.share_studies.count() == 1
    assert share.patient_id is not None
    assert share.revoked_by is not None
    assert share.revoked_by.username == "alice"
    assert AuditEvent.objects.filter(action="share.revoke", detail__share=share.pk).exists()
    again = client.post(f"/portal/shares/{share.pk}/revoke", follow=True)
    assert "This share has ended." in _text(again)


@pytest.mark.django_db
def test_unlock_clears_the_lock(client: Client, organisation: Any) -> None:
    share = make_share(organisation, [make_study(organisation, ANNA)]).share
    share.locked_until = timezone.now() + timedelta(hours=1)
    share.save()
    assert "Unlock" in _text(client.get(f"/portal/shares/{share.pk}/"))
    client.post(f"/portal/shares/{share.pk}/unlock")
    share.refresh_from_db()
    assert share.locked_until is None
    assert AuditEvent.objects.filter(action="share.unlock", detail__share=share.pk).exists()
    assert "not locked" in _text(client.post(f"/portal/shares/{share.pk}/unlock", follow=True))


@pytest.mark.django_db
def test_a_failed_share_shows_its_reason_and_can_be_retried(client: Client, organisation: Any) -> None:
    share = make_share(organisation, [make_study(organisation, ANNA)]).share
    Share.objects.filter(pk=share.pk).update(status="failed", status_reason="preparation_timeout")
    text = _text(client.get(f"/portal/shares/{share.pk}/"))
    assert "not ready within 24 hours" in text
    assert "Try again" in text
    client.post(f"/portal/shares/{share.pk}/retry")
    share.refresh_from_db()
    assert (share.status, share.status_reason) == ("preparing", "")


@pytest.mark.django_db
def test_share_again_prefills_the_studies_and_recipient_type(client: Client, organisation: Any) -> None:
    study = make_study(organisation, ANNA)
    old = make_share(organisation, [study], recipient_type="care_provider", consent_confirmed=True).share
    revoke(old, Actor())
    page = _text(client.get(f"/portal/shares/{old.pk}/"))
    match = re.search(r'href="(/portal/shares/new\?[^"]+)">Share again', page)
    assert match is not None
    dialog = client.get(match.group(1).replace("&amp;", "&"))
    text = _text(dialog)
    assert dialog.status_code == 200
    assert f'name="study" value="{study.pk}"' in text
    assert re.search(r'value="care_provider"[^>]*checked', text)
    assert "anna@example.org" not in text  # contact details are typed again


@pytest.mark.django_db
def test_organisation_b_gets_404_for_every_share_page(organisation: Any, other_organisation: Any) -> None:
    share = make_share(organisation, [make_study(organisation, ANNA)]).share
    bob = create_sender(other_organisation, "bob", "correct horse battery staple")
    c = Client()
    c.force_login(bob)
    for method, path in [
        ("get", ""),
        ("get", "revoke"),
        ("post", "revoke"),
        ("post", "resend"),
        ("post", "unlock"),
        ("post", "retry"),
        ("get", "letter"),
    ]:
        assert getattr(c, method)(f"/portal/shares/{share.pk}/{path}").status_code == 404, path
    assert share.pk not in {s.pk for s in Share.objects.filter(organisation=other_organisation)}
    assert f"/portal/shares/{share.pk}/" not in c.get("/portal/shares/").content.decode()
    share.refresh_from_db()
    assert share.status == "preparing"


@pytest.mark.django_db
def test_share_pages_need_a_login(organisation: Any) -> None:
    share = make_share(organisation, [make_study(organisation, ANNA)]).share
    for path in ("/portal/shares/", f"/portal/shares/{share.pk}/", "/portal/shares/new"):
        response = Client().get(path)
        assert response.status_code == 302
        assert "/login" in response["Location"]
