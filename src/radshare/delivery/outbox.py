"""Writing to the outbox and delivering from it (docs/security.md R3, A4).

``queue_*`` functions add a row inside the caller's transaction and enqueue its delivery once that commits, so a
notification exists exactly when its cause does. ``deliver`` sends one row: it claims the row first (a conditional
UPDATE, so two workers never send the same message at once), builds the message from the share *now* (so a share
that ended meanwhile sends nothing), and records the outcome. Temporary failures retry with backoff; the last
failure stays visible on the share. A row left "sending" by a crashed worker is put back by ``requeue_stale``;
that can send a message twice, which its stable Message-ID lets mail systems drop (at least once, not at most once).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from radshare.audit.actions import Action
from radshare.audit.models import AuditEvent
from radshare.audit.services import Outcome, record
from radshare.core import crypto
from radshare.core.tasks import enqueue_on_commit
from radshare.core.usage import Usage, count
from radshare.delivery import backends, content
from radshare.delivery.models import Notification
from radshare.organisations.models import Sender
from radshare.organisations.services import LOGIN_WINDOW
from radshare.shares import codes
from radshare.shares.models import Share
from radshare.shares.services import mark_notified

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 10  # with the backoff below: about 2 hours of trying before the sender is told
BASE_DELAY = timedelta(seconds=15)
MAX_DELAY = timedelta(minutes=30)
STALE_CLAIM = timedelta(minutes=10)


def retry_delay(attempt: int) -> timedelta:
    """15 s, 30 s, 1 min, ... at most 30 min between attempts."""
    delay: timedelta = BASE_DELAY * 2 ** max(attempt - 1, 0)
    return min(delay, MAX_DELAY)


def new_message_id() -> str:
    host = urlsplit(settings.RADSHARE.base_url).hostname or "radshare.invalid"
    return f"<{uuid.uuid4().hex}@{host}>"


def _enqueue_on_commit(notification: Notification, run_after: datetime | None = None) -> None:
    from radshare.delivery.tasks import deliver_notification  # late import: the task imports this module

    # An SMS code is awaited by a person at a login page: never behind e-mail.
    priority = 100 if notification.channel == Notification.Channel.SMS else 0
    enqueue_on_commit(deliver_notification.using(priority=priority, run_after=run_after), notification.pk)


def _queue(notification: Notification) -> Notification:
    notification.message_id = notification.message_id or new_message_id()
    notification.save()
    _enqueue_on_commit(notification)
    return notification


def queue_share_email(share: Share) -> Notification:
    """The recipient's e-mail with the link; called when the share becomes ready, or by a re-send."""
    return _queue(
        Notification(
            organisation_id=share.organisation_id,
            share=share,
            channel=Notification.Channel.EMAIL,
            kind=Notification.Kind.SHARE_LINK,
        )
    )


def queue_sms_code(share: Share, code: str, valid_until: datetime) -> Notification:
    """The recipient's one-time login code; dropped rather than sent after ``valid_until`` (A4)."""
    return _queue(
        Notification(
            organisation_id=share.organisation_id,
            share=share,
            channel=Notification.Channel.SMS,
            kind=Notification.Kind.SMS_CODE,
            secret=codes.encrypt_code(code),
            not_after=valid_until,
        )
    )


NO_SENDER_ADDRESS = "no sender address"  # ``last_error`` of a notice its sender has no address for


def _queue_sender_notice(share: Share, kind: str) -> Notification | None:
    """A notice to the sender who made the share. One without an e-mail address gets the row all the same, "not
    sent" at once, so that the share's page shows what they were not told (``delivery.services.share_page``)."""
    sender = share.created_by
    if sender is None:
        return None  # made through the API: the share's page and the API show it
    notice = Notification(
        organisation_id=share.organisation_id,
        share=share,
        to_sender=sender,
        channel=Notification.Channel.EMAIL,
        kind=kind,
    )
    if not sender.email:
        notice.state, notice.last_error = Notification.State.DROPPED, NO_SENDER_ADDRESS
        notice.message_id = new_message_id()
        notice.save()
        return notice
    return _queue(notice)


def queue_opened_notice(share: Share) -> Notification | None:
    """B6.7: tell the sender who asked for it that the recipient opened the share for the first time."""
    return _queue_sender_notice(share, Notification.Kind.OPENED) if share.notify_on_open else None


def queue_locked_notice(share: Share) -> Notification | None:
    """docs/security.md A3: the sender is told each time wrong attempts lock the share."""
    return _queue_sender_notice(share, Notification.Kind.LOCKED)


def queue_revoked_notice(share: Share) -> Notification | None:
    """docs/architecture.md "Corrections from the PACS": the share was revoked because one of its studies moved to
    another patient; its sender is told (a sender's own revoke needs no notice)."""
    return _queue_sender_notice(share, Notification.Kind.REVOKED)


def queue_login_locked_notice(account: Sender, event: AuditEvent) -> Notification | None:
    """docs/security.md A26: the sender is told that wrong passwords blocked (or slowed down) logins to their
    account, at most once per lock period however many addresses are locked. Operators (no organisation) and
    senders without an e-mail address are not told; the audit trail has it."""
    if account.organisation_id is None or not account.email or not account.is_active:
        return None
    with transaction.atomic():
        # Concurrent locks of one account queue here, so that only the first sends (SQLite: IMMEDIATE).
        list(Sender.objects.select_for_update().filter(pk=account.pk).values_list("pk", flat=True))
        recent = Notification.objects.filter(
            kind=Notification.Kind.LOGIN_LOCKED,
            to_sender=account,
            created_at__gt=timezone.now() - LOGIN_WINDOW,
        )
        if recent.exists():
            return None
        return _queue(
            Notification(
                organisation_id=account.organisation_id,
                to_sender=account,
                channel=Notification.Channel.EMAIL,
                kind=Notification.Kind.LOGIN_LOCKED,
                audit_event=event.event_id,
            )
        )


def on_login_locked(sender: Any, account: Sender, event: AuditEvent, **kwargs: Any) -> None:
    """Receiver of ``organisations.services.login_locked`` (connected in ``NotificationsConfig.ready``)."""
    queue_login_locked_notice(account, event)


def on_email_changed(sender: Any, account: Sender, old: str, **kwargs: Any) -> None:
    """Receiver of ``organisations.services.own_email_changed``: the old address is told (docs/security.md A26), so
    that an address changed by someone else does not go unnoticed. The old address waits encrypted, as an SMS code
    does, and is wiped once the notice is sent or dropped."""
    if account.organisation_id is None or not old:
        return
    _queue(
        Notification(
            organisation_id=account.organisation_id,
            to_sender=account,
            channel=Notification.Channel.EMAIL,
            kind=Notification.Kind.EMAIL_CHANGED,
            # The outbox's secrets share a key (delivery/rotation.py); removed or changed is told as it was.
            secret=crypto.encrypt(codes.PURPOSE, json.dumps({"old": old, "cleared": not account.email})),
        )
    )


ENDED = "share ended"  # ``last_error`` of what a share's end dropped


def drop_pending(share: Share) -> int:
    """A share that ends sends nothing more; secrets go with it."""
    return Notification.objects.filter(
        share=share, state__in=(Notification.State.PENDING, Notification.State.FAILED)
    ).update(state=Notification.State.DROPPED, secret="", last_error=ENDED)


class _Skip(Exception):  # noqa: N818 - a control-flow signal, not an error
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _share_email(n: Notification) -> backends.EmailMessage:
    share = n.share
    if share is None or share.status not in Share.OPENABLE or not share.email:
        raise _Skip("share not live")
    code = codes.decrypt_code(share.code_encrypted)
    if code is None:
        raise _Skip("code unavailable")
    mail = content.share_email(share, code)
    return backends.EmailMessage(
        to=share.email,
        subject=mail.subject,
        text=mail.text,
        html=mail.html,
        message_id=n.message_id,
        reply_to=share.organisation.contact_email,
        language=share.language,
    )


def _to_sender(
    n: Notification, sender: Sender, mail: content.RenderedEmail, language: str
) -> backends.EmailMessage:
    return backends.EmailMessage(
        to=sender.email,
        subject=mail.subject,
        text=mail.text,
        html=mail.html,
        message_id=n.message_id,
        language=language,
    )


def _sender_email(n: Notification) -> backends.EmailMessage:
    """A notice to the sender who made the share: the share's number and a link to its page, nothing more."""
    share, sender = n.share, n.to_sender
    if share is None or sender is None or not sender.email or not sender.is_active:
        raise _Skip(NO_SENDER_ADDRESS)
    language = settings.LANGUAGE_CODE
    url = settings.RADSHARE.base_url + reverse("shares:detail", args=[share.pk])
    mail = SENDER_NOTICES[n.kind](share.pk, url, language)
    return _to_sender(n, sender, mail, language)


SENDER_NOTICES: dict[str, Callable[[int, str, str], content.RenderedEmail]] = {
    Notification.Kind.OPENED: content.share_opened_email,
    Notification.Kind.LOCKED: content.share_locked_email,
    Notification.Kind.REVOKED: content.share_revoked_email,
}


def _login_locked_email(n: Notification) -> backends.EmailMessage:
    sender = n.to_sender
    if sender is None or not sender.email or not sender.is_active:
        raise _Skip("no sender address")
    event = AuditEvent.objects.filter(event_id=n.audit_event).first() if n.audit_event else None
    until = event.detail.get("until") if event is not None else None
    if event is None or not isinstance(until, str):
        raise _Skip("lock not on record")
    language = settings.LANGUAGE_CODE
    mail = content.login_locked_email(
        sender.get_username(),
        event.client_address,
        datetime.fromisoformat(until),
        str(event.detail.get("scope", "")),
        language,
    )
    return _to_sender(n, sender, mail, language)


def _email_changed_email(n: Notification) -> backends.EmailMessage:
    sender, secret = n.to_sender, crypto.decrypt(codes.PURPOSE, n.secret)
    if sender is None or not secret:
        raise _Skip("old address not on record")
    told = json.loads(secret)
    language = settings.LANGUAGE_CODE
    mail = content.email_changed_email(sender.get_username(), told["cleared"], n.created_at, language)
    return backends.EmailMessage(
        to=told["old"],
        subject=mail.subject,
        text=mail.text,
        html=mail.html,
        message_id=n.message_id,
        language=language,
    )


def _sms(n: Notification) -> backends.SmsMessage:
    share = n.share
    code = codes.decrypt_code(n.secret)
    if share is None or not share.phone or code is None:
        raise _Skip("share not live")
    minutes = max(1, round(((n.not_after or n.created_at) - n.created_at).total_seconds() / 60))
    text = content.sms_code_text(
        share.organisation.name, code, minutes, share.language, onward=share.is_onward
    )
    return backends.SmsMessage(to=share.phone, text=text, reference=f"rs-sms-{n.pk}")


def _finish(n: Notification, state: str, error: str = "") -> None:
    n.state = state
    n.last_error = error[:200]
    n.claimed_at = None
    if state in (Notification.State.SENT, Notification.State.DROPPED, Notification.State.FAILED):
        n.secret = ""
    if state == Notification.State.SENT:
        n.sent_at = timezone.now()
    n.save(update_fields=["state", "last_error", "claimed_at", "secret", "sent_at", "attempts"])


def deliver(pk: int) -> str:
    """Try to send one notification now; on a temporary failure it is enqueued again after a backoff."""
    now = timezone.now()
    claimed = Notification.objects.filter(pk=pk, state=Notification.State.PENDING).update(
        state=Notification.State.SENDING, claimed_at=now
    )
    n = Notification.objects.select_related("share__organisation", "to_sender").filter(pk=pk).first()
    if n is None:
        return "missing"
    if not claimed:
        return n.state
    if n.not_after is not None and now > n.not_after:
        _finish(n, Notification.State.DROPPED, "expired before it could be sent")
        return n.state
    try:
        if n.kind == Notification.Kind.SHARE_LINK:
            backends.send_email(_share_email(n))
        elif n.kind in SENDER_NOTICES:
            backends.send_email(_sender_email(n))
        elif n.kind == Notification.Kind.LOGIN_LOCKED:
            backends.send_email(_login_locked_email(n))
        elif n.kind == Notification.Kind.EMAIL_CHANGED:
            backends.send_email(_email_changed_email(n))
        else:
            backends.send_sms(_sms(n))
    except _Skip as skip:
        _finish(n, Notification.State.DROPPED, skip.reason)
        return n.state
    except backends.DeliveryError as exc:
        n.attempts += 1
        delay = retry_delay(n.attempts)
        late = n.not_after is not None and now + delay > n.not_after
        if exc.temporary and n.attempts < MAX_ATTEMPTS and not late:
            with transaction.atomic():
                _finish(n, Notification.State.PENDING, exc.reason)
                _enqueue_on_commit(n, run_after=now + delay)
            logger.warning("notification %s: attempt %d failed (%s), retrying", n.pk, n.attempts, exc.reason)
            return n.state
        _finish(n, Notification.State.DROPPED if late else Notification.State.FAILED, exc.reason)
        logger.error("notification %s failed after %d attempts: %s", n.pk, n.attempts, exc.reason)
        _audit(n, Outcome.FAILURE)
        return n.state
    n.attempts += 1
    with transaction.atomic():
        _finish(n, Notification.State.SENT)
        if n.kind == Notification.Kind.SHARE_LINK and n.share_id is not None:
            mark_notified(n.share_id)
        _audit(n, Outcome.SUCCESS)
    return n.state


def _audit(n: Notification, outcome: str) -> None:
    share = n.share
    if outcome != Outcome.SUCCESS:
        count(Usage.NOTIFICATIONS_FAILED, organisation=n.organisation_id, kind=n.channel)
    elif n.channel == Notification.Channel.SMS:
        count(Usage.SMS_SENT, organisation=n.organisation_id)
    else:
        count(Usage.EMAILS_SENT, organisation=n.organisation_id)
    record(
        Action.NOTIFICATION_SENT if outcome == Outcome.SUCCESS else Action.NOTIFICATION_FAILED,
        outcome=outcome,
        actor_type="system",
        organisation=n.organisation_id,
        patient=share.patient_id if share else None,
        detail={
            "share": share.pk if share else None,
            "notification": n.pk,
            "kind": n.kind,
            "channel": n.channel,
            "attempts": n.attempts,
            **({"error": n.last_error} if n.last_error else {}),
        },
    )


def requeue_stale() -> int:
    """Put back rows a crashed worker left "sending" (at least once; the Message-ID de-duplicates)."""
    cutoff = timezone.now() - STALE_CLAIM
    stale = list(
        Notification.objects.filter(state=Notification.State.SENDING, claimed_at__lt=cutoff).values_list(
            "pk", flat=True
        )
    )
    for pk in stale:
        with transaction.atomic():
            if Notification.objects.filter(pk=pk, state=Notification.State.SENDING).update(
                state=Notification.State.PENDING, claimed_at=None
            ):
                _enqueue_on_commit(Notification.objects.get(pk=pk))
    return len(stale)


def link_notification(share: Share) -> Notification | None:
    """The latest e-mail with the link, for the share page ("sent", "failed: reason")."""
    return share.notifications.filter(kind=Notification.Kind.SHARE_LINK).first()


def unsent_sender_notices(share: Share) -> list[Notification]:
    """The notices to the share's sender that did not reach them (no address, or delivery failed), newest first,
    for the share's page. A notice dropped because the share ended is no news to anyone."""
    return list(
        share.notifications.filter(kind__in=SENDER_NOTICES, to_sender__isnull=False)
        .filter(state__in=(Notification.State.FAILED, Notification.State.DROPPED))
        .exclude(last_error=ENDED)
    )
