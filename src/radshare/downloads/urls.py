"""Download pages (docs/architecture.md "URLs and zoning", "Downloads"), under /r/ beside the recipient's pages:
the download dialog and the streamed ZIPs of all studies or one. Ids are scoped to the session's share."""

from django.urls import path

from radshare.downloads import views

urlpatterns = [
    path("r/download", views.choose, name="choose"),
    path("r/download/<str:kind>.zip", views.download_all, name="all"),
    path("r/studies/<int:pk>/download/<str:kind>.zip", views.download_study, name="study"),
]
