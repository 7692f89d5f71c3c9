"""A stranger cannot lock a sender out (docs/security.md A26): failures count per account and address, per known
device, per address across accounts, and across addresses per account only to slow strangers down."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from radshare.audit.actions import Action
from radshare.audit.models import AuditEvent
from radshare.audit.services import ActorType, Outcome, record
from radshare.delivery import outbox
from radshare.delivery.models import Notification
from radshare.organisations.models import Sender
from radshare.organisations.services import (
    ACCOUNT_WINDOW,
    MAX_FAILED_PER_ACCOUNT,
    MAX_FAILED_PER_ACCOUNT_AND_ADDRESS,
    MAX_FAILED_PER_ADDRESS,
    MAX_FAILED_PER_DEVICE,
    create_sender,
    device_cookie_name,
)

PASSWORD = "correct horse battery staple"
THROTTLED = "Too many failed attempts. Wait 15 minutes and try again, or ask your administrator."
WRONG = "Please enter a correct username and password."
ALICE_HOME = "10.1.2.3"
STRANGER = "203.0.113.5"


def client(address: str) -> Client:
    return Client(headers={"accept-language": "en"}, REMOTE_ADDR=address)


def log_in(c: Client, username: str, password: str) -> str:
    """ "ok" for a login, "wrong" for a wrong password, "throttled" for a refusal before the password check."""
    response = c.post("/portal/login/", {"username": username, "password": password})
    if response.status_code == 302:
        return "ok"
    body = response.content.decode()
    assert response.status_code == 200
    if THROTTLED in body:
        return "throttled"
    assert WRONG in body
    return "wrong"


def known_device(address: str = ALICE_HOME, username: str = "alice", password: str = PASSWORD) -> Client:
    """A browser that logged in once (and out again): it holds the known-device cookie."""
    c = client(address)
    assert log_in(c, username, password) == "ok"
    assert device_cookie_name() in c.cookies
    c.post("/portal/logout/")
    return c


def guess(address: str, username: str = "alice", times: int = 1) -> list[str]:
    c = client(address)
    return [log_in(c, username, f"guess {n}") for n in range(times)]


class Clock:
    """Moves ``timezone.now`` forward (audit entries are append-only: the past cannot be rewritten)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.offset = timedelta()
        self.real = timezone.now

    def advance(self, delta: timedelta) -> None:
        self.offset += delta
        offset, real = self.offset, self.real
        self.monkeypatch.setattr(timezone, "now", lambda: real() + offset)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


def fail_at(moment: datetime, username: str, address: str) -> None:
    """A failure on the record at ``moment`` (as the audit receiver writes it)."""
    with time_machine.travel(moment, tick=False):
        record(
            Action.PORTAL_LOGIN_FAILED,
            outcome=Outcome.FAILURE,
            actor_type=ActorType.ANONYMOUS,
            actor_label=username,
            client=address,
        )


@pytest.mark.django_db
def test_a_stranger_locks_only_their_own_address_out_of_alices_account(sender: Sender) -> None:
    tries = guess(STRANGER, times=MAX_FAILED_PER_ACCOUNT_AND_ADDRESS + 3)
    assert tries == ["wrong"] * MAX_FAILED_PER_ACCOUNT_AND_ADDRESS + ["throttled"] * 3
    # The stranger's address is locked for alice, even with her password ...
    assert log_in(client(STRANGER), "alice", PASSWORD) == "throttled"
    # ... but alice logs in from her own address, without any cookie ...
    assert log_in(client(ALICE_HOME), "alice", PASSWORD) == "ok"
    # ... and the stranger's address still reaches other accounts.
    create_sender(sender.organisation, "bob", "another long pass phrase")
    assert log_in(client(STRANGER), "bob", "another long pass phrase") == "ok"
    failed = AuditEvent.objects.filter(action="portal.login.failed", actor_label="alice")
    assert failed.count() == MAX_FAILED_PER_ACCOUNT_AND_ADDRESS
    [lock] = AuditEvent.objects.filter(action="portal.login.locked")
    assert (lock.actor_label, lock.client_address, lock.organisation_id) == (
        "alice",
        STRANGER,
        sender.organisation_id,
    )
    assert lock.detail["scope"] == "account_address"
    assert datetime.fromisoformat(lock.detail["until"]) > timezone.now() + timedelta(minutes=14)
    throttled = AuditEvent.objects.filter(action="portal.login.throttled", actor_label="alice")
    assert throttled.count() == 4
    assert {e.client_address for e in throttled} == {STRANGER}
    assert {e.detail["reason"] for e in throttled} == {"account_address"}


@pytest.mark.django_db
def test_alices_known_device_gets_in_even_from_the_strangers_address(sender: Sender) -> None:
    shared = "192.0.2.10"  # a hospital's NAT: alice and the stranger share the address
    device = known_device(shared)
    guess(shared, times=MAX_FAILED_PER_ACCOUNT_AND_ADDRESS)
    assert log_in(client(shared), "alice", PASSWORD) == "throttled"
    assert log_in(device, "alice", PASSWORD) == "ok"


@pytest.mark.django_db
def test_the_known_device_cookie_is_bound_to_the_account_and_signed(sender: Sender) -> None:
    create_sender(sender.organisation, "bob", "another long pass phrase")
    bobs_device = known_device(STRANGER, "bob", "another long pass phrase")
    guess(STRANGER, times=MAX_FAILED_PER_ACCOUNT_AND_ADDRESS)
    assert log_in(bobs_device, "alice", PASSWORD) == "throttled"  # bob's device is no device of alice's
    forged = client(STRANGER)
    name = device_cookie_name()
    forged.cookies[name] = known_device().cookies[name].value[:-2] + "xx"
    assert log_in(forged, "alice", PASSWORD) == "throttled"


@pytest.mark.django_db
def test_a_known_device_is_limited_on_its_own(sender: Sender) -> None:
    device = known_device()
    tries = [log_in(device, "alice", f"typo {n}") for n in range(MAX_FAILED_PER_DEVICE + 1)]
    assert tries == ["wrong"] * MAX_FAILED_PER_DEVICE + ["throttled"]
    assert log_in(device, "alice", PASSWORD) == "throttled"
    # The device's failures are its own: another browser at the same address is not locked by them.
    assert log_in(client(ALICE_HOME), "alice", PASSWORD) == "ok"
    failed = AuditEvent.objects.filter(action="portal.login.failed", actor_label="alice")
    assert all(e.detail.get("device") for e in failed)
    [lock] = AuditEvent.objects.filter(action="portal.login.locked")
    assert lock.detail["scope"] == "device"


@pytest.mark.django_db
def test_the_per_address_cap_across_accounts_holds(sender: Sender) -> None:
    device = known_device("198.51.100.7")
    prowler = "198.51.100.7"
    per_account = MAX_FAILED_PER_ACCOUNT_AND_ADDRESS - 1
    for n in range(0, MAX_FAILED_PER_ADDRESS, per_account):
        guess(prowler, f"user{n}", times=min(per_account, MAX_FAILED_PER_ADDRESS - n))
    assert AuditEvent.objects.filter(action="portal.login.failed").count() == MAX_FAILED_PER_ADDRESS
    assert log_in(client(prowler), "alice", PASSWORD) == "throttled"
    assert log_in(client(prowler), "somebody-new", "whatever") == "throttled"
    assert log_in(client(ALICE_HOME), "alice", PASSWORD) == "ok"
    assert log_in(device, "alice", PASSWORD) == "ok"  # her known device is not the prowler
    address_lock = AuditEvent.objects.get(action="portal.login.locked", detail__scope="address")
    assert (address_lock.client_address, address_lock.actor_label) == (prowler, "")
    assert not Notification.objects.exists()  # no one account was attacked: nobody to tell


@pytest.mark.django_db
def test_many_addresses_slow_strangers_down_but_never_alice(sender: Sender, clock: Clock) -> None:
    device = known_device()
    known_address = "10.20.30.40"
    assert log_in(client(known_address), "alice", PASSWORD) == "ok"  # an address alice used recently
    a_while_ago = timezone.now() - timedelta(minutes=2)
    for n in range(MAX_FAILED_PER_ACCOUNT - 1):
        fail_at(a_while_ago, "alice", f"198.18.{n // 250}.{n % 250 + 1}")
    # The attempt that reaches the cap goes through (and fails); from then on, one attempt a minute.
    assert guess("203.0.113.100") == ["wrong"]
    assert guess("203.0.113.101") == ["throttled"]
    assert log_in(client("203.0.113.102"), "alice", PASSWORD) == "throttled"
    # alice herself: from her known device on any address, and from an address she logged in from.
    device.defaults["REMOTE_ADDR"] = "100.64.0.9"
    assert log_in(device, "alice", PASSWORD) == "ok"
    assert log_in(client(known_address), "alice", PASSWORD) == "ok"
    # A minute after the last failure a stranger gets one more try.
    clock.advance(timedelta(seconds=61))
    assert guess("203.0.113.103", times=2) == ["wrong", "throttled"]
    [slowed] = AuditEvent.objects.filter(action="portal.login.slowed")
    assert (slowed.actor_label, slowed.client_address, slowed.detail["scope"]) == (
        "alice",
        "203.0.113.100",
        "account",
    )
    assert datetime.fromisoformat(slowed.detail["until"]) <= timezone.now() + ACCOUNT_WINDOW
    assert set(
        AuditEvent.objects.filter(action="portal.login.throttled").values_list("detail__reason", flat=True)
    ) == {"account"}


@pytest.mark.django_db
def test_failures_older_than_the_account_window_do_not_slow_down(sender: Sender) -> None:
    long_ago = timezone.now() - ACCOUNT_WINDOW - timedelta(minutes=1)
    for n in range(MAX_FAILED_PER_ACCOUNT):
        fail_at(long_ago, "alice", f"198.18.0.{n + 1}")
    assert guess("203.0.113.100", times=2) == ["wrong", "wrong"]


@pytest.mark.django_db
def test_unknown_and_known_accounts_are_refused_alike(sender: Sender) -> None:
    sender.email = "alice@hospital-a.example"
    sender.save()
    guess(STRANGER, "alice", times=MAX_FAILED_PER_ACCOUNT_AND_ADDRESS)
    guess(STRANGER, "nobody", times=MAX_FAILED_PER_ACCOUNT_AND_ADDRESS)
    known = client(STRANGER).post("/portal/login/", {"username": "alice", "password": PASSWORD})
    unknown = client(STRANGER).post("/portal/login/", {"username": "nobody", "password": PASSWORD})
    assert known.status_code == unknown.status_code == 200
    strip = [b"alice", b"nobody"]
    bodies = [r.content for r in (known, unknown)]
    for i, body in enumerate(bodies):
        for word in strip:
            bodies[i] = bodies[i].replace(word, b"")
        assert THROTTLED.encode() in body
    # Same page but for the username echoed in the field and the CSRF token.
    assert len(bodies[0]) == len(bodies[1])
    locks = AuditEvent.objects.filter(action="portal.login.locked").order_by("actor_label")
    assert [(e.actor_label, e.organisation_id) for e in locks] == [
        ("alice", sender.organisation_id),
        ("nobody", None),
    ]
    assert Notification.objects.count() == 1  # only the real account has someone to tell


@pytest.mark.django_db
def test_admin_login_lock_is_per_address_too() -> None:
    Sender.objects.create_superuser("operator", password="operator pass phrase 1")
    stranger = client(STRANGER)
    for _ in range(MAX_FAILED_PER_ACCOUNT_AND_ADDRESS):
        response = stranger.post("/admin/login/?next=/admin/", {"username": "operator", "password": "guess"})
        assert response.status_code == 200
    response = stranger.post(
        "/admin/login/?next=/admin/", {"username": "operator", "password": "operator pass phrase 1"}
    )
    assert THROTTLED in response.content.decode()
    operator = client(ALICE_HOME)
    response = operator.post(
        "/admin/login/?next=/admin/", {"username": "operator", "password": "operator pass phrase 1"}
    )
    assert response.status_code == 302
    assert AuditEvent.objects.filter(action="admin.login.locked", client_address=STRANGER).count() == 1


# --- the e-mail to the locked account's owner --------------------------------------------------------------


@pytest.fixture
def mailbox(tmp_path: Path, radshare_config: Any, settings: Any) -> Path:
    settings.LANGUAGE_CODE = "en"  # sender notices are in the installation's language
    folder = tmp_path / "mail"
    radshare_config(email_url=f"file://{folder}")
    return folder


def _mails(folder: Path) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for path in sorted(folder.glob("*.eml"))
    ]


@pytest.mark.django_db
def test_a_lock_sends_alice_one_email_with_the_reason(sender: Sender, mailbox: Path) -> None:
    sender.email = "alice@hospital-a.example"
    sender.save()
    guess(STRANGER, times=MAX_FAILED_PER_ACCOUNT_AND_ADDRESS + 5)  # locked, then refused five times
    guess("203.0.113.6", times=MAX_FAILED_PER_ACCOUNT_AND_ADDRESS)  # a second address, the same lock period
    [notice] = Notification.objects.all()
    assert (notice.kind, notice.channel, notice.to_sender_id, notice.organisation_id) == (
        Notification.Kind.LOGIN_LOCKED,
        Notification.Channel.EMAIL,
        sender.pk,
        sender.organisation_id,
    )
    assert notice.share is None
    assert AuditEvent.objects.filter(action="portal.login.locked").count() == 2  # each lock is on record
    assert outbox.deliver(notice.pk) == "sent"
    assert outbox.deliver(notice.pk) == "sent"  # once
    [mail] = _mails(mailbox)
    assert mail["To"] == "alice@hospital-a.example"
    assert mail["Message-ID"] == notice.message_id
    assert mail["Content-Language"] == "en"
    text = mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    html = mail.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    lock = AuditEvent.objects.filter(action="portal.login.locked").earliest("timestamp")
    until = timezone.localtime(datetime.fromisoformat(lock.detail["until"])).strftime("%H:%M")
    assert "blocked" in str(mail["Subject"])
    for part in (text, html):
        assert "alice" in part
        assert STRANGER in part
        assert until in part
        assert "wrong password" in part
        assert "administrator" in part
        for secret in ("guess 0", "guess 9", PASSWORD):
            assert secret not in part
    sent = AuditEvent.objects.get(action="notification.sent")
    assert sent.detail["kind"] == "login_locked"
    assert sent.organisation_id == sender.organisation_id


@pytest.mark.django_db
def test_the_next_lock_period_sends_again(sender: Sender, mailbox: Path, clock: Clock) -> None:
    sender.email = "alice@hospital-a.example"
    sender.save()
    guess(STRANGER, times=MAX_FAILED_PER_ACCOUNT_AND_ADDRESS + 1)
    clock.advance(timedelta(minutes=14))
    assert guess(STRANGER) == ["throttled"]
    clock.advance(timedelta(minutes=2))
    assert guess(STRANGER, times=MAX_FAILED_PER_ACCOUNT_AND_ADDRESS + 1)[-2:] == ["wrong", "throttled"]
    assert Notification.objects.count() == 2
    assert AuditEvent.objects.filter(action="portal.login.locked").count() == 2


@pytest.mark.django_db
def test_no_email_without_an_address_or_for_an_operator(sender: Sender, mailbox: Path) -> None:
    Sender.objects.create_superuser("operator", password="operator pass phrase 1", email="op@example.org")
    guess(STRANGER, times=MAX_FAILED_PER_ACCOUNT_AND_ADDRESS)  # alice has no e-mail address
    guess(STRANGER, "operator", times=MAX_FAILED_PER_ACCOUNT_AND_ADDRESS)  # no organisation, no outbox
    assert not Notification.objects.exists()
    assert AuditEvent.objects.filter(action="portal.login.locked").count() == 2


@pytest.mark.django_db
def test_a_slowdown_tells_alice_too(sender: Sender, mailbox: Path) -> None:
    sender.email = "alice@hospital-a.example"
    sender.save()
    a_while_ago = timezone.now() - timedelta(minutes=2)
    for n in range(MAX_FAILED_PER_ACCOUNT - 1):
        fail_at(a_while_ago, "alice", f"198.18.{n // 250}.{n % 250 + 1}")
    guess("203.0.113.100", times=3)
    [notice] = Notification.objects.all()
    assert outbox.deliver(notice.pk) == "sent"
    [mail] = _mails(mailbox)
    text = mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "many addresses" in text
    assert "administrator" in text
