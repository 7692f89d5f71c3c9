"""The second login step (docs/security.md A9): a code from an authenticator app (TOTP), or a one-time recovery
code; its limits (A26), its audit trail and its reset.

django-otp keeps the authenticator (``TOTPDevice``: the secret, and the last time step used, so that a code works
only once) and marks a session as verified (``django_otp.login``; ``OTPMiddleware`` gives
``request.user.is_verified()``). The rules around it live here: who must pass the step, setting up an app, recovery
codes, the limits on wrong codes, and the reset. Who is sent where is ``organisations.auth``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urlencode

import django_otp
import segno
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from radshare.audit.actions import Action
from radshare.audit.models import AuditEvent
from radshare.audit.services import record
from radshare.core import keys
from radshare.core.keys import Purpose
from radshare.organisations.models import Organisation, RecoveryCode, Sender
from radshare.organisations.services import (
    Counted,
    LoginAttempt,
    Refusal,
    login_refusal,
    login_site,
)

ISSUER = "radshare"  # the name authenticator apps show next to the username
RECOVERY_CODES = 10
# Recovery codes: 12 characters of Crockford base32 (60 bits from ``secrets``), shown as XXXX-XXXX-XXXX.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})
RECOVERY_CODE_LENGTH = 12


class Verdict(StrEnum):
    PASSED = "passed"  # a right code from the app
    RECOVERY = "recovery"  # a right recovery code, now used up
    WRONG = "wrong"
    THROTTLED = "throttled"  # refused before the code was looked at

    @property
    def passed(self) -> bool:
        return self in (Verdict.PASSED, Verdict.RECOVERY)


# --- Who must pass it -------------------------------------------------------------------------------------------


def required(user: Any) -> bool:
    """Operators (superusers) always; a sender when their organisation requires it (``require_two_factor``)."""
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    organisation = user.organisation
    return organisation is not None and organisation.require_two_factor


def pending(request: HttpRequest) -> bool:
    """This session passed the password but not yet the second step it needs. Without django-otp's middleware no
    session counts as verified (closed, not open)."""
    user = request.user
    return required(user) and getattr(user, "otp_device", None) is None


def has_authenticator(user: Sender) -> bool:
    return bool(TOTPDevice.objects.filter(user=user, confirmed=True).exists())


# --- Setting up an authenticator app ------------------------------------------------------------------------------


def enrolment_device(user: Sender) -> TOTPDevice:
    """The authenticator being set up: an unconfirmed device, made once and kept until it is confirmed, so the QR
    code stays the same when the page is loaded again. It counts only after a right code (``confirm_enrolment``)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()
    return device or TOTPDevice.objects.create(user=user, name="authenticator app", confirmed=False)


def secret_text(device: TOTPDevice) -> str:
    """The secret as an app takes it when typed: base32, in groups of four."""
    secret = base64.b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def provisioning_uri(device: TOTPDevice) -> str:
    """The ``otpauth://`` URI the QR code holds (the Key Uri Format of Google Authenticator, which apps share)."""
    params = {
        "secret": secret_text(device).replace(" ", ""),
        "issuer": ISSUER,
        "algorithm": "SHA1",
        "digits": device.digits,
        "period": device.step,
    }
    label = quote(f"{ISSUER}:{device.user.get_username()}")
    return f"otpauth://totp/{label}?{urlencode(params, quote_via=quote)}"


def qr_code(device: TOTPDevice) -> str:
    """The QR code of ``provisioning_uri`` as a data: URI (an SVG image): the page's CSP allows no other source."""
    return str(segno.make_qr(provisioning_uri(device), error="m").svg_data_uri(scale=5, border=4))


def confirm_enrolment(request: HttpRequest, user: Sender, code: str) -> tuple[Verdict, list[str]]:
    """Confirm the app being set up with a code it shows. A right code makes it the account's authenticator (any
    other is removed), passes this session's second step and gives the new recovery codes, to be shown once; a
    wrong one counts towards the limits like any wrong code."""
    attempt = LoginAttempt.of(request, user.get_username())
    if _throttled(request, user, attempt):
        return Verdict.THROTTLED, []
    with transaction.atomic():
        device = (
            TOTPDevice.objects.select_for_update().filter(user=user, confirmed=False).order_by("-pk").first()
        )
        if device is None or not _totp_matches(device, code):
            _record_failure(request, user, attempt, "enrolment")
            return Verdict.WRONG, []
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
        codes = _replace_recovery_codes(user)
        record(Action(f"{attempt.site}.2fa.enrolled"), request=request, user=user)
    _pass(request, device)
    return Verdict.PASSED, codes


# --- The second step --------------------------------------------------------------------------------------------


def verify(request: HttpRequest, user: Sender, code: str) -> Verdict:
    """Check a code from the app (the time step before, now or after, each once only) or a recovery code; a pass
    marks this session as verified. Refused before any check while the limits hold (docs/security.md A26)."""
    attempt = LoginAttempt.of(request, user.get_username())
    if _throttled(request, user, attempt):
        return Verdict.THROTTLED
    code = "".join(code.split())
    with transaction.atomic():
        # Locked, so that two requests with the same code cannot both pass before the first stores its time step.
        device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True).first()
        from_app = device is not None and len(code) == device.digits
        if device is None:
            verdict = Verdict.WRONG
        elif from_app:
            verdict = Verdict.PASSED if _totp_matches(device, code) else Verdict.WRONG
        else:
            verdict = Verdict.RECOVERY if _use_recovery_code(user, code) else Verdict.WRONG
        if verdict == Verdict.WRONG:
            _record_failure(request, user, attempt, "totp" if from_app else "recovery")
            return verdict
        if verdict == Verdict.RECOVERY:
            left = recovery_codes_left(user)
            record(
                Action(f"{attempt.site}.2fa.recovery_used"), request=request, user=user, detail={"left": left}
            )
        else:
            record(Action(f"{attempt.site}.2fa.verified"), request=request, user=user)
    assert device is not None  # noqa: S101 - a pass needs a device
    _pass(request, device)
    return verdict


def _totp_matches(device: TOTPDevice, code: str) -> bool:
    code = "".join(code.split())
    # django-otp's own exponential back-off is off (OTP_TOTP_THROTTLE_FACTOR = 0): the limits below replace it.
    return len(code) == device.digits and code.isdigit() and bool(device.verify_token(code))


def _pass(request: HttpRequest, device: TOTPDevice) -> None:
    """The session passed its second step: a new session id for the raised rights, then django-otp's mark."""
    request.session.cycle_key()
    django_otp.login(request, device)


# --- Recovery codes ---------------------------------------------------------------------------------------------
# Stored as a keyed hash (HMAC-SHA256 under the HASHING key, docs/security.md A28), not a password hash: the codes
# are random with 60 bits, so a slow hash adds nothing against guessing, and a stolen database alone reveals
# nothing without the key. One query looks a code up under every candidate key, and its UPDATE uses it up, so
# that two requests with one code cannot both pass. A code made under a key since dropped from
# RADSHARE_OLD_SECRET_KEYS no longer works: the sender makes new ones (or is reset).


def _hashes(user_id: int, code: str) -> list[str]:
    message = f"recovery-code:{user_id}:{code}".encode()
    return [
        f"{keys.key_id(key)}${hmac.new(key, message, hashlib.sha256).hexdigest()}"
        for key in keys.candidates(Purpose.HASHING)
    ]


def _readable(code: str) -> str:
    return f"{code[:4]}-{code[4:8]}-{code[8:]}"


def _replace_recovery_codes(user: Sender) -> list[str]:
    codes = [
        "".join(secrets.choice(_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH)) for _ in range(RECOVERY_CODES)
    ]
    RecoveryCode.objects.filter(sender=user).delete()
    RecoveryCode.objects.bulk_create(
        RecoveryCode(sender=user, code_hash=_hashes(user.pk, c)[0]) for c in codes
    )
    return [_readable(c) for c in codes]


def new_recovery_codes(request: HttpRequest, user: Sender) -> list[str]:
    """New recovery codes for ``user``, to be shown once; the old ones stop working."""
    with transaction.atomic():
        codes = _replace_recovery_codes(user)
        record(Action(f"{login_site(request)}.2fa.recovery_codes"), request=request, user=user)
    return codes


def recovery_codes_left(user: Sender) -> int:
    return RecoveryCode.objects.filter(sender=user, used_at__isnull=True).count()


def _use_recovery_code(user: Sender, typed: str) -> bool:
    """Use up ``user``'s unused recovery code ``typed`` (case, dashes and spaces do not matter; O, I and L are
    read as 0, 1 and 1). False when it is no such code, or used already."""
    code = "".join(typed.split()).replace("-", "").upper().translate(_READ_AS)
    if len(code) != RECOVERY_CODE_LENGTH:
        return False
    unused = RecoveryCode.objects.filter(
        sender=user, used_at__isnull=True, code_hash__in=_hashes(user.pk, code)
    )
    return unused.update(used_at=timezone.now()) > 0


# --- Reset --------------------------------------------------------------------------------------------------------


def reset_by_admin(organisation: Organisation, sender_id: int, request: HttpRequest) -> Sender:
    """An organisation admin resets a sender of their own organisation (another's, or an operator, is
    ``Sender.DoesNotExist``): the app and the recovery codes are removed, and the sender sets up an app again at
    their next request; sessions verified before no longer count."""
    with transaction.atomic():
        target = Sender.objects.select_for_update().get(
            organisation=organisation, pk=sender_id, is_superuser=False
        )
        _remove_factors(target)
        record(
            Action.PORTAL_2FA_RESET,
            request=request,
            organisation=organisation,
            detail={"sender_id": target.pk, "username": target.get_username()},
        )
    return target


def reset_by_operator(username: str) -> Sender:
    """The operator resets any account (``radshare sender reset-2fa``); ``Sender.DoesNotExist`` if unknown."""
    with transaction.atomic():
        target = Sender.objects.select_for_update().get(username=username)
        _remove_factors(target)
        record(
            Action.ADMIN_2FA_RESET,
            actor_type=AuditEvent.ActorType.SYSTEM,
            actor_label="operator (radshare sender reset-2fa)",
            organisation=target.organisation_id,
            detail={"sender_id": target.pk, "username": target.get_username()},
        )
    return target


def _remove_factors(target: Sender) -> None:
    TOTPDevice.objects.filter(user=target).delete()
    RecoveryCode.objects.filter(sender=target).delete()


# --- Limits on wrong codes (docs/security.md A9, A26) -------------------------------------------------------------
# The password's limits (organisations.services.login_refusal), counted on the second step's own failures: 10 per
# account and address (or per known device) and 50 per address in 15 minutes; past 50 on one account in an hour,
# one attempt a minute, except from addresses where the account passed the second step lately.

FAILED = (Action.PORTAL_2FA_FAILED, Action.ADMIN_2FA_FAILED)
PASSED = (
    Action.PORTAL_2FA_VERIFIED,
    Action.ADMIN_2FA_VERIFIED,
    Action.PORTAL_2FA_RECOVERY_USED,
    Action.ADMIN_2FA_RECOVERY_USED,
    Action.PORTAL_2FA_ENROLLED,
    Action.ADMIN_2FA_ENROLLED,
)
SECOND_STEP = Counted(FAILED, PASSED)


def refusal(attempt: LoginAttempt) -> Refusal | None:
    """Why a code from ``attempt`` is refused before it is checked, or None."""
    return login_refusal(attempt, SECOND_STEP)


def _throttled(request: HttpRequest, user: Sender, attempt: LoginAttempt) -> bool:
    found = refusal(attempt)
    if found is None:
        return False
    record(
        Action(f"{attempt.site}.2fa.throttled"),
        outcome=AuditEvent.Outcome.DENIED,
        request=request,
        user=user,
        detail={"reason": str(found.scope), "until": found.until.isoformat()},
    )
    return True


def _record_failure(request: HttpRequest, user: Sender, attempt: LoginAttempt, kind: str) -> None:
    detail = {"kind": kind} | ({"device": attempt.device} if attempt.device else {})
    record(
        Action(f"{attempt.site}.2fa.failed"),
        outcome=AuditEvent.Outcome.FAILURE,
        request=request,
        user=user,
        detail=detail,
    )
