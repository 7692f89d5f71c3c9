from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.http import HttpRequest

from radshare.organisations.models import ApiKey, Organisation, PacsNode, Sender


class PacsNodeInline(admin.TabularInline[PacsNode, Organisation]):
    model = PacsNode
    extra = 0


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin[Organisation]):
    list_display = ("name", "slug", "is_active", "created_at")
    search_fields = ("name", "slug")
    inlines = [PacsNodeInline]


@admin.register(Sender)
class SenderAdmin(UserAdmin[Sender]):
    list_display = ("username", "organisation", "role", "is_active", "last_login")
    list_filter = ("organisation", "role", "is_active", "is_superuser")
    fieldsets = (*UserAdmin.fieldsets, ("radshare", {"fields": ("organisation", "role")}))  # type: ignore[misc]


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
