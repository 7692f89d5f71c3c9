"""Sender authentication: the portal's login page and the decorator every portal view wears
(docs/architecture.md "Sessions", docs/security.md A26)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from radshare.organisations.forms import SenderLoginForm
from radshare.organisations.models import Sender
from radshare.organisations.services import remember_device


def sender_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Logged in, and staff of an active organisation (operators without one use /admin/)."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = request.user
        assert isinstance(user, Sender)  # noqa: S101 - login_required guarantees it
        if user.organisation is None or not user.organisation.is_active:
            raise PermissionDenied
        return view(request, user.organisation, *args, **kwargs)  # scoped from here on

    return wrapper


class LoginView(auth_views.LoginView):
    template_name = "organisations/login.html"
    authentication_form = SenderLoginForm
    redirect_authenticated_user = True

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        # One kind of login per session (docs/architecture.md "Sessions"): whatever this browser's session held
        # (a recipient's login) ends here. Django's login() would only change the session id and keep its data.
        self.request.session.flush()
        response = super().form_valid(form)
        # This browser is now a known device of the account: strangers' failures no longer refuse it (A26).
        remember_device(self.request, response, form.get_user())
        return response
