"""The audit trail pages under /portal/ (docs/architecture.md "URLs and zoning"): internal only."""

from django.urls import path

from radshare.trail import views

urlpatterns = [
    path("audit/", views.trail, name="trail"),
    path("audit/export.<str:fmt>", views.export, name="export"),
]
