"""What the downloads app does when a share or a study changes (connected in ``DownloadsConfig.ready``): the kept
download layouts are built ahead and removed (docs/architecture.md "Downloads")."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from radshare.core.tasks import enqueue_on_commit
from radshare.downloads.media import forget
from radshare.downloads.tasks import keep_layouts
from radshare.shares.models import ShareStudy


def share_ready(sender: Any, share: Any, **kwargs: Any) -> None:
    """A ready share's download layouts are built and kept ahead, by a worker (``tasks.keep_layouts``)."""
    enqueue_on_commit(keep_layouts, share.pk)


def share_ended(sender: Any, share: Any, **kwargs: Any) -> None:
    """An ended share's kept layouts go once its end is committed."""
    pk = share.pk
    transaction.on_commit(lambda: forget([pk]))


def study_destroying(sender: Any, study_pk: int, **kwargs: Any) -> None:
    """The kept layouts of every share that holds a study being destroyed (they name its files) go first."""
    forget(ShareStudy.objects.filter(study_id=study_pk).values_list("share_id", flat=True).distinct())
