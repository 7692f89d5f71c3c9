from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import authenticate
from django.contrib.auth.forms import AuthenticationForm
from django.utils.translation import gettext_lazy as _

from radshare.organisations.services import LoginAttempt, login_refusal, record_refused_login

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

THROTTLED = _("Too many failed attempts. Wait 15 minutes and try again, or ask your administrator.")


class ThrottledLoginMixin:
    """Refuse before checking the password while this account is locked from this address or device, or the address
    is (docs/security.md A9, A26). The message is the same whatever the reason and whether the account exists."""

    request: Any
    cleaned_data: dict[str, Any]

    def clean(self) -> dict[str, Any]:
        attempt = LoginAttempt.of(self.request, self.cleaned_data.get("username") or "")
        refusal = login_refusal(attempt)
        if refusal is not None:
            record_refused_login(self.request, attempt, refusal)
            raise forms.ValidationError(THROTTLED, code="throttled")
        return super().clean()  # type: ignore[misc,no-any-return]


class SenderLoginForm(ThrottledLoginMixin, AuthenticationForm):
    """The portal's login form."""


class OperatorLoginForm(ThrottledLoginMixin, AdminAuthenticationForm):
    """The operator admin's login form, throttled like the portal's."""


class AccountForm(forms.Form):
    """A sender's own details: the e-mail address radshare sends their notices to."""

    email = forms.EmailField(
        label=_("Your e-mail address"),
        required=False,
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
        help_text=_(
            "radshare e-mails you here when a recipient first opens a share (if you ask for it), when wrong "
            "attempts lock one of your shares, and when wrong passwords block logins to your account. Leave it "
            "empty and you are not told."
        ),
    )
    password = forms.CharField(
        label=_("Your password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text=_("To change the address, confirm it is you."),
    )

    def __init__(self, *args: Any, request: Any, sender: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request, self.sender = request, sender

    def clean(self) -> dict[str, Any]:
        """A new address takes the account's password (docs/security.md A26): a session left open or taken over
        must not redirect the notices that would tell the owner. Wrong passwords count as failed logins of the
        account, with the same locks; a locked account is refused before its password is checked."""
        data = super().clean() or {}
        email = (data.get("email") or "").strip()
        if "email" in self.errors or email == self.sender.email:
            return data
        attempt = LoginAttempt.of(self.request, self.sender.get_username())
        refusal = login_refusal(attempt)
        if refusal is not None:
            record_refused_login(self.request, attempt, refusal)
            self.add_error("password", forms.ValidationError(THROTTLED, code="throttled"))
        elif not data.get("password"):
            self.add_error("password", forms.ValidationError(_("Type your password."), code="required"))
        elif (
            authenticate(self.request, username=self.sender.get_username(), password=data["password"]) is None
        ):
            # authenticate() reports the failure (user_login_failed), which counts it: organisations/signals.py
            self.add_error("password", forms.ValidationError(_("That is not your password."), code="wrong"))
        return data


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(
        label=_("Name"),
        max_length=100,
        help_text=_("What uses the key, e.g. the PACS that calls radshare."),
    )


def _code_field(label: StrOrPromise, help_text: StrOrPromise = "", **attrs: str | bool) -> forms.CharField:
    widget = forms.TextInput(
        attrs={"autocomplete": "one-time-code", "autocapitalize": "off", "spellcheck": "false", **attrs}
    )
    return forms.CharField(label=label, max_length=40, widget=widget, help_text=help_text)


class SecondFactorForm(forms.Form):
    """The second login step: the 6-digit code from the app, or a recovery code (docs/security.md A9)."""

    code = _code_field(
        _("Code"), help_text=_("Lost your phone? Type one of your recovery codes instead."), autofocus=True
    )


class EnrolmentCodeForm(forms.Form):
    """Setting up an app: the code it shows proves it holds the secret."""

    code = _code_field(_("Code from the app"), inputmode="numeric")
