"""Organisations, senders and PACS nodes: the rules behind the operator commands and the portal login."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, models, transaction
from django.dispatch import Signal
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils import timezone

from radshare.audit.actions import Action
from radshare.audit.models import AuditEvent
from radshare.audit.services import record
from radshare.core import crypto
from radshare.core.net import client_address
from radshare.organisations.models import ApiKey, Organisation, PacsNode, Sender

# --- Sender login throttling (docs/security.md A9, A26) --------------------------------------------------------
# Failures are counted from the audit trail, so the limits hold across every web process sharing the database. A
# stranger must not be able to lock a sender out, so no limit refuses an account everywhere:
# - an unknown browser is refused an account from its address after MAX_FAILED_PER_ACCOUNT_AND_ADDRESS failures on
#   that account from that address, and everything from an address after MAX_FAILED_PER_ADDRESS failures from it;
# - a browser the account logged in from before (a signed known-device cookie) is counted on its own, per device,
#   so failures from elsewhere (even from the same address behind a NAT) never refuse it;
# - failures on one account from everywhere (a botnet) only slow unknown browsers down: past MAX_FAILED_PER_ACCOUNT
#   in ACCOUNT_WINDOW, one attempt per SLOW_DOWN_INTERVAL, except from addresses the account logged in from lately.
LOGIN_WINDOW = timedelta(minutes=15)
MAX_FAILED_PER_ACCOUNT_AND_ADDRESS = 10
MAX_FAILED_PER_DEVICE = 10
MAX_FAILED_PER_ADDRESS = 50
ACCOUNT_WINDOW = timedelta(hours=1)
MAX_FAILED_PER_ACCOUNT = 50
SLOW_DOWN_INTERVAL = timedelta(minutes=1)
KNOWN_ADDRESS_AGE = timedelta(days=30)
KNOWN_DEVICE_AGE = timedelta(days=90)
KNOWN_DEVICE_ACCOUNTS = 10  # accounts one browser is remembered for (a shared workstation)
FAILED_LOGIN_ACTIONS = (Action.PORTAL_LOGIN_FAILED, Action.ADMIN_LOGIN_FAILED)
LOGIN_ACTIONS = (Action.PORTAL_LOGIN, Action.ADMIN_LOGIN)
_DEVICE_SALT = "radshare.organisations.known-device"

# Sent with ``account`` (a Sender) and ``event`` (the audit entry) when failures lock or slow down a known account:
# the notifications app tells the sender (the outbox lives above this app).
login_locked = Signal()
# Sent with ``account`` and ``old`` (the address it had) when a sender changes or removes their notice address:
# the notifications app tells the old address (docs/security.md A26).
own_email_changed = Signal()


class LockScope(StrEnum):
    ACCOUNT_AND_ADDRESS = "account_address"
    DEVICE = "device"
    ADDRESS = "address"
    ACCOUNT = "account"  # the slow-down


@dataclass(frozen=True)
class LoginAttempt:
    """Who tries to log in, from where: ``device`` is the known device's id when this browser holds a valid
    known-device cookie for ``username``, else empty."""

    site: str
    username: str
    address: str
    device: str

    @classmethod
    def of(cls, request: HttpRequest | None, username: str) -> LoginAttempt:
        username = str(username)[:150]
        if request is None:
            return cls("portal", username, "", "")
        return cls(login_site(request), username, client_address(request), known_device(request, username))


@dataclass(frozen=True)
class Refusal:
    scope: LockScope
    until: datetime


@dataclass(frozen=True)
class Counted:
    """What a set of limits counts: its failures, and the successes whose addresses its slow-down spares. The
    password and the second login step (``two_factor.SECOND_STEP``) have the same limits, each on its own entries."""

    failed: tuple[Action, ...]
    passed: tuple[Action, ...]


PASSWORD = Counted(FAILED_LOGIN_ACTIONS, LOGIN_ACTIONS)


def login_site(request: HttpRequest | None) -> str:
    """``admin`` for the operators' admin site, ``portal`` for everything else (the audit action's prefix)."""
    return "admin" if request is not None and request.path.startswith("/admin/") else "portal"


def _failures(attempt: LoginAttempt, scope: LockScope, counted: Counted) -> models.QuerySet[AuditEvent]:
    failed = AuditEvent.objects.filter(action__in=counted.failed)
    if scope == LockScope.DEVICE:
        return failed.filter(actor_label=attempt.username, detail__device=attempt.device)
    # A known device's failures are its own: they count against nobody else.
    failed = failed.exclude(detail__has_key="device")
    if scope == LockScope.ACCOUNT_AND_ADDRESS:
        return failed.filter(actor_label=attempt.username, client_address=attempt.address)
    if scope == LockScope.ADDRESS:
        return failed.filter(client_address=attempt.address)
    return failed.filter(actor_label=attempt.username)


def _latest(
    attempt: LoginAttempt, scope: LockScope, window: timedelta, limit: int, counted: Counted
) -> list[datetime]:
    """The times of the latest ``limit`` failures in ``scope`` within ``window``, newest first."""
    since = timezone.now() - window
    failures = _failures(attempt, scope, counted).filter(timestamp__gte=since).order_by("-timestamp")
    return list(failures.values_list("timestamp", flat=True)[:limit])


def _locked_until(attempt: LoginAttempt, scope: LockScope, counted: Counted) -> datetime | None:
    """While ``scope`` has its maximum of failures in LOGIN_WINDOW: when the oldest of them leaves the window."""
    limit = {
        LockScope.DEVICE: MAX_FAILED_PER_DEVICE,
        LockScope.ACCOUNT_AND_ADDRESS: MAX_FAILED_PER_ACCOUNT_AND_ADDRESS,
        LockScope.ADDRESS: MAX_FAILED_PER_ADDRESS,
    }[scope]
    failures = _latest(attempt, scope, LOGIN_WINDOW, limit, counted)
    return failures[-1] + LOGIN_WINDOW if len(failures) >= limit else None


def _known_address(attempt: LoginAttempt, counted: Counted) -> bool:
    """The account logged in from this address lately (the slow-down spares its owner's usual places)."""
    return AuditEvent.objects.filter(
        action__in=counted.passed,
        outcome=AuditEvent.Outcome.SUCCESS,
        actor_label=attempt.username,
        client_address=attempt.address,
        timestamp__gte=timezone.now() - KNOWN_ADDRESS_AGE,
    ).exists()


def _scopes(attempt: LoginAttempt) -> list[LockScope]:
    if attempt.device:
        return [LockScope.DEVICE]
    scopes = [LockScope.ACCOUNT_AND_ADDRESS] if attempt.username else []
    return scopes + ([LockScope.ADDRESS] if attempt.address else [])


def login_refusal(attempt: LoginAttempt, counted: Counted = PASSWORD) -> Refusal | None:
    """Why ``attempt`` is refused before its password (or, with ``two_factor.SECOND_STEP``, its code) is checked,
    or None (docs/security.md A9, A26).

    Only counts are compared, never whether the account exists, so unknown and known accounts take the same work
    and get the same answer.
    """
    for scope in _scopes(attempt):
        until = _locked_until(attempt, scope, counted)
        if until is not None:
            return Refusal(scope, until)
    if attempt.device or not attempt.username:
        return None
    failures = _latest(attempt, LockScope.ACCOUNT, ACCOUNT_WINDOW, MAX_FAILED_PER_ACCOUNT, counted)
    if len(failures) < MAX_FAILED_PER_ACCOUNT:
        return None
    next_try = failures[0] + SLOW_DOWN_INTERVAL
    if next_try <= timezone.now() or _known_address(attempt, counted):
        return None
    return Refusal(LockScope.ACCOUNT, next_try)


def record_refused_login(request: HttpRequest | None, attempt: LoginAttempt, refusal: Refusal) -> None:
    """A refusal happens before the password is checked, so no login signal fires: it is recorded here."""
    record(
        Action(f"{attempt.site}.login.throttled"),
        outcome=AuditEvent.Outcome.DENIED,
        request=request,
        actor_type=AuditEvent.ActorType.ANONYMOUS,
        actor_label=attempt.username,
        organisation=_organisation_of(attempt.username),
        detail={"reason": str(refusal.scope), "until": refusal.until.isoformat()},
    )


def _organisation_of(username: str) -> int | None:
    """A known account's attempts are filed under its organisation, so that the organisation's admins see them."""
    return Sender.objects.filter(username=username).values_list("organisation_id", flat=True).first()


def record_failed_login(request: HttpRequest | None, username: str) -> None:
    """Record a wrong password; when it locks (or slows down) the account somewhere, record that and tell the
    account's owner. Unknown accounts are counted, locked and recorded like known ones (timing, A26)."""
    attempt = LoginAttempt.of(request, username)
    account = Sender.objects.filter(username=attempt.username).first()
    counted = PASSWORD
    with transaction.atomic():
        record(
            Action(f"{attempt.site}.login.failed"),
            outcome=AuditEvent.Outcome.FAILURE,
            request=request,
            actor_type=AuditEvent.ActorType.ANONYMOUS,
            actor_label=attempt.username,
            organisation=account.organisation_id if account is not None else None,
            detail={"device": attempt.device} if attempt.device else None,
        )
        for scope in _scopes(attempt):
            until = _locked_until(attempt, scope, counted)
            if until is not None:
                _lock(request, attempt, account, scope, until)
        if not attempt.device and attempt.username:
            failures = _latest(attempt, LockScope.ACCOUNT, ACCOUNT_WINDOW, MAX_FAILED_PER_ACCOUNT, counted)
            if len(failures) >= MAX_FAILED_PER_ACCOUNT:
                _lock(request, attempt, account, LockScope.ACCOUNT, failures[-1] + ACCOUNT_WINDOW)


def _lock(
    request: HttpRequest | None,
    attempt: LoginAttempt,
    account: Sender | None,
    scope: LockScope,
    until: datetime,
) -> None:
    """Record that a lock (or the slow-down) started, once per lock period, and tell the account's owner."""
    slowed = scope == LockScope.ACCOUNT
    action = Action(f"{attempt.site}.login.{'slowed' if slowed else 'locked'}")
    label = "" if scope == LockScope.ADDRESS else attempt.username
    period = ACCOUNT_WINDOW if slowed else LOGIN_WINDOW
    earlier = AuditEvent.objects.filter(
        action=action, actor_label=label, detail__scope=str(scope), timestamp__gte=timezone.now() - period
    )
    if scope in (LockScope.ACCOUNT_AND_ADDRESS, LockScope.ADDRESS):
        earlier = earlier.filter(client_address=attempt.address)
    elif scope == LockScope.DEVICE:
        earlier = earlier.filter(detail__device=attempt.device)
    if earlier.exists():
        return
    detail: dict[str, str] = {"scope": str(scope), "until": until.isoformat()}
    if scope == LockScope.DEVICE:
        detail["device"] = attempt.device
    owner = account if scope != LockScope.ADDRESS else None
    event = record(
        action,
        outcome=AuditEvent.Outcome.DENIED,
        request=request,
        actor_type=AuditEvent.ActorType.ANONYMOUS,
        actor_label=label,
        organisation=owner.organisation_id if owner is not None else None,
        detail=detail,
    )
    if owner is not None:
        login_locked.send(sender=Sender, account=owner, event=event)


# --- Known devices (docs/security.md A26) ----------------------------------------------------------------------
# A browser that logged in to an account gets a signed cookie naming it (by a keyed hash of the username) and a
# random device id. Like device cookies at GitHub or Okta, it survives a change of address; it grants nothing by
# itself, it only takes the browser out of the counts strangers can fill.


def device_cookie_name() -> str:
    return "__Host-rs_device" if settings.SESSION_COOKIE_SECURE else "rs_device"


def _account_tags(username: str) -> list[str]:
    """The tags that may name ``username`` in a cookie: under the current key first, then under each older one
    (docs/security.md A28), so a key rotation forgets no known device."""
    return [digest[:32] for digest in crypto.keyed_hashes(f"known-device:{username}".encode())]


def _read_device(request: HttpRequest) -> tuple[str, dict[str, int]]:
    """The device id and {account tag: time of the last login} from a valid cookie; ("", {}) without one."""
    raw = request.COOKIES.get(device_cookie_name(), "")
    if not raw:
        return "", {}
    try:
        data = signing.loads(raw, salt=_DEVICE_SALT, max_age=KNOWN_DEVICE_AGE)
    except signing.BadSignature:
        return "", {}
    device, accounts = (data.get("d"), data.get("a")) if isinstance(data, dict) else (None, None)
    if not isinstance(device, str) or not isinstance(accounts, dict):
        return "", {}
    return device, {tag: at for tag, at in accounts.items() if isinstance(tag, str) and isinstance(at, int)}


def known_device(request: HttpRequest, username: str) -> str:
    """The id of this browser when it holds a valid known-device cookie for ``username``, else ""."""
    device, accounts = _read_device(request)
    logged_in_at = max(accounts.get(tag, 0) for tag in _account_tags(username))
    fresh = logged_in_at > time.time() - KNOWN_DEVICE_AGE.total_seconds()
    return device if device and fresh else ""


def remember_device(request: HttpRequest, response: HttpResponseBase, user: AbstractBaseUser) -> None:
    """After a successful login: mark this browser as a known device of ``user`` (for KNOWN_DEVICE_AGE)."""
    device, accounts = _read_device(request)
    now = int(time.time())
    current, *older = _account_tags(user.get_username())
    for tag in older:
        accounts.pop(tag, None)
    accounts[current] = now
    cutoff = now - KNOWN_DEVICE_AGE.total_seconds()
    latest = sorted(((at, tag) for tag, at in accounts.items() if at > cutoff), reverse=True)
    value = {
        "d": device or secrets.token_urlsafe(16),
        "a": {tag: at for at, tag in latest[:KNOWN_DEVICE_ACCOUNTS]},
    }
    response.set_cookie(
        device_cookie_name(),
        signing.dumps(value, salt=_DEVICE_SALT),
        max_age=int(KNOWN_DEVICE_AGE.total_seconds()),
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )


def create_organisation(
    slug: str,
    name: str,
    *,
    contact_phone: str = "",
    contact_email: str = "",
    contact_url: str = "",
    require_two_factor: bool | None = None,
) -> Organisation:
    """A new organisation. ``require_two_factor``: default on, except in demo mode (docs/security.md A9)."""
    if require_two_factor is None:
        require_two_factor = not settings.RADSHARE.demo
    org = Organisation(
        slug=slug,
        name=name.strip(),
        contact_phone=contact_phone,
        contact_email=contact_email,
        contact_url=contact_url,
        require_two_factor=require_two_factor,
    )
    if not org.name:
        raise ValidationError({"name": "the name must not be empty"})
    org.full_clean()
    org.save()
    return org


def generate_password() -> str:
    return secrets.token_urlsafe(15)


def create_sender(
    organisation: Organisation,
    username: str,
    password: str,
    *,
    admin: bool = False,
    email: str = "",
    log_admin: bool = False,
) -> Sender:
    sender = Sender(
        username=username,
        organisation=organisation,
        email=email,
        role=Sender.Role.ADMIN if admin else Sender.Role.SENDER,
        is_log_admin=log_admin,
    )
    sender.full_clean(exclude=["password"])
    validate_password(password, user=sender)
    sender.set_password(password)
    with transaction.atomic():
        sender.save()
    return sender


def set_log_admin(organisation: Organisation, sender_id: int, on: bool, request: HttpRequest) -> Sender:
    """An organisation admin gives a sender of their own organisation the log administrator role (reading the audit
    trail, docs/security.md A19) or takes it away; audited. Another organisation's sender, or an operator, is
    ``Sender.DoesNotExist``."""
    with transaction.atomic():
        target = Sender.objects.select_for_update().get(
            organisation=organisation, pk=sender_id, is_superuser=False
        )
        if target.is_log_admin != on:
            target.is_log_admin = on
            target.save(update_fields=["is_log_admin"])
            record(
                Action.PORTAL_SENDER_LOG_ADMIN,
                request=request,
                organisation=organisation,
                detail={"sender_id": target.pk, "username": target.get_username(), "log_admin": on},
            )
    return target


def set_own_email(sender: Sender, email: str, request: HttpRequest | None = None) -> bool:
    """A sender sets (or clears) their own e-mail address, where radshare sends them notices: a share opened or
    locked, logins to their account blocked. Audited without the address itself (docs/security.md A16, A21).
    Returns whether it changed; raises ``ValidationError`` for an address that is not one."""
    email = email.strip()
    if email:
        validate_email(email)
    with transaction.atomic():
        locked = Sender.objects.select_for_update().get(pk=sender.pk)
        if locked.email == email:
            return False
        old, had = locked.email, bool(locked.email)
        locked.email = email
        locked.save(update_fields=["email"])
        sender.email = email
        record(
            Action.PORTAL_ACCOUNT_EMAIL,
            request=request,
            user=sender,
            organisation=sender.organisation,
            detail={"sender_id": sender.pk, "had_address": had, "has_address": bool(email)},
        )
        if had:
            own_email_changed.send(sender=Sender, account=locked, old=old)
    return True


def add_pacs_node(
    organisation: Organisation,
    ae_title: str,
    *,
    host: str = "",
    port: int | None = None,
    description: str = "",
    retrieve: str = "move",
    dicomweb_url: str = "",
    dicomweb_auth: str = "none",
    dicomweb_username: str = "",
    dicomweb_secret: str = "",
) -> PacsNode:
    node = PacsNode(
        organisation=organisation,
        ae_title=ae_title.strip(),
        host=host.strip(),
        port=port,
        description=description,
        retrieve=retrieve,
        dicomweb_url=dicomweb_url.strip(),
        dicomweb_auth=dicomweb_auth,
        dicomweb_username=dicomweb_username,
    )
    node.set_dicomweb_secret(dicomweb_secret)
    node.full_clean()
    node.save()
    return node


# --- API keys (docs/security.md A11) -------------------------------------------------------------------------------
# A key reads "rs_<8 hex>_<43 url-safe characters>": the first part is the stored, shown prefix (to look the key up
# and recognise it in lists); the rest is 32 random bytes (256 bits) that exist only with whoever holds the key.
API_KEY_PREFIX = "rs_"
API_KEY_PREFIX_LENGTH = len(API_KEY_PREFIX) + 8
API_KEY_SECRET_BYTES = 32
API_KEY_MAX_LENGTH = 200
# last_used_at is written at most this often per key, so that a busy PACS does not cost a write per request.
API_KEY_LAST_USED_PRECISION = timedelta(minutes=1)


def api_key_hash(plaintext: str) -> str:
    """Keyed hash of a whole API key, tagged with the key that made it (``core.crypto.tagged_hash``); the API key
    itself is never stored. A hash under an old key is moved to the current one when the API key is next used."""
    return crypto.tagged_hash(f"apikey:{plaintext}".encode())


def create_api_key(
    organisation: Organisation, name: str, created_by: Sender | None = None
) -> tuple[ApiKey, str]:
    """A new key for ``organisation``: returns the row and the key, which is shown once and never again."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "the name must not be empty"})
    for _attempt in range(5):
        prefix = API_KEY_PREFIX + secrets.token_hex(4)
        plaintext = f"{prefix}_{secrets.token_urlsafe(API_KEY_SECRET_BYTES)}"
        key = ApiKey(
            organisation=organisation,
            name=name,
            prefix=prefix,
            key_hash=api_key_hash(plaintext),
            created_by=created_by,
        )
        key.full_clean(exclude=["key_hash", "prefix"])
        try:
            with transaction.atomic():
                key.save()
        except IntegrityError:  # the 32-bit prefix is taken: draw again
            continue
        return key, plaintext
    raise RuntimeError("could not find a free API key prefix")


def authenticate_api_key(plaintext: str) -> ApiKey | None:
    """The active key ``plaintext`` is, or None for a malformed, unknown or revoked key (or inactive organisation).

    The hash is compared in constant time, and an unknown prefix costs a comparison too.
    """
    if (
        len(plaintext) > API_KEY_MAX_LENGTH
        or not plaintext.startswith(API_KEY_PREFIX)
        or plaintext[API_KEY_PREFIX_LENGTH : API_KEY_PREFIX_LENGTH + 1] != "_"
    ):
        return None
    key = (
        ApiKey.objects.select_related("organisation").filter(prefix=plaintext[:API_KEY_PREFIX_LENGTH]).first()
    )
    stored = key.key_hash if key is not None else ""
    if not crypto.tagged_hash_matches(stored, f"apikey:{plaintext}".encode()) or key is None:
        return None
    if key.revoked_at is not None or not key.organisation.is_active:
        return None
    if not crypto.tagged_hash_is_current(stored):  # made under an old key: moved now (docs/security.md A28)
        key.key_hash = api_key_hash(plaintext)
        ApiKey.objects.filter(pk=key.pk, key_hash=stored).update(key_hash=key.key_hash)
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at >= API_KEY_LAST_USED_PRECISION:
        # Conditional update: of concurrent requests at most one writes.
        ApiKey.objects.filter(pk=key.pk).filter(
            models.Q(last_used_at__isnull=True)
            | models.Q(last_used_at__lte=now - API_KEY_LAST_USED_PRECISION)
        ).update(last_used_at=now)
        key.last_used_at = now
    return key


def revoke_api_key(organisation: Organisation, key_id: int, by: Sender | None) -> ApiKey:
    """Revoke ``organisation``'s key ``key_id`` (another organisation's key is ``ApiKey.DoesNotExist``).

    Revoking a revoked key changes nothing.
    """
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(organisation=organisation, pk=key_id)
        if key.revoked_at is None:
            key.revoked_at = timezone.now()
            key.revoked_by = by
            key.save(update_fields=["revoked_at", "revoked_by"])
    return key
