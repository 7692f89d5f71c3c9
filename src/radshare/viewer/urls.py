"""The viewer's paths under /r/ (docs/architecture.md "URLs and zoning"): a study of the share, its pre-rendered
images and videos, a PDF report, and the share-scoped DICOMweb under r/dicomweb/ (B6.4; off unless
RADSHARE_RECIPIENT_DICOMWEB). Ids are scoped to the session's share (another share's id is a 404)."""

from django.urls import path

from radshare.viewer import dicomweb, views

urlpatterns = [
    path("r/studies/<int:pk>/", views.study_view, name="study"),
    path("r/studies/<int:pk>/presets.json", views.study_presets, name="presets"),
    path("r/images/<int:render_pk>/<int:frame>/<str:kind>.jpg", views.image, name="image"),
    path("r/videos/<int:render_pk>.mp4", views.video, name="video"),
    path("r/reports/<int:instance_pk>.pdf", views.report_pdf, name="report_pdf"),
    *dicomweb.urlpatterns,
]
