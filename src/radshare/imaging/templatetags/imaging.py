"""Template tags showing a study's renders and reports on portal pages."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.inclusion_tag("imaging/study_previews.html")
def study_previews(study: Any) -> dict[str, Any]:
    """A thumbnail per series, with how far its rendering has come."""
    from radshare.imaging.previews import study_previews as previews  # late import: views import tags

    return {"study": study, "previews": previews(study)}


@register.inclusion_tag("imaging/study_reports.html")
def study_reports(study: Any) -> dict[str, Any]:
    """The study's radiology reports (filled in by the reports work)."""
    return {"study": study}
