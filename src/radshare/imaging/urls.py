"""Portal pages of the imaging app (namespace ``imaging``): render files and a study's reports."""

from django.urls import path

from radshare.imaging import previews, views

urlpatterns = [
    path("renders/<int:instance_pk>/<int:frame>/<str:kind>.jpg", previews.render_file, name="render"),
    path("studies/<int:pk>/reports/attach/", views.report_attach, name="report_attach"),
    path("studies/<int:pk>/reports/<int:instance_pk>/", views.report_detail, name="report"),
    path("studies/<int:pk>/reports/<int:instance_pk>/report.pdf", views.report_pdf, name="report_pdf"),
]
