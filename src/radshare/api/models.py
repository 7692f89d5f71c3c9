"""What the API counts: refused keys per client address and minute (docs/security.md A11).

One row per address and minute, whatever the number of requests, so a flood of wrong keys costs a counter update
each, and the audit trail gets one entry per row (``api/throttle.py``). No row holds any of a key.
"""

from __future__ import annotations

from django.db import models


class RefusedMinute(models.Model):
    """The API requests one client address had refused in one minute: for a wrong, missing or malformed key
    (``failures``), and unchecked while the address was throttled (``throttled``)."""

    client_address = models.CharField(max_length=64)
    minute = models.DateTimeField()  # its start, UTC
    failures = models.PositiveIntegerField(default=0)
    throttled = models.PositiveIntegerField(default=0)
    # The minute's latest of each: "no key", "not a bearer token", "unknown, malformed or revoked key".
    reason = models.CharField(max_length=40, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    reported = models.BooleanField(default=False)  # its audit entry is written

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client_address", "minute"], name="api_refused_once_a_minute"),
        ]
        indexes = [models.Index(fields=["reported", "minute"], name="api_refused_due")]

    def __str__(self) -> str:
        return f"{self.client_address} {self.minute:%Y-%m-%d %H:%M}: {self.failures} refused"
