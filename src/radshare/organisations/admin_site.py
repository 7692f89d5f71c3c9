"""Django admin is for operators (superusers) only; organisation staff use the portal. Operators always pass the
second login step (docs/security.md A9), on pages of this site (/admin/two-factor/…), so that their attempts are
counted and audited as the admin's."""

from __future__ import annotations

import datetime as dt

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path
from django.utils import timezone

from radshare.organisations import two_factor, two_factor_views
from radshare.organisations.forms import OperatorLoginForm
from radshare.organisations.usage import COLUMNS, as_csv, month_usage, parse_month


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
        pages = [path("usage/", self.admin_view(self.usage), name="usage")]
        return step + pages + super().get_urls()

    def usage(self, request: HttpRequest) -> HttpResponse:
        """Usage per organisation for a month (``?month=YYYY-MM``, default the last one; ``&csv=1`` for CSV)."""
        this_month = timezone.localdate().replace(day=1)
        try:
            month = parse_month(request.GET.get("month", ""))
        except ValueError:
            month = (this_month - dt.timedelta(days=1)).replace(day=1)
        report = month_usage(month)
        if request.GET.get("csv"):
            response = HttpResponse(as_csv(report), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="radshare-usage-{month:%Y-%m}.csv"'
            return response
        previous = (month - dt.timedelta(days=1)).replace(day=1)
        following = (month + dt.timedelta(days=31)).replace(day=1)
        context = {
            **self.each_context(request),
            "title": f"Usage in {month:%B %Y}",
            "month": month,
            "previous": previous,
            "following": following if following <= this_month else None,
            "columns": COLUMNS,
            "rows": [(u, [u.figures.get(name, 0) for name, _ in COLUMNS]) for u in report],
        }
        return TemplateResponse(request, "admin/radshare_usage.html", context)
