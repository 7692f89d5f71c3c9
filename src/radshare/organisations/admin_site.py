"""Django admin is for operators (superusers) only; organisation staff use the portal."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from radshare.organisations.forms import OperatorLoginForm


class OperatorAdminSite(admin.AdminSite):
    site_header = "radshare operator admin"
    site_title = "radshare"

    login_form = OperatorLoginForm

    def has_permission(self, request: HttpRequest) -> bool:
        user = request.user
        return bool(user.is_active and user.is_superuser)
