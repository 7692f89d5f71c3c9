from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from radshare.studies.models import Study


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin[Study]):
    """Operators see what is stored (counts and sizes); changes happen through DICOM and the portal."""

    list_display = ("id", "organisation", "study_date", "modalities_in_study", "number_of_instances", "size")
    list_filter = ("organisation",)
    fields = (
        "organisation",
        "study_instance_uid",
        "study_date",
        "modalities_in_study",
        "number_of_series",
        "number_of_instances",
        "size",
        "created_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
