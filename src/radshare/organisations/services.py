"""Organisations, senders and PACS nodes: the rules behind the operator commands and the portal login."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from radshare.audit.models import AuditEvent
from radshare.organisations.models import Organisation, PacsNode, Sender

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
) -> PacsNode:
    node = PacsNode(
        organisation=organisation,
        ae_title=ae_title.strip(),
        host=host.strip(),
        port=port,
        description=description,
    )
    node.full_clean()
    node.save()
    return node
