from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from radshare.audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin[AuditEvent]):
    """Read-only: the trail is append-only."""

    list_display = (
        "timestamp",
        "action",
        "outcome",
        "actor_type",
        "actor_label",
        "organisation_id",
        "client_address",
    )
    list_filter = ("outcome", "actor_type", "action")
    search_fields = ("action", "actor_label")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
