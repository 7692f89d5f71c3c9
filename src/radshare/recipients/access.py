"""The recipient's three locks: the link's code, the patient's date of birth, and an SMS code (docs/security.md A1-A5).

Every try is counted per share (lockouts, docs/architecture.md "Lockouts") and per client address across all
shares (A5).
Comparisons run in constant time; nothing here logs or stores a code, a date of birth or a phone number.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone

from radshare.audit.actions import Action
from radshare.audit.services import Outcome
from radshare.core import crypto
from radshare.core.net import client_address
from radshare.core.usage import Usage, count
from radshare.delivery import outbox
from radshare.delivery.models import Notification
from radshare.recipients.models import AccessAttempt, OneTimeCode
from radshare.recipients.session import record_recipient, session_hash
from radshare.shares import codes
from radshare.shares.models import Share

Step = AccessAttempt.Step

# Per client address, across all shares (A5): wrong tries allowed in a window.
CLIENT_LIMITS: dict[str, tuple[int, timedelta]] = {
    Step.CODE: (20, timedelta(minutes=15)),
    Step.BIRTH_DATE: (20, timedelta(hours=1)),
    Step.SMS_CODE: (20, timedelta(hours=1)),
}
BIRTH_DATE_TRIES = 5  # then locked for an hour; the third lock holds until the sender unlocks (A3)
BIRTH_DATE_LOCK = timedelta(hours=1)
LOCKS_BEFORE_HOLD = 3
SMS_CODE_VALID = timedelta(minutes=5)
SMS_CODE_TRIES = 5  # per code
SMS_CODE_TRIES_PER_SHARE = 10  # all codes together; a new code does not reset it (A4)
SMS_PER_WINDOW = (3, timedelta(minutes=15))


def _audit(request: HttpRequest, action: Action, share: Share | None, outcome: str, **detail: Any) -> None:
    record_recipient(action, request, share, outcome=outcome, **detail)


def _attempt(request: HttpRequest, step: str, share: Share | None, success: bool) -> None:
    AccessAttempt.objects.create(
        share=share, step=step, success=success, client_address=client_address(request)
    )


def client_throttled(request: HttpRequest, step: str) -> bool:
    limit, window = CLIENT_LIMITS[step]
    wrong = AccessAttempt.objects.filter(
        client_address=client_address(request),
        step=step,
        success=False,
        created_at__gte=timezone.now() - window,
    ).count()
    return wrong >= limit


def find_share(request: HttpRequest, typed: str) -> Share | None:
    """The share whose code this is, whatever its state (the caller decides what to show); None when unknown.
    Unknown, expired and revoked codes are recorded alike; the hash is computed for every input (timing)."""
    code = codes.normalize_code(typed)
    digests = codes.code_hashes(code or "0" * codes.LENGTH)
    share = (
        Share.objects.select_related("organisation").filter(code_hash__in=digests).first() if code else None
    )
    usable = share is not None and share.is_live()
    _attempt(request, Step.CODE, share if usable else None, usable)
    _audit(
        request,
        Action.RECIPIENT_CODE,
        share if usable else None,
        Outcome.SUCCESS if usable else Outcome.DENIED,
    )
    return share if usable else None


def _lock(share: Share, hold: bool) -> None:
    """Lock after too many wrong tries; the sender is told each time (A3)."""
    share.locked_until = Share.HELD if hold else timezone.now() + BIRTH_DATE_LOCK
    share.save(update_fields=["locked_until", "birth_date_failures", "birth_date_locks", "sms_code_failures"])
    count(Usage.RECIPIENT_LOCKOUTS, organisation=share.organisation_id)
    outbox.queue_locked_notice(share)


def refuse_locked(request: HttpRequest, share: Share) -> None:
    """A date of birth given for a locked share: not compared, not counted against the share, recorded."""
    _attempt(request, Step.BIRTH_DATE, share, False)
    _audit(request, Action.RECIPIENT_BIRTH_DATE, share, Outcome.DENIED, reason="locked")


@dataclass(frozen=True)
class Check:
    ok: bool
    tries_left: int = 0
    locked: bool = False


def expected_birth_date(share: Share) -> dt.date | None:
    if share.confirmed_birth_date is not None:
        return share.confirmed_birth_date
    return share.patient.patient_birth_date if share.patient else None


def check_birth_date(request: HttpRequest, share: Share, typed: dt.date) -> Check:
    expected = expected_birth_date(share)
    right = expected is not None and hmac.compare_digest(typed.isoformat(), expected.isoformat())
    with transaction.atomic():
        share = Share.objects.select_for_update().get(pk=share.pk)
        _attempt(request, Step.BIRTH_DATE, share, right)
        if right:
            share.birth_date_failures = 0
            share.save(update_fields=["birth_date_failures"])
            _audit(request, Action.RECIPIENT_BIRTH_DATE, share, Outcome.SUCCESS)
            return Check(ok=True)
        share.birth_date_failures += 1
        left = BIRTH_DATE_TRIES - share.birth_date_failures
        if left <= 0:
            share.birth_date_failures = 0
            share.birth_date_locks += 1
            _lock(share, hold=share.birth_date_locks >= LOCKS_BEFORE_HOLD)
        else:
            share.save(update_fields=["birth_date_failures"])
        _audit(request, Action.RECIPIENT_BIRTH_DATE, share, Outcome.FAILURE, locked=left <= 0)
        return Check(ok=False, tries_left=max(left, 0), locked=left <= 0)


def _code_message(share: Share, code: str) -> bytes:
    return f"radshare-sms-code:{share.pk}:{code}".encode()


def _code_hash(share: Share, code: str) -> str:
    """The keyed hash an SMS code of ``share`` is stored as (under the current key)."""
    return crypto.keyed_hash(_code_message(share, code))


def _code_matches(share: Share, stored: str, typed: str) -> bool:
    """Whether ``typed`` is the code ``stored`` was made of, under any candidate key (docs/security.md A28: a code
    sent just before a key rotation still works); constant time."""
    return crypto.hash_matches(stored, _code_message(share, typed))


def sms_allowed(share: Share) -> bool:
    limit, window = SMS_PER_WINDOW
    return OneTimeCode.objects.filter(share=share, created_at__gte=timezone.now() - window).count() < limit


def send_sms_code(request: HttpRequest, share: Share) -> bool:
    """A new 6-digit code by SMS to the registered phone, bound to this browser session. False when the share
    had its SMS messages for now (A4: at most 3 in 15 minutes)."""
    if request.session.session_key is None:
        request.session.save()
    bound_to = session_hash(request)
    code = f"{secrets.randbelow(10**6):06d}"
    now = timezone.now()
    with transaction.atomic():
        Share.objects.select_for_update().get(pk=share.pk)  # one sender of codes per share at a time
        if not sms_allowed(share):
            _audit(request, Action.RECIPIENT_SMS_CODE_SEND, share, Outcome.DENIED, reason="too many SMS")
            return False
        # Only the newest code works: older ones of this session end now.
        OneTimeCode.objects.filter(share=share, used_at__isnull=True, expires_at__gt=now).update(
            expires_at=now
        )
        OneTimeCode.objects.create(
            share=share,
            session_hash=bound_to,
            code_hash=_code_hash(share, code),
            expires_at=now + SMS_CODE_VALID,
        )
        notification = outbox.queue_sms_code(share, code, now + SMS_CODE_VALID)
        _audit(request, Action.RECIPIENT_SMS_CODE_SEND, share, Outcome.SUCCESS, notification=notification.pk)
    # The recipient is waiting at the page: try the gateway now; the outbox retries while the code is valid.
    outbox.deliver(notification.pk)
    return True


class SmsResult:
    OK = "ok"
    WRONG = "wrong"
    EXPIRED = "expired"  # or never asked for in this session
    USED = "used"
    TOO_MANY = "too_many"  # this code had its tries: ask for a new one
    LOCKED = "locked"


@dataclass(frozen=True)
class SmsCheck:
    """What a typed SMS code got (a ``SmsResult``), with the wrong tries still allowed after it: with this code,
    and for the share over all its codes (A4)."""

    result: str
    code_tries_left: int = 0
    share_tries_left: int = 0


def check_sms_code(request: HttpRequest, share: Share, typed: str) -> SmsCheck:
    now = timezone.now()
    with transaction.atomic():
        share = Share.objects.select_for_update().get(pk=share.pk)
        otp = (
            OneTimeCode.objects.select_for_update()
            .filter(share=share, session_hash=session_hash(request))
            .order_by("-created_at", "-pk")
            .first()
        )
        if otp is None or (otp.used_at is None and otp.expires_at <= now):
            result = SmsResult.EXPIRED
        elif otp.used_at is not None:
            result = SmsResult.USED
        elif otp.failures >= SMS_CODE_TRIES:
            result = SmsResult.TOO_MANY
        elif _code_matches(share, otp.code_hash, typed):
            otp.used_at = now
            otp.save(update_fields=["used_at"])
            _attempt(request, Step.SMS_CODE, share, True)
            _audit(request, Action.RECIPIENT_LOGIN, share, Outcome.SUCCESS, method="link+dob+sms")
            return SmsCheck(SmsResult.OK)
        else:
            otp.failures = F("failures") + 1
            otp.save(update_fields=["failures"])
            otp.refresh_from_db(fields=["failures"])
            share.sms_code_failures += 1
            result = SmsResult.TOO_MANY if otp.failures >= SMS_CODE_TRIES else SmsResult.WRONG
            if share.sms_code_failures >= SMS_CODE_TRIES_PER_SHARE:
                _lock(share, hold=True)
                result = SmsResult.LOCKED
            else:
                share.save(update_fields=["sms_code_failures"])
        _attempt(request, Step.SMS_CODE, share, False)
        _audit(request, Action.RECIPIENT_SMS_CODE, share, Outcome.FAILURE, result=result)
        return SmsCheck(
            result,
            code_tries_left=max(SMS_CODE_TRIES - otp.failures, 0) if otp is not None else 0,
            share_tries_left=max(SMS_CODE_TRIES_PER_SHARE - share.sms_code_failures, 0),
        )


def pending_sms(share: Share) -> Notification | None:
    return share.notifications.filter(kind=Notification.Kind.SMS_CODE).first()
