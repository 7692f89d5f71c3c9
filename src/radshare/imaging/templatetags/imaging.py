"""Template tags showing a study's renders and reports on portal pages."""

from __future__ import annotations

from typing import Any

from django import template

from radshare.imaging import previews, reports
from radshare.imaging.forms import ReportAttachForm
from radshare.imaging.services import study_sizes

register = template.Library()


@register.inclusion_tag("imaging/study_previews.html")
def study_previews(study: Any) -> dict[str, Any]:
    """A thumbnail per series, with how far its rendering has come."""
    dicom_bytes, jpeg_bytes = study_sizes(study)
    return {
        "study": study,
        "previews": previews.study_previews(study),
        "dicom_bytes": dicom_bytes,
        "jpeg_bytes": jpeg_bytes,
    }


@register.inclusion_tag("imaging/study_reports.html", takes_context=True)
def study_reports(context: template.Context, study: Any) -> dict[str, Any]:
    """The study's reports (SR documents and PDFs, a line each) and the form to attach a PDF report."""
    return {
        "study": study,
        "reports": reports.study_reports(study),
        "form": ReportAttachForm(auto_id="id_report_%s"),
        "csrf_token": context.get("csrf_token"),
    }
