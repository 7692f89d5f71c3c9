"""Usage per organisation and month (docs/requirements.md B6.8; docs/operations.md "Usage per organisation"), summed
from the durable counters of core/usage.py: the same figures for ``radshare report usage`` and the operator's usage
page. A past month's report does not change when its images are destroyed or its audit entries pruned."""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import io
import re
from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Max, Sum

from radshare.core.models import UsageCount
from radshare.core.usage import Usage
from radshare.organisations.models import Organisation

COLUMNS = (
    ("studies_received", "studies received"),
    ("instances_received", "instances received"),
    ("bytes_received", "bytes received"),
    ("shares_created", "shares created"),
    ("shares_opened", "shares opened"),
    ("downloads", "downloads"),
    ("download_bytes", "bytes downloaded"),
    ("sms_sent", "SMS sent"),
    ("emails_sent", "e-mails sent"),
    ("recipient_lockouts", "recipient lockouts"),
    ("storage_bytes", "storage held at month end (bytes)"),
)


@dataclass
class OrganisationUsage:
    slug: str
    name: str
    figures: dict[str, int] = field(default_factory=dict)
    shares_by_kind: dict[str, int] = field(default_factory=dict)  # "<delivery>.<recipient type>": count

    def row(self) -> list[str | int]:
        kinds = "; ".join(f"{k} {n}" for k, n in sorted(self.shares_by_kind.items()))
        return [self.slug, self.name, *(self.figures.get(name, 0) for name, _ in COLUMNS), kinds]


def parse_month(text: str) -> dt.date:
    """The first day of ``YYYY-MM``; ``ValueError`` otherwise."""
    if not re.fullmatch(r"\d{4}-\d{2}", text):
        raise ValueError("a month is written YYYY-MM, e.g. 2026-11")
    year, month = map(int, text.split("-"))
    return dt.date(year, month, 1)


def month_usage(month: dt.date, organisation: Organisation | None = None) -> list[OrganisationUsage]:
    """Each organisation's figures for the month that starts on ``month`` (every organisation, also one that did
    nothing that month), in the order of their slugs."""
    last = month.replace(day=calendar.monthrange(month.year, month.month)[1])
    organisations = Organisation.objects.order_by("slug")
    if organisation is not None:
        organisations = organisations.filter(pk=organisation.pk)
    report = {o.pk: OrganisationUsage(o.slug, o.name) for o in organisations}
    rows = UsageCount.objects.filter(day__gte=month, day__lte=last, organisation_id__in=list(report))
    totals: dict[int, dict[str, int]] = defaultdict(dict)
    for org_id, name, value in (
        rows.exclude(name=Usage.STORAGE_BYTES)
        .values("organisation_id", "name")
        .annotate(v=Sum("value"))
        .values_list("organisation_id", "name", "v")
    ):
        base, _, kind = str(name).partition(":")
        totals[org_id][base] = totals[org_id].get(base, 0) + int(value)
        if base == Usage.SHARES_CREATED and kind:
            report[org_id].shares_by_kind[kind] = int(value)
    last_days = dict(
        rows.filter(name=Usage.STORAGE_BYTES)
        .values("organisation_id")
        .annotate(day=Max("day"))
        .values_list("organisation_id", "day")
    )
    for org_id, day in last_days.items():
        held = rows.filter(name=Usage.STORAGE_BYTES, organisation_id=org_id, day=day).values_list(
            "value", flat=True
        )
        totals[org_id][Usage.STORAGE_BYTES] = int(held.first() or 0)
    for org_id, figures in totals.items():
        report[org_id].figures = figures
    return list(report.values())


def as_csv(report: list[OrganisationUsage]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["organisation", "name", *(name for name, _ in COLUMNS), "shares by delivery and recipient"]
    )
    for usage in report:
        writer.writerow(usage.row())
    return out.getvalue()


def as_text(month: dt.date, report: list[OrganisationUsage]) -> str:
    lines = [f"Usage in {month:%B %Y}"]
    width = max(len(label) for _, label in COLUMNS)
    for usage in report:
        lines += ["", f"{usage.name} ({usage.slug})"]
        lines += [f"  {label:<{width}}  {usage.figures.get(name, 0):>15,}" for name, label in COLUMNS]
        for kind, n in sorted(usage.shares_by_kind.items()):
            delivery, _, recipient = kind.partition(".")
            lines.append(f"  {'  shares by ' + delivery + ', for a ' + recipient:<{width}}  {n:>15,}")
    return "\n".join(lines) + "\n"
