"""The recipient's dead ends (docs/requirements.md S4.8-S4.10, S4.12; docs/security.md A1, A7): no download
action on a phone, a share that ends during the session, the page for a code that is not valid, the share's
language, and a report that is not counted as an image."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone, translation

from radshare.imaging.reports import attach_pdf_report
from radshare.recipients import session
from radshare.shares.models import Share
from radshare.shares.services import Actor, revoke
from radshare.studies.models import Study
from tests.recipients.conftest import Recipient, log_in, logged_in_client, ready_share, to_sms_step
from tests.shares.helpers import ANNA, make_study

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1"
)
WHY = "Downloading works on a computer (laptop or desktop), not on a phone or tablet."


def _text(response: Any) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def _html_lang(response: Any) -> str:
    match = re.search(r'<html lang="([a-z]+)">', response.content.decode())
    assert match is not None
    return match[1]


# --- 1. phones: no download action anywhere, the reason instead ---------------------------------------------


@pytest.mark.django_db
def test_on_a_phone_no_page_offers_a_download_only_why(recipient: Recipient, radshare_config: Any) -> None:
    study = recipient.studies[0]
    phone = logged_in_client(recipient.share)
    pages = ["/r/studies", f"/r/studies/{study.pk}/", "/r/download", f"/r/download?study={study.pk}"]
    for url in pages:
        response = phone.get(url, headers={"user-agent": IPHONE})
        assert response.status_code == 200, url
        html = response.content.decode()
        assert 'href="/r/download' not in html, url  # neither the dialog nor a ZIP
        assert '.zip"' not in html, url
        assert ("open the link on a computer" in html) or (WHY in _text(response)), url
    assert WHY in _text(phone.get(f"/r/studies/{study.pk}/", headers={"user-agent": IPHONE}))
    assert "download these images until" not in _text(phone.get("/r/studies", headers={"user-agent": IPHONE}))

    radshare_config(download_on_mobile=True)  # the operator allows phones: the actions come back
    viewer = phone.get(f"/r/studies/{study.pk}/", headers={"user-agent": IPHONE}).content.decode()
    assert f'href="/r/download?study={study.pk}"' in viewer
    assert WHY not in viewer
    dialog = phone.get(f"/r/download?study={study.pk}", headers={"user-agent": IPHONE}).content.decode()
    assert 'href="/r/download"' in dialog


@pytest.mark.django_db
def test_on_a_computer_the_viewer_offers_the_download(recipient: Recipient) -> None:
    study = recipient.studies[0]
    html = recipient.client.get(f"/r/studies/{study.pk}/").content.decode()
    assert f'href="/r/download?study={study.pk}"' in html
    assert WHY not in html


# --- 2. the share ends during the session -------------------------------------------------------------------


def _end(share: Share, how: str) -> None:
    if how == "revoked":
        revoke(share, Actor())
    else:
        Share.objects.filter(pk=share.pk).update(expires_at=timezone.now() - timedelta(seconds=1))


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["revoked", "expired"])
def test_a_share_that_ends_while_logged_in_says_so_and_whom_to_ask(recipient: Recipient, how: str) -> None:
    client, study = recipient.client, recipient.studies[0]
    organisation = recipient.share.organisation
    organisation.contact_email = "radiologie@hospital.example"
    organisation.contact_url = "https://hospital.example/radiologie"
    organisation.save()
    assert client.get(f"/r/studies/{study.pk}/").status_code == 200
    _end(recipient.share, how)

    for url in (
        f"/r/studies/{study.pk}/",
        "/r/studies",
        "/r/download",
        f"/r/studies/{study.pk}/download/dicom.zip",
    ):
        response = client.get(url)
        assert (response.status_code, response["Location"]) == (302, "/r/ended"), url
    page = client.get("/r/ended")
    assert page.status_code == 200
    text = _text(page)
    assert "This link no longer works" in text
    assert "can also end it earlier" in text  # expired or withdrawn: not told which
    assert "Ask Hospital A for a new link" in text
    for contact in ("+31 20 123 4567", "radiologie@hospital.example", "https://hospital.example/radiologie"):
        assert contact in text
    for word in ("withdrawn", "revoked", "expired"):
        assert word not in text
    assert text.count("<h1") == 1
    # The session gives nothing any more; the page stays until the session's idle time is over.
    assert session.KEY not in client.session
    assert client.get("/r/ended").status_code == 200


@pytest.mark.django_db
def test_images_and_scripts_get_a_status_not_a_redirect(recipient: Recipient) -> None:
    client, study = recipient.client, recipient.studies[0]
    html = client.get(f"/r/studies/{study.pk}/").content.decode()
    image = re.findall(r'src="(/r/images/[^"]+)"', html)[0]
    assert client.get(image, headers={"sec-fetch-mode": "no-cors"}).status_code == 200
    revoke(recipient.share, Actor())
    for headers in (
        {"sec-fetch-mode": "no-cors"},
        {"sec-fetch-mode": "cors"},
        {"accept": "application/json"},
    ):
        response = client.get(image, headers=headers)
        assert response.status_code == 410, headers
        assert "Location" not in response
        assert json.loads(response.content) == {"error": "this link no longer works"}
    # A page load still goes to the page (a reload of the viewer, as viewer.js does on a failed image).
    assert (
        client.get(f"/r/studies/{study.pk}/", headers={"sec-fetch-mode": "navigate"})["Location"]
        == "/r/ended"
    )
    # Without any session: 401 for an image, the start page for a page.
    stranger = Client()
    assert stranger.get(image, headers={"sec-fetch-mode": "no-cors"}).status_code == 401
    assert stranger.get(f"/r/studies/{study.pk}/")["Location"] == "/"


@pytest.mark.django_db
def test_a_share_that_ends_during_the_login_steps_says_so_too(organisation: Any, sms_file: Path) -> None:
    share, code = ready_share(organisation, [make_study(organisation, ANNA)], delivery="url", email="")
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    to_sms_step(client, code)
    revoke(share, Actor())
    assert client.get("/r/sms-code")["Location"] == "/r/ended"
    assert "Ask Hospital A for a new link" in _text(client.get("/r/ended"))


@pytest.mark.django_db
def test_the_session_cookie_outlives_the_share_only_to_say_it_ended(
    organisation: Any, sms_file: Path
) -> None:
    share, code = ready_share(organisation, [make_study(organisation, ANNA)], delivery="url", email="")
    Share.objects.filter(pk=share.pk).update(expires_at=timezone.now() + timedelta(minutes=2))
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    log_in(client, code, sms_file)
    assert client.get("/r/studies").status_code == 200
    # The cookie is not cut at the share's end (then the next page could only ask for a code) ...
    assert client.session.get_expiry_age() > 25 * 60
    # ... but the share's end is checked on every request (A7).
    Share.objects.filter(pk=share.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client.get("/r/studies")["Location"] == "/r/ended"


@pytest.mark.django_db
def test_a_logged_in_recipient_whose_share_gets_locked_sees_the_lock(recipient: Recipient) -> None:
    Share.objects.filter(pk=recipient.share.pk).update(locked_until=timezone.now() + timedelta(hours=1))
    assert recipient.client.get("/r/studies")["Location"] == "/r/locked"
    assert "locked" in _text(recipient.client.get("/r/locked"))


@pytest.mark.django_db
def test_the_ended_page_without_an_ended_share_is_the_start_page() -> None:
    assert Client().get("/r/ended")["Location"] == "/"


TIMED_OUT = "you were logged out after 30 minutes without activity"


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["idle", "session gone"])
def test_a_session_that_timed_out_says_so_once_on_the_start_page(
    organisation: Any, sms_file: Path, how: str
) -> None:
    _, code = ready_share(organisation, [make_study(organisation, ANNA)], delivery="url", email="")
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    log_in(client, code, sms_file)
    assert TIMED_OUT not in _text(client.get("/"))  # logged in: the start page goes on to the studies
    if how == "idle":  # the session is still stored, but its last step was 31 minutes ago
        stored = client.session
        stored[session.KEY] = {**stored[session.KEY], "seen": timezone.now().timestamp() - 31 * 60}
        stored.save()
    else:  # the browser dropped the session cookie when it expired
        del client.cookies[settings.SESSION_COOKIE_NAME]
    assert client.get("/r/studies")["Location"] == "/"
    page = client.get("/")
    assert TIMED_OUT in _text(page)
    assert page.cookies[session.WAS_IN]["max-age"] == 0  # said once
    assert TIMED_OUT not in _text(client.get("/"))


@pytest.mark.django_db
def test_logging_out_or_a_share_that_ended_is_not_called_a_timeout(organisation: Any, sms_file: Path) -> None:
    share, code = ready_share(organisation, [make_study(organisation, ANNA)], delivery="url", email="")
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    log_in(client, code, sms_file)
    text = _text(client.post("/r/logout", follow=True))
    assert "You are logged out." in text
    assert TIMED_OUT not in text
    assert TIMED_OUT not in _text(client.get("/"))

    log_in(client, code, sms_file)
    revoke(share, Actor())
    assert client.get("/r/studies")["Location"] == "/r/ended"
    client.get("/r/ended")
    assert TIMED_OUT not in _text(client.get("/"))
    assert TIMED_OUT not in _text(Client().get("/"))  # a browser that was never logged in


# --- 3. the page for a code that is not valid ---------------------------------------------------------------


@pytest.mark.django_db
def test_the_invalid_link_page_says_what_to_do_next_and_names_no_one(recipient: Recipient) -> None:
    revoke(recipient.share, Actor())
    pages = set()
    for code in ("ABCD-EFGH-JKMN", recipient.code):
        client = Client(HTTP_ACCEPT_LANGUAGE="en")
        assert client.get("/", {"code": code})["Location"] == "/r/invalid"
        pages.add(re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", _text(client.get("/r/invalid"))))
    assert len(pages) == 1  # unknown and revoked alike (A1)
    text = pages.pop()
    assert "What you can do" in text
    assert "Check it character by character" in text
    assert "Ask the organisation that sent you the link" in text
    assert "The letter with the link names it at the top" in text
    assert "Hospital A" not in text
    assert "+31 20" not in text


# --- 4. the share's language ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("share_language", "browser"), [("en", "nl"), ("nl", "en")])
def test_pages_follow_the_shares_language_once_the_code_is_known(
    organisation: Any, sms_file: Path, share_language: str, browser: str
) -> None:
    share, code = ready_share(
        organisation, [make_study(organisation, ANNA)], delivery="url", email="", language=share_language
    )
    client = Client(HTTP_ACCEPT_LANGUAGE=browser)
    assert _html_lang(client.get("/")) == browser  # before the code: the browser's language
    client.get("/", {"code": code})
    response = client.get("/r/birth-date")
    assert _html_lang(response) == share_language
    assert response["Content-Language"] == share_language
    assert _html_lang(client.get("/r/terms")) == share_language

    # The language switch wins, for the rest of the visit.
    assert client.post("/i18n/setlang/", {"language": browser, "next": "/r/birth-date"}).status_code == 302
    assert _html_lang(client.get("/r/birth-date")) == browser

    # The page that says the share ended speaks the share's language too.
    other = Client(HTTP_ACCEPT_LANGUAGE=browser)
    other.get("/", {"code": code})
    revoke(share, Actor())
    assert other.get("/r/birth-date")["Location"] == "/r/ended"
    assert _html_lang(other.get("/r/ended")) == share_language


@pytest.mark.django_db
def test_a_language_chosen_before_the_code_is_kept(organisation: Any, sms_file: Path) -> None:
    _share, code = ready_share(
        organisation, [make_study(organisation, ANNA)], delivery="url", email="", language="nl"
    )
    client = Client(HTTP_ACCEPT_LANGUAGE="nl")
    client.post("/i18n/setlang/", {"language": "en", "next": "/"})
    client.get("/", {"code": code})
    assert _html_lang(client.get("/r/birth-date")) == "en"
    assert settings.LANGUAGE_COOKIE_NAME in client.cookies


# --- 5. a report is not an image ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_report_is_counted_apart_from_the_images(organisation: Any, sender: Any) -> None:
    ct = make_study(organisation, ANNA)  # two images
    attach_pdf_report(ct, b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", title="Verslag CT")
    cr = make_study(organisation, ANNA, kind="cr")
    share, _ = ready_share(organisation, [ct, cr], delivery="url", email="", created_by=sender)
    ct = Study.objects.get(pk=ct.pk)
    assert (ct.number_of_instances, ct.number_of_reports, ct.number_of_images) == (3, 1, 2)
    assert ct.series.get(modality="DOC").number_of_reports == 1

    text = _text(logged_in_client(share).get("/r/studies"))
    assert "2 images and 1 report" in text
    assert "3 images" not in text
    assert "<dd>1 image</dd>" in text  # the CR: no report

    portal = Client(HTTP_ACCEPT_LANGUAGE="en")
    portal.force_login(sender)
    with translation.override("en"):
        for page in (f"/portal/shares/{share.pk}/", f"/portal/studies/{ct.pk}/"):
            text = _text(portal.get(page))
            assert "2 images and 1 report" in text, page
            assert "3 images" not in text, page
