"""The recipient's way in through HTTP: link or typed code, terms + date of birth, the SMS code from the file
backend, lockouts, throttling and the session's limits (docs/security.md A1-A8)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from radshare.audit.models import AuditEvent
from radshare.delivery.models import Notification
from radshare.recipients import access, session
from radshare.recipients.models import OneTimeCode
from radshare.shares import codes
from radshare.shares.models import Share
from radshare.shares.services import Actor, revoke, unlock
from tests.recipients.conftest import BIRTH, log_in, ready_share, sms_codes, to_sms_step
from tests.shares.helpers import ANNA, make_share, make_study


@pytest.fixture
def shared(organisation: Any, sender: Any, sms_file: Path) -> tuple[Share, str]:
    sender.email = "alice@hospital.example"
    sender.save()
    return ready_share(
        organisation, [make_study(organisation, ANNA)], created_by=sender, delivery="url", email=""
    )


def _client() -> Client:
    return Client(HTTP_ACCEPT_LANGUAGE="en")


def _text(response: Any) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


@pytest.mark.django_db
def test_the_link_opens_a_session_and_the_code_leaves_the_url(shared: tuple[Share, str]) -> None:
    share, code = shared
    client = _client()
    response = client.get("/", {"code": codes.format_code(code)})
    assert response.status_code == 302
    assert response["Location"] == "/r/birth-date"
    assert "code" not in response["Location"]
    page = client.get("/r/birth-date")
    assert page.status_code == 200
    assert page["Referrer-Policy"] == "no-referrer"
    text = _text(page)
    assert text.count("<h1") == 1
    assert "Step 1" in text
    assert '<label for="id_birth_date">Date of birth of the patient</label>' in text
    assert 'type="date"' not in text  # plain text, read as day-month-year whatever the browser's locale
    assert 'inputmode="numeric"' in text
    assert AuditEvent.objects.filter(
        action="recipient.code", outcome="success", detail__share=share.pk
    ).exists()
    assert not AuditEvent.objects.filter(detail__icontains=code).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("typing", ["lower", "no_dashes", "look_alikes"])
def test_a_typed_code_is_read_forgivingly(shared: tuple[Share, str], typing: str) -> None:
    _, code = shared
    typed = {
        "lower": codes.format_code(code).lower(),
        "no_dashes": code,
        "look_alikes": code.replace("0", "O").replace("1", "l"),
    }[typing]
    response = _client().post("/", {"code": typed})
    assert response["Location"] == "/r/birth-date"


@pytest.mark.django_db
def test_unknown_expired_and_revoked_codes_get_the_same_neutral_page(
    organisation: Any, shared: tuple[Share, str]
) -> None:
    expired, expired_code = ready_share(
        organisation, [make_study(organisation, ANNA)], delivery="url", email=""
    )
    Share.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    revoked, revoked_code = ready_share(
        organisation, [make_study(organisation, ANNA)], delivery="url", email=""
    )
    revoke(revoked, Actor())
    answers = set()
    for code in ("ABCD-EFGH-JKMN", expired_code, revoked_code):
        response = _client().get("/", {"code": code})
        answers.add((response.status_code, response["Location"]))
    assert answers == {(302, "/r/invalid")}
    page = _text(_client().get("/r/invalid"))
    assert "not valid (anymore)" in page
    assert "14 days" in page


@pytest.mark.django_db
def test_a_share_still_being_prepared_says_so(organisation: Any, sms_file: Path) -> None:
    new = make_share(organisation, [make_study(organisation, ANNA)], delivery="url", email="", language="en")
    client = _client()
    client.get("/", {"code": new.code})
    response = client.get("/r/birth-date")
    assert response["Location"] == "/r/preparing"
    assert "being prepared" in _text(client.get("/r/preparing"))


@pytest.mark.django_db
def test_birth_date_then_sms_code_then_the_studies(shared: tuple[Share, str], sms_file: Path) -> None:
    share, code = shared
    client = _client()
    to_sms_step(client, code)
    [sms] = [json.loads(line) for line in sms_file.read_text().splitlines()]
    assert sms["to"] == "+31612345678"
    assert "Hospital A" in sms["text"]
    page = _text(client.get("/r/sms-code"))
    assert "••••••••••78" in page
    assert "612345678" not in page
    assert "Step 2" in page
    response = client.post("/r/sms-code", {"code": sms_codes(sms_file)[-1]})
    assert response["Location"] == "/r/studies"
    share.refresh_from_db()
    assert share.status == "opened"
    assert AuditEvent.objects.filter(action="recipient.login", detail__method="link+dob+sms").exists()
    listing = client.get("/r/studies")
    assert listing.status_code == 200
    assert listing["Cache-Control"] == "no-store" or "no-store" in listing["Cache-Control"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("31-02-1968", "does not exist"),
        ("14-03-2999", "in the future"),
        ("14/03", "the day, the month and the year"),
        ("", "Enter the date of birth"),
    ],
)
def test_impossible_dates_get_a_clear_message(shared: tuple[Share, str], typed: str, message: str) -> None:
    share, code = shared
    client = _client()
    client.get("/", {"code": code})
    response = client.post("/r/birth-date", {"accept_terms": "on", "birth_date": typed})
    assert response.status_code == 422
    assert message in _text(response)
    share.refresh_from_db()
    assert share.birth_date_failures == 0  # not a wrong date: a mistyped one


@pytest.mark.django_db
@pytest.mark.parametrize("typed", ["14-03-1968", "1968-03-14", "14/3/1968", "14.03.1968", "14031968"])
def test_the_date_is_accepted_as_typed_or_picked(shared: tuple[Share, str], typed: str) -> None:
    _, code = shared
    client = _client()
    client.get("/", {"code": code})
    assert (
        client.post("/r/birth-date", {"accept_terms": "on", "birth_date": typed})["Location"] == "/r/sms-code"
    )


@pytest.mark.django_db
def test_the_terms_must_be_accepted(shared: tuple[Share, str], sms_file: Path) -> None:
    _, code = shared
    client = _client()
    client.get("/", {"code": code})
    response = client.post("/r/birth-date", {"birth_date": BIRTH})
    assert response.status_code == 422
    assert "Accept the terms of use" in _text(response)
    assert sms_codes(sms_file) == []  # no SMS before the date is right (A3)
    assert client.get("/r/terms").status_code == 200


@pytest.mark.django_db
def test_wrong_dates_lock_for_an_hour_then_until_the_sender_unlocks(
    shared: tuple[Share, str], sms_file: Path
) -> None:
    share, code = shared
    client = _client()
    client.get("/", {"code": code})
    for lock in (1, 2, 3):
        for attempt in range(access.BIRTH_DATE_TRIES):
            response = client.post("/r/birth-date", {"accept_terms": "on", "birth_date": "01-01-1970"})
            if attempt < access.BIRTH_DATE_TRIES - 1:
                assert f"try {access.BIRTH_DATE_TRIES - 1 - attempt} more time" in _text(response)
        assert response["Location"] == "/r/locked"
        share.refresh_from_db()
        assert share.locked_until is not None
        page = _text(client.get("/r/locked"))
        if lock < 3:
            assert share.locked_until < timezone.now() + timedelta(hours=1, minutes=1)
            assert "try again after" in page
            assert client.get("/r/birth-date")["Location"] == "/r/locked"
            Share.objects.filter(pk=share.pk).update(locked_until=timezone.now() - timedelta(seconds=1))
        else:
            assert share.locked_until >= Share.HELD
            assert "Only Hospital A can unlock it" in page
    assert (
        Notification.objects.filter(share=share, kind="locked").count() == 3
    )  # the sender is told each time
    assert sms_codes(sms_file) == []
    unlock(share, Actor())
    response = client.post("/r/birth-date", {"accept_terms": "on", "birth_date": BIRTH})
    assert response["Location"] == "/r/sms-code"


def _code_step(client: Client, code: str) -> tuple[int, str, bool, int, str]:
    """What the code step tells: status, where it sends the browser, whether it sets a session, and the next
    page (status and heading)."""
    response = client.get("/", {"code": code})
    follow = client.get(response["Location"])
    heading = re.search(r"<h1[^>]*>(.*?)</h1>", follow.content.decode(), re.S)
    return (
        response.status_code,
        response["Location"],
        settings.SESSION_COOKIE_NAME in response.cookies,
        follow.status_code,
        heading[1].strip() if heading else "",
    )


@pytest.mark.django_db
def test_a_locked_share_is_not_told_apart_at_the_code_step(
    shared: tuple[Share, str], organisation: Any, sender: Any
) -> None:
    """A1: a locked code answers at the code and date step exactly as an open one; the lock shows only once a
    date of birth is given, and that date is not even compared (a locked share cannot be probed)."""
    share, code = shared
    _, open_code = ready_share(
        organisation, [make_study(organisation, ANNA)], created_by=sender, delivery="url", email=""
    )
    Share.objects.filter(pk=share.pk).update(locked_until=timezone.now() + timedelta(hours=1))
    locked_client, open_client = _client(), _client()
    assert _code_step(locked_client, code) == _code_step(open_client, open_code)
    assert _code_step(locked_client, code)[1] == "/r/birth-date"
    # Nor by asking for the lock page directly.
    assert locked_client.get("/r/locked")["Location"] == "/r/birth-date"
    assert locked_client.get("/r/birth-date").status_code == 200
    for typed in ("01-01-1970", BIRTH):
        response = locked_client.post("/r/birth-date", {"accept_terms": "on", "birth_date": typed})
        assert response["Location"] == "/r/locked"
    assert "try again after" in _text(locked_client.get("/r/locked"))
    share.refresh_from_db()
    assert share.birth_date_failures == 0  # not compared, not counted against the share
    assert (
        AuditEvent.objects.filter(
            action="recipient.birth_date", outcome="denied", detail__reason="locked"
        ).count()
        == 1  # the second was not even taken: the lock was shown
    )


@pytest.mark.django_db
def test_a_session_goes_idle_before_login_too(shared: tuple[Share, str], sms_file: Path) -> None:
    """A27: the date and SMS steps were still accepted hours after the link was opened."""
    _, code = shared
    for stage_url, form in (
        ("/r/birth-date", {"accept_terms": "on", "birth_date": BIRTH}),
        ("/r/sms-code", {"code": "123456"}),
    ):
        client = _client()
        if stage_url == "/r/sms-code":
            to_sms_step(client, code)
        else:
            client.get("/", {"code": code})
        assert client.get(stage_url).status_code == 200
        s = client.session
        s[session.KEY] = {
            **s[session.KEY],
            "seen": (timezone.now() - session.IDLE_ENDS - timedelta(seconds=5)).timestamp(),
        }
        s.save()
        assert client.post(stage_url, form)["Location"] == "/"
        assert session.KEY not in client.session
        assert client.get(stage_url)["Location"] == "/"
    assert len(sms_codes(sms_file)) == 1  # only the live session's date step sent one
    # Each step touches the idle timer: a recipient who keeps going is not cut off.
    client = _client()
    client.get("/", {"code": code})
    s = client.session
    s[session.KEY] = {
        **s[session.KEY],
        "seen": (timezone.now() - session.IDLE + timedelta(minutes=1)).timestamp(),
    }
    s.save()
    assert client.get("/r/birth-date").status_code == 200
    assert client.session[session.KEY]["seen"] > (timezone.now() - timedelta(seconds=5)).timestamp()


@pytest.mark.django_db
def test_sms_code_messages_wrong_used_and_expired(shared: tuple[Share, str], sms_file: Path) -> None:
    _, code = shared
    client = _client()
    to_sms_step(client, code)
    sent = sms_codes(sms_file)[-1]
    wrong = f"{(int(sent) + 1) % 10**6:06d}"
    assert "not right" in _text(client.post("/r/sms-code", {"code": wrong}))
    assert "6 digits" in _text(client.post("/r/sms-code", {"code": "12345"}))
    OneTimeCode.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert "expired" in _text(client.post("/r/sms-code", {"code": sent}))
    client.post("/r/sms-code/new")
    fresh = sms_codes(sms_file)[-1]
    assert client.post("/r/sms-code", {"code": fresh})["Location"] == "/r/studies"
    assert OneTimeCode.objects.filter(used_at__isnull=False).count() == 1


@pytest.mark.django_db
def test_a_code_asked_for_in_one_session_is_refused_in_another(
    shared: tuple[Share, str], sms_file: Path
) -> None:
    share, code = shared
    first, second = _client(), _client()
    to_sms_step(first, code)
    first_code = sms_codes(sms_file)[-1]
    second.get("/", {"code": code})
    # The second browser is at the SMS step too, without asking for a code of its own.
    state = second.session
    state[session.KEY] = {**state[session.KEY], "stage": session.Stage.SMS_CODE}
    state.save()
    response = second.post("/r/sms-code", {"code": first_code})
    assert response.status_code == 422
    assert "Ask for a new code" in _text(response)
    assert first.post("/r/sms-code", {"code": first_code})["Location"] == "/r/studies"
    assert share.pk == OneTimeCode.objects.get().share_id


@pytest.mark.django_db
def test_a_used_code_is_refused(shared: tuple[Share, str], sms_file: Path) -> None:
    _, code = shared
    client = _client()
    log_in(client, code, sms_file)
    used = sms_codes(sms_file)[-1]
    client.post("/r/logout")
    to_sms_step(client, code)
    # A new login in this browser: the old code is used; the new SMS carries a new one.
    response = client.post("/r/sms-code", {"code": used})
    assert response.status_code == 422


@pytest.mark.django_db
def test_five_wrong_tries_per_code_and_ten_per_share_then_locked(
    shared: tuple[Share, str], sms_file: Path
) -> None:
    share, code = shared
    client = _client()
    to_sms_step(client, code)
    for _ in range(access.SMS_CODE_TRIES):
        client.post("/r/sms-code", {"code": "000000" if sms_codes(sms_file)[-1] != "000000" else "111111"})
    assert "Too many wrong tries with this code" in _text(
        client.post("/r/sms-code", {"code": sms_codes(sms_file)[-1]})
    )
    client.post("/r/sms-code/new")
    for _ in range(access.SMS_CODE_TRIES_PER_SHARE - access.SMS_CODE_TRIES):
        response = client.post(
            "/r/sms-code", {"code": "000000" if sms_codes(sms_file)[-1] != "000000" else "111111"}
        )
    assert response["Location"] == "/r/locked"
    share.refresh_from_db()
    assert share.locked_until is not None
    assert share.locked_until >= Share.HELD


@pytest.mark.django_db
def test_at_most_three_sms_per_share_in_fifteen_minutes(shared: tuple[Share, str], sms_file: Path) -> None:
    _, code = shared
    client = _client()
    to_sms_step(client, code)
    client.post("/r/sms-code/new")
    client.post("/r/sms-code/new")
    response = client.post("/r/sms-code/new", follow=True)
    assert "Wait 15 minutes" in _text(response)
    assert len(sms_codes(sms_file)) == 3


@pytest.mark.django_db
def test_wrong_codes_from_one_address_are_throttled_across_shares(shared: tuple[Share, str]) -> None:
    limit, _ = access.CLIENT_LIMITS["code"]
    for _ in range(limit):
        _client().get("/", {"code": "ABCD-EFGH-JKMN"})
    _, code = shared
    response = _client().get("/", {"code": code})
    assert response.status_code == 429
    assert "Too many tries" in _text(response)
    other = Client(HTTP_ACCEPT_LANGUAGE="en", REMOTE_ADDR="192.0.2.7")
    assert other.get("/", {"code": code})["Location"] == "/r/birth-date"


@pytest.mark.django_db
def test_the_session_times_out_and_follows_the_share(shared: tuple[Share, str], sms_file: Path) -> None:
    share, code = shared
    client = _client()
    log_in(client, code, sms_file)
    assert client.get("/r/studies").status_code == 200
    state = client.session[session.KEY]
    for key, age in (("seen", session.IDLE_ENDS), ("started", session.ABSOLUTE)):
        s = client.session
        s[session.KEY] = {**state, key: (timezone.now() - age - timedelta(seconds=5)).timestamp()}
        s.save()
        assert client.get("/r/studies")["Location"] == "/", key
        log_in(client, code, sms_file)
        state = client.session[session.KEY]
    revoke(share, Actor())
    assert client.get("/r/studies")["Location"] == "/r/ended"  # A7: checked on every request


@pytest.mark.django_db
def test_opening_a_link_ends_a_senders_session_in_the_same_browser(
    shared: tuple[Share, str], sender: Any
) -> None:
    _, code = shared
    client = _client()
    client.force_login(sender)
    assert client.get("/portal/").status_code == 200
    client.get("/", {"code": code})
    assert client.get("/portal/").status_code == 302  # logged out of the portal


@pytest.mark.django_db
def test_the_study_list_shows_each_study_with_view_and_download(organisation: Any, sms_file: Path) -> None:
    studies = [make_study(organisation, ANNA), make_study(organisation, ANNA, kind="cr")]
    share, code = ready_share(organisation, studies, delivery="url", email="")
    client = _client()
    log_in(client, code, sms_file)
    response = client.get("/r/studies")
    text = _text(response)
    assert text.count("<h1") == 1
    for study in studies:
        assert f'href="/r/studies/{study.pk}/"' in text
        assert f'href="/r/download?study={study.pk}"' in text
    assert "CT thorax" in text
    assert "CR" in text
    assert 'href="/r/download">Download all studies' in text
    assert "+31 20 123 4567" in text  # the organisation's contact details
    assert AuditEvent.objects.filter(action="recipient.studies.list", detail__share=share.pk).exists()
    client.post("/r/logout")
    assert client.get("/r/studies")["Location"] == "/"


@pytest.mark.django_db
def test_phones_see_no_download_buttons_unless_allowed(
    organisation: Any, sms_file: Path, radshare_config: Any
) -> None:
    _share, code = ready_share(organisation, [make_study(organisation, ANNA)], delivery="url", email="")
    phone = Client(
        HTTP_ACCEPT_LANGUAGE="en", HTTP_USER_AGENT="Mozilla/5.0 (iPhone; CPU iPhone OS 18_0) Mobile"
    )
    log_in(phone, code, sms_file)
    text = _text(phone.get("/r/studies"))
    assert "/r/download" not in text
    assert "open the link on a computer" in text
    radshare_config(download_on_mobile=True)
    assert "/r/download" in _text(phone.get("/r/studies"))


@pytest.mark.django_db
def test_old_login_rows_are_pruned_recent_ones_kept(shared: tuple[Share, str], sms_file: Path) -> None:
    from radshare.recipients.models import AccessAttempt
    from radshare.recipients.tasks import prune_login_rows

    _, code = shared
    to_sms_step(_client(), code)
    assert AccessAttempt.objects.count() == 2  # the code and the date of birth
    assert prune_login_rows.call() == 0
    AccessAttempt.objects.update(created_at=timezone.now() - timedelta(days=3))
    OneTimeCode.objects.update(expires_at=timezone.now() - timedelta(days=3))
    assert prune_login_rows.call() == 3
    assert not AccessAttempt.objects.exists()


@pytest.mark.django_db
def test_recipient_entries_name_the_sender_they_act_for(
    shared: tuple[Share, str], sender: Any, sms_file: Path
) -> None:
    """A16: each of the recipient's audit entries says on whose behalf (the sender who shared)."""
    share, code = shared
    client = _client()
    log_in(client, code, sms_file)
    assert client.get("/r/studies").status_code == 200
    assert client.get("/r/studies/999999/").status_code == 404  # a refusal is recorded too
    entries = AuditEvent.objects.filter(actor_type="recipient", detail__share=share.pk)
    actions = set(entries.values_list("action", flat=True))
    assert {
        "recipient.code",
        "recipient.birth_date",
        "recipient.sms_code.send",
        "recipient.login",
        "recipient.study.view",
        "recipient.studies.list",
    } <= actions
    assert {e.on_behalf_of_id for e in entries} == {sender.pk}


@pytest.mark.django_db
def test_a_sender_logging_in_ends_a_recipients_session_in_the_same_browser(
    shared: tuple[Share, str], sender: Any, sms_file: Path
) -> None:
    _, code = shared
    client = _client()
    log_in(client, code, sms_file)
    assert client.get("/r/studies").status_code == 200
    response = client.post(
        "/portal/login/", {"username": "alice", "password": "correct horse battery staple"}
    )
    assert response.status_code == 302
    assert session.KEY not in client.session
    assert client.get("/r/studies")["Location"] == "/"
