"""Recipient pages (docs/architecture.md "URLs and zoning"): the start page at /, the login steps and the study
list under /r/. The viewer (radshare.viewer) and the downloads (radshare.downloads) add their own /r/ paths.

No URL here holds patient data; ids are scoped to the session's share (another share's id is a 404).
"""

from django.urls import path

from radshare.recipients import onward, views

urlpatterns = [
    path("", views.start, name="start"),
    path("r/terms", views.terms, name="terms"),
    path("r/birth-date", views.birth_date, name="birth_date"),
    path("r/sms-code", views.sms_code, name="sms_code"),
    path("r/sms-code/new", views.new_sms_code, name="new_sms_code"),
    path("r/invalid", views.invalid, name="invalid"),
    path("r/ended", views.ended, name="ended"),
    path("r/locked", views.locked, name="locked"),
    path("r/preparing", views.preparing, name="preparing"),
    path("r/studies", views.studies, name="studies"),
    path("r/logout", views.logout, name="logout"),
    path("r/pass-on", onward.pass_on, name="pass_on"),
    path("r/pass-on/<int:pk>/end", onward.end, name="onward_end"),
]
