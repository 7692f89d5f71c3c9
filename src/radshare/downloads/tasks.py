"""Downloads housekeeping: a Range grant serves its calendar day only (docs/security.md A24)."""

from __future__ import annotations

from datetime import timedelta

from django.tasks import task
from django.utils import timezone

from radshare.core.tasks import Periodic
from radshare.downloads.models import DownloadGrant

KEEP = timedelta(days=2)  # a grant is good for its day only; kept a little longer, as the login rows are


@task()
def prune_download_grants() -> int:
    grants, _ = DownloadGrant.objects.filter(created_at__lt=timezone.now() - KEEP).delete()
    return grants


PERIODIC = (Periodic("downloads.prune_grants", timedelta(hours=6), prune_download_grants),)
