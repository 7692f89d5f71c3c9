"""Sender authentication: the portal's login page, the decorator every portal view wears, and the middleware that
holds a session at the second login step until it is passed (docs/architecture.md "Sessions", docs/security.md
A9, A26)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.urls import reverse

from radshare.core.middleware import INTERNAL_PREFIXES
from radshare.organisations import two_factor
from radshare.organisations.forms import SenderLoginForm
from radshare.organisations.models import Sender
from radshare.organisations.services import login_site, remember_device


def sender_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Logged in, and staff of an active organisation (operators without one use /admin/). The second login step
    is held by ``SecondFactorMiddleware``, before any view."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = request.user
        assert isinstance(user, Sender)  # noqa: S101 - login_required guarantees it
        if user.organisation is None or not user.organisation.is_active:
            raise PermissionDenied
        return view(request, user.organisation, *args, **kwargs)  # scoped from here on

    return wrapper


def site_url(request: HttpRequest, name: str) -> str:
    """The URL named ``name`` on the site this request is on: the operator admin's or the portal's own."""
    return reverse(f"{'admin' if login_site(request) == 'admin' else 'organisations'}:{name}")


def second_factor_url(request: HttpRequest, next_url: str) -> str:
    """The second login step of this request's site, coming back to ``next_url`` once it is passed."""
    return f"{site_url(request, 'two_factor')}?{urlencode({'next': next_url}, safe='/')}"


@functools.cache
def _open_before_second_factor() -> frozenset[str]:
    """What a session that still owes its second step may reach: that step and setting up an app, on either site,
    and logging out (the portal's logout serves both)."""
    steps = (
        reverse(f"{site}:{name}")
        for site in ("organisations", "admin")
        for name in ("two_factor", "two_factor_setup")
    )
    return frozenset((*steps, reverse("organisations:logout")))


class SecondFactorMiddleware:
    """Until a session passes the second login step it needs (``two_factor.required``), it reaches no internal page
    (the portal, the API's pages, the operator admin, /dev/): it is sent to the step instead (docs/security.md A9).
    One place for every view, present and future; the URL-conf walk in tests/security/test_two_factor.py checks it.

    Recipient pages are not touched. A request with an ``Authorization`` header to the API is the API key's
    (``api/auth.py``), whatever session cookie comes along. Goes after django-otp's ``OTPMiddleware``.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        path = request.path
        if (
            path.startswith(INTERNAL_PREFIXES)
            and path not in _open_before_second_factor()
            and not (path.startswith("/api/") and "authorization" in request.headers)
            and two_factor.pending(request)
        ):
            return HttpResponseRedirect(second_factor_url(request, request.get_full_path()))
        return self.get_response(request)


class LoginView(auth_views.LoginView):
    template_name = "organisations/login.html"
    authentication_form = SenderLoginForm
    redirect_authenticated_user = True

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        # One kind of login per session (docs/architecture.md "Sessions"): whatever this browser's session held
        # (a recipient's login) ends here. Django's login() would only change the session id and keep its data.
        self.request.session.flush()
        response = super().form_valid(form)
        user = form.get_user()
        if two_factor.required(user):
            # The password was the first of two steps. The browser becomes a known device only after the second:
            # a known device is counted on its own, which someone with only the password must not get (A26).
            return HttpResponseRedirect(second_factor_url(self.request, self.get_success_url()))
        # This browser is now a known device of the account: strangers' failures no longer refuse it (A26).
        remember_device(self.request, response, user)
        return response
