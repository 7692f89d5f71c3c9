"""API housekeeping: the refused-key counts of minutes that are over go to the audit trail, and old counts go."""

from __future__ import annotations

from datetime import timedelta

from django.tasks import task

from radshare.api import throttle
from radshare.core.tasks import Periodic


@task()
def report_refused_keys() -> int:
    """Write the audit entries of refused-key minutes nobody reported yet (the last minute of a burst has no later
    request to do it), then drop reported rows older than a day."""
    written = throttle.report_closed_minutes()
    throttle.prune()
    return written


PERIODIC = (Periodic("api.report_refused_keys", timedelta(minutes=1), report_refused_keys),)
