"""Every staff authentication decision goes to the audit trail (SECURITY.md A16)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from radshare.audit.services import ActorType, Outcome, record
from radshare.organisations.models import Sender


@receiver(user_logged_in)
def _logged_in(sender: Any, request: HttpRequest | None, user: Sender, **kwargs: Any) -> None:
    record("portal.login", request=request, user=user)


def login_site(request: HttpRequest | None) -> str:
    """``admin`` for the operators' admin site, ``portal`` for everything else (the audit action's prefix)."""
    return "admin" if request is not None and request.path.startswith("/admin/") else "portal"


@receiver(user_login_failed)
def _login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    username = str(credentials.get("username", ""))[:150]
    # File a known account's failures under its organisation, so the organisation's admins see them.
    organisation = Sender.objects.filter(username=username).values_list("organisation_id", flat=True).first()
    record(
        f"{login_site(request)}.login.failed",
        outcome=Outcome.FAILURE,
        request=request,
        actor_type=ActorType.ANONYMOUS,
        actor_label=username,
        organisation=organisation,
    )


@receiver(user_logged_out)
def _logged_out(sender: Any, request: HttpRequest | None, user: Sender | None, **kwargs: Any) -> None:
    if user is not None:
        record("portal.logout", request=request, user=user)
