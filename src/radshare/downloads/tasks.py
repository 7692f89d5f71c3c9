"""Downloads housekeeping: a Range grant serves its calendar day only (docs/security.md A24); a share that becomes
ready gets its download layouts built and kept ahead (docs/architecture.md "Downloads")."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.tasks import task
from django.utils import timezone

from radshare.core.tasks import Periodic
from radshare.downloads import media
from radshare.downloads.models import DownloadGrant
from radshare.recipients.services import share_studies
from radshare.shares.models import Share

logger = logging.getLogger(__name__)

KEEP = timedelta(days=2)  # a grant is good for its day only; kept a little longer, as the login rows are


@task()
def prune_download_grants() -> int:
    grants, _ = DownloadGrant.objects.filter(created_at__lt=timezone.now() - KEEP).delete()
    return grants


@task()
def keep_layouts(share_pk: int) -> int:
    """Build and keep the DICOM and JPEG layouts of a share that just became ready, in the share's language, so
    that its first download starts at once too (building one reads the DICOM headers for the DICOMDIR: ~0.6 s at
    1,600 images). Another language or a single study's download is built on its first request. How many kept."""
    share = Share.objects.exclude(status__in=Share.ENDED).filter(pk=share_pk).first()
    if share is None:
        return 0
    studies = share_studies(share)
    kept = 0
    for kind in media.KINDS:
        try:
            media.layout(kind, share, studies, share.language or settings.LANGUAGE_CODE)
            kept += 1
        except media.MissingFileError:
            logger.warning(
                "share %s: the %s download cannot be laid out ahead: a stored file is missing", share_pk, kind
            )
    return kept


PERIODIC = (Periodic("downloads.prune_grants", timedelta(hours=6), prune_download_grants),)
