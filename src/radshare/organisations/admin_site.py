"""Django admin is for operators (superusers) only; organisation staff use the portal. Operators always pass the
second login step (docs/security.md A9), on pages of this site (/admin/two-factor/…), so that their attempts are
counted and audited as the admin's."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.urls import URLPattern, URLResolver, path

from radshare.organisations import two_factor, two_factor_views
from radshare.organisations.forms import OperatorLoginForm


class OperatorAdminSite(admin.AdminSite):
    site_header = "radshare operator admin"
    site_title = "radshare"

    login_form = OperatorLoginForm

    def has_permission(self, request: HttpRequest) -> bool:
        # A session that owes its second step never gets this far (auth.SecondFactorMiddleware); checked here
        # too, as the admin's own gate.
        user = request.user
        return bool(user.is_active and user.is_superuser) and not two_factor.pending(request)

    def get_urls(self) -> list[URLResolver | URLPattern]:
        step = [
            path("two-factor/", two_factor_views.verify, name="two_factor"),
            path("two-factor/setup/", two_factor_views.setup, name="two_factor_setup"),
            path(
                "two-factor/recovery-codes/",
                two_factor_views.recovery_codes,
                name="two_factor_recovery_codes",
            ),
        ]
        return step + super().get_urls()
