from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_totp.models import TOTPDevice

from radshare.organisations.models import ApiKey, Organisation, PacsNode, Sender

# django-otp's own admin would show every authenticator's secret (and its QR code) to operators. A second factor is
# set up only by its owner, and reset with `radshare sender reset-2fa` or by an organisation admin
# (docs/security.md A9).
if admin.site.is_registered(TOTPDevice):
    admin.site.unregister(TOTPDevice)


class PacsNodeInline(admin.TabularInline[PacsNode, Organisation]):
    model = PacsNode
    extra = 0


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin[Organisation]):
    list_display = ("name", "slug", "is_active", "require_two_factor", "onward_sharing", "created_at")
    list_filter = ("is_active", "require_two_factor", "onward_sharing")
    search_fields = ("name", "slug")
    inlines = [PacsNodeInline]


@admin.register(Sender)
class SenderAdmin(UserAdmin[Sender]):
    list_display = (
        "username",
        "organisation",
        "role",
        "is_log_admin",
        "is_active",
        "last_login",
        "has_authenticator",
    )
    list_filter = ("organisation", "role", "is_log_admin", "is_active", "is_superuser")
    fieldsets = (
        *UserAdmin.fieldsets,  # type: ignore[misc]
        ("radshare", {"fields": ("organisation", "role", "is_log_admin")}),
    )

    @admin.display(boolean=True, description=_("authenticator app"))
    def has_authenticator(self, obj: Sender) -> bool:
        return bool(TOTPDevice.objects.filter(user=obj, confirmed=True).exists())


@admin.register(PacsNode)
class PacsNodeAdmin(admin.ModelAdmin[PacsNode]):
    list_display = ("ae_title", "host", "port", "organisation", "is_active")
    list_filter = ("organisation", "is_active")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin[ApiKey]):
    """Operators see keys (never their secret) and may revoke them; organisation admins manage their own keys
    in the portal."""

    list_display = ("prefix", "name", "organisation", "created_at", "last_used_at", "revoked_at")
    list_filter = ("organisation",)
    readonly_fields = (
        "organisation",
        "prefix",
        "name",
        "created_at",
        "created_by",
        "last_used_at",
        "revoked_by",
    )
    fields = (*readonly_fields, "revoked_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # keys are made with `radshare apikey create` or in the portal: shown once, there
