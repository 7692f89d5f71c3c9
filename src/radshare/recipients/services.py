"""What the recipient's pages share with the viewer and the downloads built on them (docs/requirements.md S4.5,
S4.6, S4.8; docs/architecture.md "Downloads"): the share's studies in the order of the study list, and whether
this device may download.

The viewer and the downloads apps import this module; it imports neither of them.
"""

from __future__ import annotations

from django.conf import settings
from django.db.models import Count, OuterRef, Prefetch, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest

from radshare.shares.models import Share
from radshare.studies.models import Instance, Series, Study

# A phone or tablet by its User-Agent: every mobile browser says "Mobi" (MDN's advice), Android tablets at
# least "Android", older iPads "iPad". Safari on iPadOS 13+ presents itself as a Mac: taken for a computer.
MOBILE_MARKERS = ("Mobi", "Android", "iPhone", "iPad")


def share_studies(share: Share) -> list[Study]:
    """The share's studies, newest first, with their patient and series (broken instances counted: ``broken``);
    scoped to the share. The order of the study list and of the studies in a download.

    ``broken`` is a count per study in a subquery, not a join of every instance grouped by all of the study's and
    the patient's columns (what a ``Count`` annotation makes): the study list is opened on every visit."""
    broken = (
        Instance.objects.filter(series__study=OuterRef("pk"), broken_at__isnull=False)
        .order_by()
        .values("series__study")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return list(
        Study.objects.filter(share_studies__share=share)
        .select_related("patient")
        .prefetch_related(Prefetch("series", queryset=Series.objects.order_by("series_number", "pk")))
        .annotate(broken=Coalesce(Subquery(broken), 0))
        .order_by("-study_date", "pk")
    )


def is_mobile(request: HttpRequest) -> bool:
    user_agent = request.headers.get("user-agent", "")
    return any(marker in user_agent for marker in MOBILE_MARKERS)


def refused_on_device(request: HttpRequest) -> bool:
    """Downloads are for computers unless the deployment allows phones and tablets (S4.8)."""
    return is_mobile(request) and not settings.RADSHARE.download_on_mobile
