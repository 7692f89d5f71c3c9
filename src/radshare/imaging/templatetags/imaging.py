"""Template tags showing a study's renders and reports on portal pages."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.inclusion_tag("imaging/study_previews.html")
def study_previews(study: Any) -> dict[str, Any]:
    """A thumbnail per series, with how far its rendering has come."""
    from radshare.imaging.previews import study_previews as previews  # late import: views import tags
    from radshare.imaging.services import study_sizes

    dicom_bytes, jpeg_bytes = study_sizes(study)
    return {"study": study, "previews": previews(study), "dicom_bytes": dicom_bytes, "jpeg_bytes": jpeg_bytes}


@register.inclusion_tag("imaging/study_reports.html", takes_context=True)
def study_reports(context: template.Context, study: Any) -> dict[str, Any]:
    """The study's reports (SR documents and PDFs, a line each) and the form to attach a PDF report."""
    from radshare.imaging.forms import ReportAttachForm  # imported on use, as in study_previews
    from radshare.imaging.reports import study_reports as summaries
    from radshare.imaging.reports import upload_limit_bytes

    return {
        "study": study,
        "reports": summaries(study),
        "form": ReportAttachForm(auto_id="id_report_%s"),
        "limit_mb": upload_limit_bytes() >> 20,
        "csrf_token": context.get("csrf_token"),
    }
