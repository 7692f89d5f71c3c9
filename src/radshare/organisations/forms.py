from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.utils.translation import gettext_lazy as _

from radshare.audit.services import ActorType, Outcome, record
from radshare.core.net import client_address
from radshare.organisations.services import login_throttled
from radshare.organisations.signals import login_site

THROTTLED = _("Too many failed attempts. Wait 15 minutes and try again, or ask your administrator.")


class ThrottledLoginMixin:
    """Refuse before checking the password while an account or address is throttled (SECURITY.md A9)."""

    request: Any
    cleaned_data: dict[str, Any]

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username") or ""
        address = client_address(self.request) if self.request is not None else ""
        if login_throttled(username, address):
            # Refused before the password is checked, so no login signal fires: record the attempt here.
            record(
                f"{login_site(self.request)}.login.throttled",
                outcome=Outcome.DENIED,
                request=self.request,
                actor_type=ActorType.ANONYMOUS,
                actor_label=str(username)[:150],
            )
            raise forms.ValidationError(THROTTLED, code="throttled")
        return super().clean()  # type: ignore[misc,no-any-return]


class SenderLoginForm(ThrottledLoginMixin, AuthenticationForm):
    """The portal's login form."""


class OperatorLoginForm(ThrottledLoginMixin, AdminAuthenticationForm):
    """The operator admin's login form, throttled like the portal's."""


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(
        label=_("Name"),
        max_length=100,
        help_text=_("What uses the key, e.g. the PACS that calls radshare."),
    )
