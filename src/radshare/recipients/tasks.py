"""Recipient housekeeping: login attempts and SMS codes are only needed for the lockout and throttling windows
(the audit trail keeps the record of each step)."""

from __future__ import annotations

from datetime import timedelta

from django.tasks import task
from django.utils import timezone

from radshare.core.tasks import Periodic
from radshare.recipients.models import AccessAttempt, OneTimeCode

KEEP = timedelta(days=2)  # longer than any throttling window (at most an hour)


@task()
def prune_login_rows() -> int:
    cutoff = timezone.now() - KEEP
    attempts, _ = AccessAttempt.objects.filter(created_at__lt=cutoff).delete()
    otps, _ = OneTimeCode.objects.filter(expires_at__lt=cutoff).delete()
    return attempts + otps


PERIODIC = (Periodic("recipients.prune_login_rows", timedelta(hours=6), prune_login_rows),)
