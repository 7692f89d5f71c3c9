"""Reading the audit trail (docs/security.md A19): the organisation's trail with its filters, the shapes of an
exported entry (a CSV row, a NEN 7513 JSON object), and the recipient's overview of their own share.

Every query here starts from one organisation (or one share): nothing reads across organisations. Entries name
patients and senders by internal id only (docs/security.md A17); the words for those ids (the organisation's
Patient ID, a username) are looked up by the caller, which knows the index, and handed in as ``Names``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from radshare.audit import actions
from radshare.audit.actions import Action
from radshare.audit.models import AuditEvent

ActorType = AuditEvent.ActorType


@dataclass(frozen=True)
class TrailFilter:
    """What a reader of the trail asked for. ``patient_refs``: None for any patient; empty when the typed Patient
    ID matched no patient of the organisation (then nothing matches). Dates are local days, both included."""

    patient_refs: tuple[int, ...] | None = None
    share: int | None = None
    user: str = ""
    action: str = ""
    outcome: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None

    def detail(self) -> dict[str, Any]:
        """The filters as the audit entry of a reading records them: the patient by internal id, never the
        typed Patient ID (docs/architecture.md "How to add a feature", 4)."""
        used: dict[str, Any] = {}
        if self.patient_refs is not None:
            used["patient_refs"] = list(self.patient_refs)
        if self.share is not None:
            used["share"] = self.share
        for name in ("user", "action", "outcome"):
            if getattr(self, name):
                used[name] = getattr(self, name)
        if self.date_from is not None:
            used["date_from"] = self.date_from.isoformat()
        if self.date_to is not None:
            used["date_to"] = self.date_to.isoformat()
        return used


def _day_start(day: dt.date) -> dt.datetime:
    # The trail is read in the installation's time zone (Europe/Amsterdam): a day runs from local midnight.
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min), timezone.get_default_timezone())


def trail(organisation_id: int, criteria: TrailFilter) -> QuerySet[AuditEvent]:
    """The organisation's entries that match ``criteria``, newest first."""
    events = AuditEvent.objects.filter(organisation_id=organisation_id)
    if criteria.patient_refs is not None:
        events = events.filter(patient_ref__in=criteria.patient_refs)
    if criteria.share is not None:
        events = events.filter(detail__share=criteria.share)
    if criteria.user:
        events = events.filter(actor_label__icontains=criteria.user)
    if criteria.action:
        events = events.filter(action=criteria.action)
    if criteria.outcome:
        events = events.filter(outcome=criteria.outcome)
    if criteria.date_from is not None:
        events = events.filter(timestamp__gte=_day_start(criteria.date_from))
    if criteria.date_to is not None:
        events = events.filter(timestamp__lt=_day_start(criteria.date_to + dt.timedelta(days=1)))
    return events.order_by("-timestamp", "-id")


# --- one entry, as the page and the exports show it ------------------------------------------------------


@dataclass(frozen=True)
class Names:
    """The organisation's words for the ids in some entries: Patient IDs by ``patient_ref``, usernames by
    sender id. An id missing here (a patient or account since removed) is shown as unknown."""

    patients: Mapping[int, str] = field(default_factory=dict)
    senders: Mapping[int, str] = field(default_factory=dict)


# A cell that starts with one of these is a formula to a spreadsheet (CSV injection, OWASP): it gets a leading '.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

CSV_HEADER = (
    "event_id",
    "time",
    "action",
    "event",
    "outcome",
    "actor_type",
    "actor_id",
    "actor",
    "on_behalf_of_id",
    "on_behalf_of",
    "patient_id",
    "study_uids",
    "share",
    "client_address",
    "user_agent",
    "detail",
)


def cell(value: object) -> str:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula."""
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def local_iso(moment: dt.datetime) -> str:
    """ISO 8601 with the offset, in the installation's time zone: ``2026-12-05T14:03:22.120+01:00``."""
    return timezone.localtime(moment, timezone.get_default_timezone()).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Entry:
    """An audit entry with the organisation's words for its ids."""

    event: AuditEvent
    patient_id: str | None  # the organisation's Patient ID
    on_behalf_of: str | None  # the username of the sender it happened for

    @property
    def label(self) -> str:
        return actions.label(self.event.action)

    @property
    def share(self) -> int | None:
        share = self.event.detail.get("share") if isinstance(self.event.detail, dict) else None
        return share if isinstance(share, int) else None

    def csv_row(self) -> list[str]:
        """One row under ``CSV_HEADER``; every text cell guarded against formula injection."""
        event = self.event
        return [
            cell(value)
            for value in (
                event.event_id,
                local_iso(event.timestamp),
                event.action,
                self.label,
                event.outcome,
                event.actor_type,
                event.actor_id,
                event.actor_label,
                event.on_behalf_of_id,
                self.on_behalf_of,
                self.patient_id,
                " ".join(event.study_uids),
                self.share,
                event.client_address,
                event.user_agent,
                json.dumps(event.detail, sort_keys=True, ensure_ascii=False) if event.detail else "",
            )
        ]

    def nen7513(self) -> dict[str, Any]:
        """The entry in the shape NEN 7513 asks of a log line: the event, when, which patient, who, on whose
        behalf, from where (address, program, system or AE title) and the outcome; the rest in ``detail``; and
        its link in the hash chain."""
        event = self.event
        dicom_node = event.actor_type == ActorType.DICOM_NODE
        return {
            "id": str(event.event_id),
            "event": {"code": event.action, "label": self.label},
            "datetime": local_iso(event.timestamp),
            "patient": self.patient_id,
            "patient_ref": event.patient_ref,
            "user": {"type": event.actor_type, "id": event.actor_id, "label": event.actor_label},
            "on_behalf_of": (
                {"id": event.on_behalf_of_id, "label": self.on_behalf_of}
                if event.on_behalf_of_id is not None
                else None
            ),
            "source": {
                "address": event.client_address or None,
                "user_agent": event.user_agent or None,
                "system": "radshare",
                "ae_title": event.actor_label if dicom_node else None,
            },
            "outcome": event.outcome,
            "studies": list(event.study_uids),
            "share": self.share,
            "detail": event.detail,
            # Its place in the organisation's hash chain (docs/security.md A17): an auditor can match an exported
            # entry with what `radshare audit verify` checked.
            "chain": {"seq": event.seq, "hash": event.entry_hash, "previous": event.prev_hash},
        }


def entries(events: Iterable[AuditEvent], names: Names) -> list[Entry]:
    return [
        Entry(
            event,
            names.patients.get(event.patient_ref) if event.patient_ref is not None else None,
            names.senders.get(event.on_behalf_of_id) if event.on_behalf_of_id is not None else None,
        )
        for event in events
    ]


# --- the recipient's overview of their share (docs/security.md A19) --------------------------------------

# What a recipient sees of their share's trail: their own openings, views and downloads, in plain words.
RECIPIENT_WORDS = {
    Action.RECIPIENT_CODE: _("Link opened"),
    Action.RECIPIENT_LOGIN: _("Logged in"),
    Action.RECIPIENT_STUDY_VIEW: _("Images viewed"),
    Action.RECIPIENT_REPORT_VIEW: _("Report read"),
    Action.RECIPIENT_DOWNLOAD_START: _("Downloaded"),
    Action.RECIPIENT_DICOMWEB_RETRIEVE: _("Downloaded"),
}
VISITS_SHOWN = 20
VISITS_READ = 500  # the newest entries looked at; repeats fold into one line


@dataclass
class Visit:
    """One line of the overview: what happened, when (the latest time), from where, and how often in a row."""

    when: dt.datetime
    what: str
    address: str
    times: int = 1


def coarse_address(address: str) -> str:
    """Enough of an address to recognise one's own network, not a stranger's connection: the first three parts of
    an IPv4 address, the first three groups (the /48) of an IPv6 address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address):
        return ".".join(str(ip).split(".")[:3]) + ".…"
    groups = [format(int(group, 16), "x") for group in ip.exploded.split(":")[:3]]
    return ":".join(groups) + ":…"


def share_visits(
    organisation_id: int, patient_ref: int | None, share_id: int, since: dt.datetime
) -> list[Visit]:
    """The recipient side of one share's trail, newest first: successful openings, logins, views and downloads,
    each with its time and coarsened address. Nothing of the sender, of another share or of any patient.

    Every recipient entry names the share's patient (``patient_ref``): the patient index reads that patient's
    entries only, not the organisation's whole trail since the share was made (which grows with every page any
    recipient opens). A patient belongs to one organisation; the organisation is checked on each entry too."""
    events = (
        AuditEvent.objects.filter(
            patient_ref=patient_ref,
            timestamp__gte=since,  # within the share's life
            detail__share=share_id,
            actor_type=ActorType.RECIPIENT,
            action__in=list(RECIPIENT_WORDS),
            outcome=AuditEvent.Outcome.SUCCESS,
        )
        .order_by("-timestamp", "-id")
        .only("timestamp", "action", "client_address", "detail", "organisation_id")[:VISITS_READ]
    )
    visits: list[Visit] = []
    for event in events:
        if event.organisation_id != organisation_id:
            continue
        if event.action == Action.RECIPIENT_DOWNLOAD_START and event.detail.get("counted") is False:
            continue  # the rest of a download already counted (a resumed one)
        what, address = str(RECIPIENT_WORDS[Action(event.action)]), coarse_address(event.client_address)
        if visits and (visits[-1].what, visits[-1].address) == (what, address):
            visits[-1].times += 1
            continue
        if len(visits) == VISITS_SHOWN:
            break
        visits.append(Visit(event.timestamp, what, address))
    return visits
