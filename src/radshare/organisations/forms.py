from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.utils.translation import gettext_lazy as _

from radshare.organisations.services import login_throttled


class SenderLoginForm(AuthenticationForm):
    """Django's login form, refusing early while an account or address is throttled (SECURITY.md A9)."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "throttled": _("Too many failed attempts. Wait 15 minutes and try again, or ask your administrator."),
    }

    def __init__(self, request: Any = None, *args: Any, client: str = "", **kwargs: Any) -> None:
        super().__init__(request, *args, **kwargs)
        self.client = client

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username") or ""
        if login_throttled(username, self.client):
            raise forms.ValidationError(self.error_messages["throttled"], code="throttled")
        return super().clean()
