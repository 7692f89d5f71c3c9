"""The outbox end to end: a real SMTP server (aiosmtpd) on loopback, the file SMS backend, real shares."""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.test import Client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from radshare.audit.models import AuditEvent
from radshare.delivery import outbox
from radshare.delivery.models import Notification
from radshare.imaging import services as imaging
from radshare.organisations.services import create_sender
from radshare.shares import codes, services
from radshare.shares.models import Share
from radshare.shares.services import Actor, mark_opened, prepare, revoke
from tests.conftest import free_port
from tests.shares.helpers import ANNA, make_share, make_study


@dataclass
class Inbox:
    """What the SMTP server received; ``refuse`` makes it answer RCPT with that reply."""

    messages: list[tuple[list[str], bytes]] = field(default_factory=list)
    refuse: str = ""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:  # noqa: N802
        if self.refuse:
            return self.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 Message accepted"

    def parsed(self) -> list[email.message.EmailMessage]:
        return [
            email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[misc]
            for _, raw in self.messages
        ]


class SmtpServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.inbox = Inbox()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp(radshare_config: Any) -> Iterator[SmtpServer]:
    server = SmtpServer(free_port())
    radshare_config(email_url=f"smtp://127.0.0.1:{server.port}")
    server.start()
    yield server
    server.stop()


def _ready_share(organisation: Any, **kwargs: Any) -> tuple[Share, str]:
    new = make_share(organisation, [make_study(organisation, ANNA)], **kwargs)
    imaging.render_pending_now(parallel=False)
    assert prepare(new.share.pk) == "ready"
    new.share.refresh_from_db()
    return new.share, new.code


def _link_notifications(share: Share) -> list[Notification]:
    return list(Notification.objects.filter(share=share, kind="share_link"))


@pytest.mark.django_db
def test_no_email_while_preparing_and_exactly_one_once_ready(organisation: Any, smtp: SmtpServer) -> None:
    new = make_share(organisation, [make_study(organisation, ANNA)], language="en")
    assert prepare(new.share.pk) == "preparing"  # renders still pending
    assert _link_notifications(new.share) == []
    assert smtp.inbox.messages == []
    imaging.render_pending_now(parallel=False)
    assert prepare(new.share.pk) == "ready"
    assert prepare(new.share.pk) == "ready"  # a second look queues nothing more
    [notification] = _link_notifications(new.share)
    assert outbox.deliver(notification.pk) == "sent"
    assert outbox.deliver(notification.pk) == "sent"  # already sent: not again
    assert len(smtp.inbox.messages) == 1
    [(rcpt, _)] = smtp.inbox.messages
    assert rcpt == ["anna@example.org"]
    [mail] = smtp.inbox.parsed()
    assert mail["Message-ID"] == notification.message_id
    assert mail["Content-Language"] == "en"
    text = mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    html = mail.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    link = codes.share_url(new.code)
    for part in (text, html):
        assert link in part
        assert "Hospital A" in part
        assert "990" in part  # the last 3 digits of the BSN 999999990
        for personal in ("Jansen", "Anna", "1968", "14-03", "CT thorax", "612345678"):
            assert personal not in part, personal
    for personal in ("Jansen", "Anna", "1968", "CT thorax"):
        assert personal not in str(mail["Subject"])
    new.share.refresh_from_db()
    assert new.share.status == "notified"
    assert AuditEvent.objects.filter(action="notification.sent", detail__share=new.share.pk).count() == 1


@pytest.mark.django_db
def test_the_email_is_in_the_shares_language(organisation: Any, smtp: SmtpServer) -> None:
    share, _ = _ready_share(organisation, language="nl")
    outbox.deliver(_link_notifications(share)[0].pk)
    [mail] = smtp.inbox.parsed()
    assert mail["Content-Language"] == "nl"
    html = mail.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert 'lang="nl"' in html


@pytest.mark.django_db
def test_letter_and_link_shares_send_no_email(organisation: Any, smtp: SmtpServer) -> None:
    for delivery in ("letter", "url"):
        share, _ = _ready_share(organisation, delivery=delivery, email="")
        assert _link_notifications(share) == []
        assert share.status == "ready"
    assert smtp.inbox.messages == []


@pytest.mark.django_db
def test_smtp_down_then_back_delivers_exactly_once(organisation: Any, radshare_config: Any) -> None:
    port = free_port()
    radshare_config(email_url=f"smtp://127.0.0.1:{port}")
    share, _ = _ready_share(organisation)
    [notification] = _link_notifications(share)
    before = DBTaskResult.objects.count()
    for attempt in (1, 2):
        assert outbox.deliver(notification.pk) == "pending"  # nothing listens: try again later
        notification.refresh_from_db()
        assert notification.attempts == attempt
        assert notification.last_error
    share.refresh_from_db()
    assert share.status == "ready"
    server = SmtpServer(port)
    server.start()
    try:
        assert outbox.deliver(notification.pk) == "sent"
        assert outbox.deliver(notification.pk) == "sent"
    finally:
        server.stop()
    assert len(server.inbox.messages) == 1
    share.refresh_from_db()
    assert share.status == "notified"
    assert DBTaskResult.objects.count() >= before  # the retries were enqueued (run on commit)


@pytest.mark.django_db(transaction=True)
def test_a_retry_is_enqueued_with_a_backoff(organisation: Any, radshare_config: Any) -> None:
    radshare_config(email_url=f"smtp://127.0.0.1:{free_port()}")
    share, _ = _ready_share(organisation)
    [notification] = _link_notifications(share)
    DBTaskResult.objects.all().delete()
    outbox.deliver(notification.pk)
    [task] = DBTaskResult.objects.all()
    assert task.task_path.endswith("deliver_notification")
    assert task.args_kwargs["args"] == [notification.pk]
    assert task.run_after is not None
    assert task.run_after > timezone.now() + timedelta(seconds=10)


@pytest.mark.django_db
def test_a_permanent_failure_shows_on_the_share_and_a_resend_can_fix_it(
    organisation: Any, smtp: SmtpServer, sender: Any
) -> None:
    share, _ = _ready_share(organisation, created_by=sender)
    smtp.inbox.refuse = "550 5.1.1 mailbox unavailable"
    [notification] = _link_notifications(share)
    assert outbox.deliver(notification.pk) == "failed"
    notification.refresh_from_db()
    assert notification.attempts == 1
    assert notification.last_error
    assert AuditEvent.objects.filter(action="notification.failed", detail__share=share.pk).exists()
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(sender)
    page = client.get(f"/portal/shares/{share.pk}/").content.decode()
    assert "failed" in page
    assert notification.last_error in page
    assert "Send the e-mail again" in page
    smtp.inbox.refuse = ""
    client.post(f"/portal/shares/{share.pk}/resend", {"email": "anna.jansen@example.org"})
    latest = outbox.link_notification(share)
    assert latest is not None
    assert latest.pk != notification.pk
    assert outbox.deliver(latest.pk) == "sent"
    assert [rcpt for rcpt, _ in smtp.inbox.messages] == [["anna.jansen@example.org"]]


@pytest.mark.django_db
def test_a_revoked_share_sends_nothing_more(organisation: Any, smtp: SmtpServer) -> None:
    share, _ = _ready_share(organisation)
    [notification] = _link_notifications(share)
    revoke(share, Actor())
    assert outbox.deliver(notification.pk) == "dropped"
    assert smtp.inbox.messages == []


@pytest.mark.django_db
def test_sms_codes_go_to_the_file_backend_first_in_line_and_never_late(
    organisation: Any, radshare_config: Any, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    path = tmp_path / "sms.jsonl"
    radshare_config(sms_url=f"file://{path}")
    share, _ = _ready_share(organisation, delivery="url", email="")
    with django_capture_on_commit_callbacks(execute=True):
        sms = outbox.queue_sms_code(share, "123456", timezone.now() + timedelta(minutes=5))
    queued = DBTaskResult.objects.filter(task_path__endswith="deliver_notification").order_by("-pk").first()
    assert queued is not None
    assert queued.priority == 100
    assert sms.secret
    assert "123456" not in sms.secret
    assert outbox.deliver(sms.pk) == "sent"
    sms.refresh_from_db()
    assert sms.secret == ""
    late = outbox.queue_sms_code(share, "654321", timezone.now() - timedelta(seconds=1))
    assert outbox.deliver(late.pk) == "dropped"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 1
    assert lines[0]["to"] == "+31612345678"
    assert "123456" in lines[0]["text"]
    assert "Hospital A" in lines[0]["text"]
    assert "Jansen" not in lines[0]["text"]


@pytest.mark.django_db
def test_the_sender_is_told_when_the_share_is_first_opened_if_asked(
    organisation: Any, radshare_config: Any, tmp_path: Path
) -> None:
    radshare_config(email_url=f"file://{tmp_path / 'mail'}")
    alice = create_sender(organisation, "alice2", "correct horse battery staple")
    alice.email = "alice@hospital.example"
    alice.save()
    asked, _ = _ready_share(organisation, created_by=alice, notify_on_open=True, delivery="url", email="")
    quiet, _ = _ready_share(organisation, created_by=alice, delivery="url", email="")
    assert mark_opened(asked) is True
    assert mark_opened(asked) is False  # only the first time
    assert mark_opened(quiet) is True
    asked.refresh_from_db()
    assert asked.status == "opened"
    assert asked.opened_at is not None
    [notice] = Notification.objects.filter(kind="opened")
    assert notice.share_id == asked.pk
    assert outbox.deliver(notice.pk) == "sent"
    [eml] = list((tmp_path / "mail").iterdir())
    mail = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert mail["To"] == "alice@hospital.example"
    body = mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert f"/portal/shares/{asked.pk}/" in body
    assert "Jansen" not in body
    assert "Anna" not in body


@pytest.mark.django_db
def test_expiry_leaves_a_tombstone_and_drops_what_was_not_sent(organisation: Any) -> None:
    share, _ = _ready_share(organisation)
    [notification] = _link_notifications(share)
    Share.objects.filter(pk=share.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert services.expire_due() == 1
    assert services.expire_due() == 0
    share.refresh_from_db()
    assert share.status == "expired"
    assert share.ended_at is not None
    assert (share.code_hash, share.code_encrypted, share.email, share.phone) == (None, "", "", "")
    assert share.share_studies.count() == 1
    assert share.patient_id is not None
    notification.refresh_from_db()
    assert notification.state == "dropped"
    assert AuditEvent.objects.filter(action="share.expire", detail__share=share.pk).exists()


@pytest.mark.django_db
def test_a_crashed_delivery_is_put_back(organisation: Any) -> None:
    share, _ = _ready_share(organisation)
    [notification] = _link_notifications(share)
    Notification.objects.filter(pk=notification.pk).update(
        state="sending", claimed_at=timezone.now() - timedelta(hours=1)
    )
    assert outbox.requeue_stale() == 1
    notification.refresh_from_db()
    assert notification.state == "pending"
