"""What ingest announces to the apps above it (docs/architecture.md "Ingest path"). The studies app knows nothing of
rendering: imaging listens to these and makes the previews, so the layers stay one way."""

from __future__ import annotations

import logging

from django.db import DatabaseError
from django.dispatch import Signal

logger = logging.getLogger(__name__)

# Sent inside the transaction that stores new instances, with ``instances=`` (a list, their rows inserted): a
# listener's rows commit with them.
instances_stored = Signal()
# Sent when an ingest (the SCP, an upload, a retrieve) has stored instances that are ready for work.
instances_arrived = Signal()


def announce_arrivals() -> None:
    """Tell the listeners that new instances are in. A database error is logged, not raised: the worker's periodic
    housekeeping picks pending renders up within a minute anyway."""
    try:
        instances_arrived.send(sender=None)
    except DatabaseError:
        logger.exception("cannot queue rendering now")


# Sent while a study is destroyed, before its instance files go, with ``study_pk=`` and ``instance_pks=``: the
# apps above delete what they made of those instances (imaging: the renders).
study_destroying = Signal()
