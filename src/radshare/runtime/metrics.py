"""``/metrics`` for Prometheus (docs/operations.md "Metrics"), only for the addresses in ``RADSHARE_METRICS_ALLOW``
(anyone else gets a 404, as if there were no such page).

Counters are read from the durable usage counters (core/usage.py), so they are the same whichever web process or
machine is scraped, and they count what every process did (the SCPs' ingest, the workers' messages); gauges are read
from the database at scrape time (the render queue, shares by status, the task queue), and the journals of journal
mode from this machine's data dir. The requests by route and
status are the scraped web server's own (core/metrics.py). A scrape costs a handful of grouped queries.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.db.models import Count, Max, Min, Sum
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_safe
from django_tasks_db.models import DBTaskResult
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from radshare.core.metrics import process_registry
from radshare.core.models import UsageCount, Worker
from radshare.core.net import client_address, in_networks
from radshare.core.usage import BUCKETS, INSTALLATION, Usage
from radshare.imaging.models import InstanceRender
from radshare.organisations.models import Organisation
from radshare.shares.models import Share
from radshare.studies.indexer import backlogs

# Usage counter -> (metric, help, the label its "kind" goes in, or a fixed label).
COUNTERS: dict[Usage, tuple[str, str, tuple[str, ...]]] = {
    Usage.STUDIES_RECEIVED: (
        "radshare_ingest_studies",
        "New studies received (C-STORE, upload, PACS retrieve)",
        (),
    ),
    Usage.INSTANCES_RECEIVED: ("radshare_ingest_instances", "Instances stored", ()),
    Usage.BYTES_RECEIVED: ("radshare_ingest_bytes", "Bytes of the instances stored", ()),
    Usage.SHARES_CREATED: ("radshare_shares_created", "Shares made", ("delivery", "recipient")),
    Usage.SHARES_OPENED: ("radshare_shares_opened", "Shares whose recipient logged in the first time", ()),
    Usage.DOWNLOADS: ("radshare_downloads", "ZIP downloads (as the daily limit counts them)", ("format",)),
    Usage.DOWNLOAD_BYTES: ("radshare_download_bytes", "Bytes of the ZIP downloads", ("format",)),
    Usage.SMS_SENT: ("radshare_sms_sent", "SMS messages handed to the gateway", ()),
    Usage.EMAILS_SENT: ("radshare_emails_sent", "E-mails handed to the mail server", ()),
    Usage.NOTIFICATIONS_FAILED: ("radshare_notifications_failed", "Notifications given up on", ("channel",)),
    Usage.RECIPIENT_LOCKOUTS: ("radshare_recipient_lockouts", "Shares locked by wrong tries", ()),
}


class DatabaseCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        slugs = dict(Organisation.objects.values_list("pk", "slug"))
        slugs[INSTALLATION] = "installation"
        yield from self._counters(slugs)
        yield from self._gauges(slugs)

    def _counters(self, slugs: dict[int, str]) -> Iterator[Metric]:
        families = {
            usage: CounterMetricFamily(name, text, labels=["organisation", *labels])
            for usage, (name, text, labels) in COUNTERS.items()
        }
        buckets: dict[int, dict[str, int]] = defaultdict(dict)
        totals = (
            UsageCount.objects.exclude(name=Usage.STORAGE_BYTES)
            .values("organisation_id", "name")
            .annotate(value=Sum("value"))
            .values_list("organisation_id", "name", "value")
        )
        for org_id, name, value in totals:
            base, _, kind = str(name).partition(":")
            organisation = slugs.get(org_id, str(org_id))
            if base == Usage.SHARE_PREPARATION:
                buckets[org_id][kind] = int(value)
                continue
            try:
                usage = Usage(base)
            except ValueError:
                continue
            if usage in families:
                labels = [organisation, *(kind.split(".") if COUNTERS[usage][2] else [])]
                if len(labels) == 1 + len(COUNTERS[usage][2]):
                    families[usage].add_metric(labels, float(value))
        yield from families.values()
        histogram = HistogramMetricFamily(
            "radshare_share_preparation_seconds",
            "Seconds from a share's creation to ready",
            labels=["organisation"],
        )
        for org_id, found in buckets.items():
            histogram.add_metric(
                [slugs.get(org_id, str(org_id))],
                [(f"{b:g}", float(found.get(f"le_{b:g}", 0))) for b in BUCKETS]
                + [("+Inf", float(found.get("count", 0)))],
                sum_value=found.get("sum_ms", 0) / 1000,
            )
        yield histogram

    def _gauges(self, slugs: dict[int, str]) -> Iterator[Metric]:
        storage = GaugeMetricFamily(
            "radshare_storage_bytes",
            "Bytes the organisation's studies hold (measured hourly)",
            labels=["organisation"],
        )
        latest = dict(
            UsageCount.objects.filter(name=Usage.STORAGE_BYTES)
            .values("organisation_id")
            .annotate(day=Max("day"))
            .values_list("organisation_id", "day")
        )
        for org_id, day in latest.items():
            value = UsageCount.objects.filter(
                name=Usage.STORAGE_BYTES, organisation_id=org_id, day=day
            ).values_list("value", flat=True)
            storage.add_metric([slugs.get(org_id, str(org_id))], float(value.first() or 0))
        yield storage

        queue = GaugeMetricFamily(
            "radshare_render_queue", "Instances waiting for their renders", labels=["state"]
        )
        waiting = dict(
            InstanceRender.objects.filter(
                status__in=(InstanceRender.Status.PENDING, InstanceRender.Status.RENDERING)
            )
            .values("status")
            .annotate(n=Count("pk"))
            .values_list("status", "n")
        )
        for state in (InstanceRender.Status.PENDING, InstanceRender.Status.RENDERING):
            queue.add_metric([state], float(waiting.get(state, 0)))
        # CT window presets the second pass has yet to make (the share is ready without them).
        queue.add_metric(["presets"], float(InstanceRender.objects.filter(presets_due=True).count()))
        yield queue
        oldest = InstanceRender.objects.filter(status=InstanceRender.Status.PENDING).aggregate(
            t=Min("instance__received_at")
        )["t"]
        age = (timezone.now() - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily(
            "radshare_render_queue_oldest_seconds",
            "Age of the oldest instance waiting for its renders",
            value=age,
        )

        shares = GaugeMetricFamily("radshare_shares", "Shares by status", labels=["status"])
        by_status = dict(Share.objects.values("status").annotate(n=Count("pk")).values_list("status", "n"))
        for status in Share.Status.values:
            shares.add_metric([status], float(by_status.get(status, 0)))
        yield shares
        yield GaugeMetricFamily(
            "radshare_tasks_ready", "Tasks ready to run", value=float(DBTaskResult.objects.ready().count())
        )
        yield GaugeMetricFamily(
            "radshare_workers_alive",
            "Workers with a live lease",
            value=float(Worker.objects.filter(alive_until__gt=timezone.now()).count()),
        )
        yield from _journal()


def _journal() -> Iterator[Metric]:
    """The ingest journals on this machine (journal mode; ``radshare status`` shows the same): one holds what its
    SCP acknowledged and its indexer has not filed yet. A journal lives on its SCP's machine, so these come only
    from a web process on that machine (the usual one-machine installation), and not at all without one."""
    found = backlogs(Path(settings.RADSHARE.data_dir) / "journal")
    if not found:
        return
    now = timezone.now()
    waiting = GaugeMetricFamily(
        "radshare_journal_waiting_bytes",
        "Bytes of the journal not filed into the index yet",
        labels=["folder"],
    )
    stuck = GaugeMetricFamily(
        "radshare_journal_stuck",
        "1 when records wait and the journal's indexer has filed nothing for five minutes",
        labels=["folder"],
    )
    for backlog in found:
        waiting.add_metric([backlog.folder], float(backlog.waiting_bytes))
        stuck.add_metric([backlog.folder], float(backlog.stuck(now)))
    yield waiting
    yield stuck
    yield GaugeMetricFamily(
        "radshare_journal_held",
        "Images held for an admin: acknowledged, their study filed under another patient meanwhile",
        value=float(sum(b.held for b in found)),
    )


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    if not in_networks(client_address(request), settings.RADSHARE.metrics_allow):
        raise Http404
    database = CollectorRegistry(auto_describe=False)
    database.register(DatabaseCollector())
    body = generate_latest(process_registry()) + generate_latest(database)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
