"""Shared plumbing tables."""

from __future__ import annotations

from django.db import models


class PeriodicJob(models.Model):
    """When a periodic task is next due. Workers claim a run with one conditional UPDATE, so exactly one
    of any number of workers enqueues it per period (docs/architecture.md: nothing in django.tasks runs
    periodic work)."""

    name = models.CharField(max_length=100, primary_key=True)
    next_run_at = models.DateTimeField()
    last_enqueued_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name


class Worker(models.Model):
    """A running ``radshare worker`` and its lease: it renews ``alive_until`` every few seconds; once that has
    passed, other workers take back what it held (core/workers.py, docs/security.md R4). Times come from the
    database's clock, so machines whose clocks disagree still agree on who is alive."""

    id = models.CharField(max_length=64, primary_key=True)  # also its worker id in django-tasks-db
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    alive_until = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"worker {self.host} pid {self.pid}"


class UsageCount(models.Model):
    """How much of something happened, per organisation and day: images received, shares made, downloads and their
    bytes, SMS sent (core/usage.py, the one door; docs/operations.md "Usage per organisation"). Durable: a month's
    figures do not change when its images are destroyed or its audit entries pruned. The organisation is a plain
    id (this app sits below the organisations app); 0 is the installation itself."""

    organisation_id = models.BigIntegerField()
    day = models.DateField()
    name = models.CharField(max_length=64)
    value = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organisation_id", "day", "name"], name="usage_count_unique")
        ]
        indexes = [models.Index(fields=["day", "organisation_id"], name="usage_count_day")]

    def __str__(self) -> str:
        return f"{self.name} {self.day} org {self.organisation_id}: {self.value}"
