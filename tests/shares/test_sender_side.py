"""What a sender sees around a share (issue 14): notices that cannot reach them, the name on the letter, phone
numbers outside the EU, the share list's recipient, the link's warning, deep links that name a missing study."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.utils import translation

from radshare.delivery import outbox
from radshare.delivery.models import Notification
from radshare.organisations.services import add_pacs_node
from radshare.shares.models import Share
from radshare.shares.phones import normalize_phone
from radshare.shares.services import Actor, revoke
from tests.conftest import free_port
from tests.shares.helpers import ANNA, make_share, make_study

PASSWORD = "correct horse battery staple"
SWISS_MOBILE = "+41 79 123 45 67"


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    with translation.override("en"):
        yield


def _client(user: Any) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


@pytest.fixture
def client_for(sender: Any) -> Any:
    """A logged-in portal client, of ``sender`` unless another user is given."""

    def make(user: Any = None) -> Client:
        return _client(user or sender)

    return make


def _text(response: Any) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


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


# --- notices the sender cannot get -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_dialog_offers_the_opened_notice_only_to_a_sender_with_an_address(
    sender: Any, organisation: Any
) -> None:
    study = make_study(organisation, ANNA)
    assert sender.email == ""
    page = _text(_client(sender).get("/portal/shares/new", {"study": study.pk}))
    assert 'name="notify_on_open"' not in page
    assert "your account has no e-mail address" in page
    assert 'href="/portal/account/"' in page
    # A crafted POST cannot ask for it either.
    _client(sender).post("/portal/shares/new", _form([study], notify_on_open="on"))
    assert Share.objects.get().notify_on_open is False

    sender.email = "alice@hospital.example"
    sender.save()
    page = _text(_client(sender).get("/portal/shares/new", {"study": study.pk}))
    assert 'name="notify_on_open"' in page
    assert "your account has no e-mail address" not in page


@pytest.mark.django_db
def test_a_notice_without_an_address_or_that_failed_shows_on_the_share_page(
    sender: Any, organisation: Any
) -> None:
    share = make_share(organisation, [make_study(organisation, ANNA)], created_by=sender).share
    page = _text(_client(sender).get(f"/portal/shares/{share.pk}/"))
    assert "Notices that did not reach you" not in page

    notice = outbox.queue_locked_notice(share)
    assert notice is not None
    assert (notice.state, notice.last_error) == ("dropped", "no sender address")
    page = _text(_client(sender).get(f"/portal/shares/{share.pk}/"))
    assert "Notices that did not reach you" in page
    assert "Wrong attempts locked the share." in page
    assert "Not sent: your account has no e-mail address." in page
    assert '<a href="/portal/account/">Add it under My account</a>' in page

    sender.email = "alice@hospital.example"
    sender.save()
    failed = outbox.queue_locked_notice(share)
    assert failed is not None
    assert failed.state == "pending"
    Notification.objects.filter(pk=failed.pk).update(state="failed", last_error="SMTP 550")
    page = _text(_client(sender).get(f"/portal/shares/{share.pk}/"))
    assert "Not sent: the e-mail could not be delivered." in page
    assert "SMTP 550" not in page  # the technical reason stays in the log and the audit trail


@pytest.mark.django_db
def test_a_share_made_through_the_api_has_no_sender_to_tell(organisation: Any) -> None:
    share = make_share(organisation, [make_study(organisation, ANNA)]).share
    assert outbox.queue_locked_notice(share) is None
    assert not Notification.objects.filter(kind="locked").exists()


# --- the name on the letter ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_name_on_the_letter_is_stored_encrypted_for_letters_only_and_wiped_at_the_end(
    client_for: Any, organisation: Any
) -> None:
    client = client_for()
    study = make_study(organisation, ANNA)
    page = _text(client.get("/portal/shares/new", {"study": study.pk}))
    assert 'id="letter-field"' in page
    assert "Name on the letter (optional)" in page
    response = client.post(
        "/portal/shares/new",
        _form([study], delivery="letter", email="", recipient_name="  Dr.  K. de Vries "),
    )
    assert response.status_code == 302
    share = Share.objects.get()
    assert share.recipient_name == "Dr. K. de Vries"
    assert "Vries" not in share.recipient_name_encrypted
    assert "Dr. K. de Vries" in _text(client.get(f"/portal/shares/{share.pk}/"))

    by_mail = make_share(organisation, [study], recipient_name="Dr. K. de Vries").share
    assert (by_mail.recipient_name_encrypted, by_mail.recipient_name) == ("", "")

    revoke(share, Actor())
    share.refresh_from_db()
    assert (share.recipient_name_encrypted, share.recipient_name) == ("", "")


# --- phone numbers outside the EU and EEA ----------------------------------------------------------------------


@pytest.mark.parametrize("typed", [SWISS_MOBILE, "+90 532 123 45 67", "+1 650 253 0000"])
def test_a_number_outside_the_eu_and_eea_gets_a_warning(typed: str) -> None:
    assert "outside the EU and EEA" in str(normalize_phone(typed).warning)


@pytest.mark.parametrize(
    "typed", ["+32 470 12 34 56", "+49 151 23456789", "+47 412 34 567", "+358 40 1234567"]
)
def test_numbers_in_the_eu_and_eea_get_none(typed: str) -> None:
    assert normalize_phone(typed).warning == ""


@pytest.mark.django_db
def test_the_dialog_asks_to_confirm_a_number_outside_the_eu(client_for: Any, organisation: Any) -> None:
    client = client_for()
    study = make_study(organisation, ANNA)
    assert "numbers from the EU and EEA only" in _text(client.get("/portal/shares/new", {"study": study.pk}))
    refused = client.post("/portal/shares/new", _form([study], phone=SWISS_MOBILE))
    assert refused.status_code == 422
    text = _text(refused)
    assert "outside the EU and EEA" in text
    assert 'name="phone_warning_accepted"' in text
    assert not Share.objects.exists()
    accepted = client.post(
        "/portal/shares/new", _form([study], phone=SWISS_MOBILE, phone_warning_accepted="on")
    )
    assert accepted.status_code == 302
    assert Share.objects.get().phone == "+41791234567"


# --- the shares list -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_share_list_tells_recipients_apart_without_showing_their_details(
    client_for: Any, organisation: Any
) -> None:
    study = make_study(organisation, ANNA)
    make_share(organisation, [study], email="anna@example.org", phone="0612345678")
    make_share(organisation, [study], email="bert@example.nl", phone="0687654332")
    text = _text(client_for().get("/portal/shares/"))
    assert "a***@example.org" in text
    assert "b***@example.nl" in text
    assert "••••••••••78" in text
    assert "••••••••••32" in text
    for secret in ("anna@", "bert@", "612345678", "687654332"):
        assert secret not in text
    assert "phone number ending in 78" in text  # what a screen reader says instead of the dots


# --- the link on the share's page ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_link_warns_that_opening_it_here_ends_the_portal_session(
    client_for: Any, organisation: Any
) -> None:
    share = make_share(organisation, [make_study(organisation, ANNA)], delivery="url", email="").share
    html = client_for().get(f"/portal/shares/{share.pk}/").content.decode()
    note = re.search(r'<p class="alert" id="link-note">(.*?)</p>', html, re.S)
    assert note is not None
    assert "ends your portal session" in note.group(1)
    anchor = re.search(r'<a href="(http[^"]+)"([^>]*)>Open the link in a new tab</a>', html)
    assert anchor is not None
    assert "?code=" in anchor.group(1)
    attributes = anchor.group(2)
    assert 'target="_blank"' in attributes
    assert 'rel="noopener noreferrer"' in attributes
    assert 'aria-describedby="link-note"' in attributes
    assert "ends your portal session" in attributes  # the title says it too
    assert "radshare/copy.js" in html


# --- deep links ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_deep_link_to_an_unknown_study_says_which_uid_was_not_found(
    client_for: Any, organisation: Any
) -> None:
    client = client_for()
    response = client.get("/portal/shares/new", {"patient_id": "S1", "study_uid": "1.2.3.999"}, follow=True)
    assert response.redirect_chain[-1][0] == "/portal/"
    assert "Study not found: 1.2.3.999." in _text(response)
    # Beside a study that is here: the dialog opens, and names the one left out.
    study = make_study(organisation, ANNA)
    page = _text(client.get("/portal/shares/new", {"study_uid": [study.study_instance_uid, "1.2.3.998"]}))
    assert "This study was not found" in page
    assert "<code>1.2.3.998</code>" in page


@pytest.mark.django_db
def test_a_deep_link_with_something_that_is_no_uid_is_not_an_error(
    client_for: Any, organisation: Any
) -> None:
    add_pacs_node(organisation, "PACS1", host="127.0.0.1", port=free_port())  # searched for the UID
    response = client_for().get("/portal/shares/new", {"study_uid": "not-a-uid"}, follow=True)
    assert response.status_code == 200
    assert "Study not found: not-a-uid." in _text(response)


@pytest.mark.django_db
def test_the_name_on_the_letter_moves_to_a_new_key(organisation: Any, settings: Any) -> None:
    from radshare.core import crypto
    from radshare.shares.rotation import rotate_recipient_names
    from tests.conftest import config_with

    share = make_share(
        organisation,
        [make_study(organisation, ANNA)],
        delivery="letter",
        email="",
        recipient_name="K. de Vries",
    ).share
    old = settings.RADSHARE.secret_key
    settings.RADSHARE = config_with(secret_key="a-new-secret-key-" + "x" * 40, old_secret_keys=(old,))
    share.refresh_from_db()
    assert share.recipient_name == "K. de Vries"  # still read with the old key
    assert not crypto.is_current(Share.NAME_PURPOSE, share.recipient_name_encrypted)
    assert rotate_recipient_names(apply=False).moved == 1
    assert rotate_recipient_names().moved == 1
    settings.RADSHARE = config_with(secret_key="a-new-secret-key-" + "x" * 40, old_secret_keys=())
    share.refresh_from_db()
    assert share.recipient_name == "K. de Vries"  # under the new key alone
