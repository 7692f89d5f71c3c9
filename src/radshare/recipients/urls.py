"""Recipient pages (docs/architecture.md "URLs and zoning"): the start page at / and everything else under /r/.

No URL here holds patient data; ids are scoped to the session's share (another share's id is a 404).
"""

from django.urls import path

from radshare.recipients import dicomweb, downloads, viewer, views

urlpatterns = [
    path("", views.start, name="start"),
    path("r/terms", views.terms, name="terms"),
    path("r/birth-date", views.birth_date, name="birth_date"),
    path("r/sms-code", views.sms_code, name="sms_code"),
    path("r/sms-code/new", views.new_sms_code, name="new_sms_code"),
    path("r/invalid", views.invalid, name="invalid"),
    path("r/locked", views.locked, name="locked"),
    path("r/preparing", views.preparing, name="preparing"),
    path("r/studies", views.studies, name="studies"),
    path("r/logout", views.logout, name="logout"),
    path("r/studies/<int:pk>/", viewer.study_view, name="viewer"),
    path("r/images/<int:render_pk>/<int:frame>/<str:kind>.jpg", viewer.image, name="image"),
    path("r/reports/<int:instance_pk>.pdf", viewer.report_pdf, name="report_pdf"),
    path("r/download", downloads.choose, name="download"),
    path("r/download/<str:kind>.zip", downloads.download_all, name="download_all"),
    path("r/studies/<int:pk>/download/<str:kind>.zip", downloads.download_study, name="download_study"),
    # Share-scoped, read-only DICOMweb under r/dicomweb/ (B6.4): off unless RADSHARE_RECIPIENT_DICOMWEB.
    *dicomweb.urlpatterns,
]
