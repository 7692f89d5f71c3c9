"""What the downloads count (docs/security.md R5, A24): ZIP downloads per share and day, and the bytes a counted
download may be fetched again by HTTP Range.

The tables keep the names they had in the recipients app (``Meta.db_table``): the models moved, the data did not.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from radshare.shares.models import Share


class DownloadDay(models.Model):
    """ZIP downloads of a share on one calendar day (Europe/Amsterdam), counted atomically (R5)."""

    share = models.ForeignKey(Share, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "recipients_downloadday"
        constraints = [models.UniqueConstraint(fields=["share", "day"], name="downloadday_unique")]

    def __str__(self) -> str:
        return f"{self.count} downloads of share {self.share_id} on {self.day}"


class DownloadGrant(models.Model):
    """The bytes a counted ZIP download lets its browser session fetch again by HTTP Range that day (docs/security.md
    A24): one copy of that ZIP plus a margin for bytes lost in flight. Each range request draws its length from the
    budget atomically and gives back what it did not send; a range that does not fit counts as a new download.
    Keyed by the ZIP's ETag, so it continues only the same ZIP."""

    share = models.ForeignKey(Share, on_delete=models.CASCADE, related_name="+")
    session_hash = models.CharField(max_length=64)
    etag = models.CharField(max_length=100)
    day = models.DateField()
    budget = models.BigIntegerField()
    drawn = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        db_table = "recipients_downloadgrant"
        indexes = [models.Index(fields=["share", "session_hash", "etag", "day"], name="grant_lookup")]

    def __str__(self) -> str:
        return f"{self.drawn}/{self.budget} bytes of share {self.share_id} on {self.day}"
