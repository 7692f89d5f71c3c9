"""Organisations, senders and PACS nodes: the rules behind the operator commands and the portal login."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from radshare.audit.models import AuditEvent
from radshare.organisations.models import ApiKey, Organisation, PacsNode, Sender

# SECURITY.md A9: failed logins throttled per account and per client address.
LOGIN_WINDOW = timedelta(minutes=15)
MAX_FAILED_PER_ACCOUNT = 10
MAX_FAILED_PER_ADDRESS = 50
FAILED_LOGIN_ACTIONS = ("portal.login.failed", "admin.login.failed")


def login_throttled(username: str, address: str) -> bool:
    """True when too many logins failed recently for this account or from this address.

    Counted from the audit trail, so the limit holds across every web process sharing the database.
    """
    since = timezone.now() - LOGIN_WINDOW
    failed = AuditEvent.objects.filter(action__in=FAILED_LOGIN_ACTIONS, timestamp__gte=since)
    if username and failed.filter(actor_label=username[:150]).count() >= MAX_FAILED_PER_ACCOUNT:
        return True
    return bool(address) and failed.filter(client_address=address).count() >= MAX_FAILED_PER_ADDRESS


def create_organisation(
    slug: str, name: str, *, contact_phone: str = "", contact_email: str = "", contact_url: str = ""
) -> Organisation:
    org = Organisation(
        slug=slug,
        name=name.strip(),
        contact_phone=contact_phone,
        contact_email=contact_email,
        contact_url=contact_url,
    )
    if not org.name:
        raise ValidationError({"name": "the name must not be empty"})
    org.full_clean()
    org.save()
    return org


def generate_password() -> str:
    return secrets.token_urlsafe(15)


def create_sender(
    organisation: Organisation, username: str, password: str, *, admin: bool = False, email: str = ""
) -> Sender:
    sender = Sender(
        username=username,
        organisation=organisation,
        email=email,
        role=Sender.Role.ADMIN if admin else Sender.Role.SENDER,
    )
    sender.full_clean(exclude=["password"])
    validate_password(password, user=sender)
    sender.set_password(password)
    with transaction.atomic():
        sender.save()
    return sender


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


# --- API keys (SECURITY.md A11) -------------------------------------------------------------------------------
# A key reads "rs_<8 hex>_<43 url-safe characters>": the first part is the stored, shown prefix (to look the key up
# and recognise it in lists); the rest is 32 random bytes (256 bits) that exist only with whoever holds the key.
API_KEY_PREFIX = "rs_"
API_KEY_PREFIX_LENGTH = len(API_KEY_PREFIX) + 8
API_KEY_SECRET_BYTES = 32
API_KEY_MAX_LENGTH = 200
# last_used_at is written at most this often per key, so that a busy PACS does not cost a write per request.
API_KEY_LAST_USED_PRECISION = timedelta(minutes=1)


def api_key_hash(plaintext: str) -> str:
    """Keyed hash (HMAC-SHA256 with the secret key) of a whole API key; the key itself is never stored."""
    return hmac.new(settings.SECRET_KEY.encode(), f"apikey:{plaintext}".encode(), hashlib.sha256).hexdigest()


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
    digest = api_key_hash(plaintext)
    key = (
        ApiKey.objects.select_related("organisation").filter(prefix=plaintext[:API_KEY_PREFIX_LENGTH]).first()
    )
    expected = key.key_hash if key is not None else "0" * len(digest)
    if not hmac.compare_digest(digest, expected) or key is None:
        return None
    if key.revoked_at is not None or not key.organisation.is_active:
        return None
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
