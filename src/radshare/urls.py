"""URL groups (docs/architecture.md "URLs and zoning"): recipient pages (login, viewer, downloads) at / and /r/,
portal at /portal/, REST API at /api/v1/, admin at /admin/."""

from django.contrib import admin
from django.urls import include, path, re_path

from radshare.api.api import api, unknown_path
from radshare.core import views as core_views
from radshare.delivery import views as notification_views
from radshare.runtime import metrics

urlpatterns = [
    path("", include(("radshare.recipients.urls", "recipients"), namespace="recipients")),
    path("", include(("radshare.viewer.urls", "viewer"), namespace="viewer")),
    path("", include(("radshare.downloads.urls", "downloads"), namespace="downloads")),
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("portal/", include(("radshare.imaging.urls", "imaging"), namespace="imaging")),
    path("portal/", include(("radshare.studies.urls", "portal"), namespace="portal")),
    path(
        "portal/",
        include(("radshare.organisations.urls", "organisations"), namespace="organisations"),
    ),
    path("portal/", include(("radshare.pacs.urls", "pacs"), namespace="pacs")),
    path("portal/", include(("radshare.shares.urls", "shares"), namespace="shares")),
    path("portal/", include(("radshare.delivery.urls", "delivery"), namespace="delivery")),
    path("portal/", include(("radshare.trail.urls", "trail"), namespace="trail")),
    path("api/v1/", api.urls),
    path("dev/outbox/", notification_views.outbox, name="dev_outbox"),
    path("dev/outbox/mail/<str:name>", notification_views.outbox_html, name="dev_outbox_html"),
    re_path(r"^api/(?P<path>.*)$", unknown_path),
    path("admin/", admin.site.urls),
]

handler400 = "radshare.core.views.bad_request"
handler403 = "radshare.core.views.permission_denied"
handler404 = "radshare.core.views.page_not_found"
handler500 = "radshare.core.views.server_error"
