"""Shared plumbing tables."""

from __future__ import annotations

from django.db import models


class PeriodicJob(models.Model):
    """When a periodic task is next due. Workers claim a run with one conditional UPDATE, so exactly one
    of any number of workers enqueues it per period (DESIGN.md: nothing in django.tasks runs periodic work)."""

    name = models.CharField(max_length=100, primary_key=True)
    next_run_at = models.DateTimeField()
    last_enqueued_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name
