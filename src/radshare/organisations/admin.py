from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from radshare.organisations.models import Organisation, PacsNode, Sender


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
