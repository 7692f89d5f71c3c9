"""Every staff authentication decision goes to the audit trail (docs/security.md A16)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from radshare.audit.actions import Action
from radshare.audit.services import record
from radshare.organisations.models import Sender
from radshare.organisations.services import login_site, record_failed_login


@receiver(user_logged_in)
def _logged_in(sender: Any, request: HttpRequest | None, user: Sender, **kwargs: Any) -> None:
    # The operators' admin site and the portal are told apart, as the login limits do.
    record(Action(f"{login_site(request)}.login"), request=request, user=user)


@receiver(user_login_failed)
def _login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # Counted towards the login limits, which may lock the account from this address (docs/security.md A26).
    record_failed_login(request, str(credentials.get("username", "")))


@receiver(user_logged_out)
def _logged_out(sender: Any, request: HttpRequest | None, user: Sender | None, **kwargs: Any) -> None:
    if user is not None:
        record(Action.PORTAL_LOGOUT, request=request, user=user)
