"""What a study or series holds, in words: "10 images and 1 report" (docs/requirements.md S4.12). The one text of
the counts that recipients and senders see; the numbers come from the index (``Study.number_of_reports``)."""

from __future__ import annotations

from django import template
from django.utils.translation import gettext, ngettext

from radshare.studies.models import Series, Study

register = template.Library()


@register.filter
def images_and_reports(item: Study | Series) -> str:
    """E.g. "10 images and 1 report", "10 images" or "1 report"; "0 images" when it holds nothing yet."""
    images, reports = item.number_of_images, item.number_of_reports
    image_text = ngettext("%(counter)s image", "%(counter)s images", images) % {"counter": images}
    report_text = ngettext("%(counter)s report", "%(counter)s reports", reports) % {"counter": reports}
    if not reports:
        return image_text
    if not images:
        return report_text
    return gettext("%(images)s and %(reports)s") % {"images": image_text, "reports": report_text}
