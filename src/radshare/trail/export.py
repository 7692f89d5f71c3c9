"""The trail's exports (docs/security.md A19): CSV, and JSON in the shape of NEN 7513, streamed.

An export of 100,000 entries never sits in memory: the entries are read with ``iterator()`` in batches of
``BATCH``, each batch's Patient IDs and usernames are looked up in one query each, and each batch leaves as one
piece of the response. Under ASGI the pieces are pulled from an async generator, one database step at a time in
the request's own thread, because Django reads a plain iterator whole before sending it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Generator, Iterable, Iterator
from itertools import batched
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone

from radshare.audit.models import AuditEvent
from radshare.audit.queries import CSV_HEADER, Entry, Names, entries, local_iso
from radshare.core import streaming
from radshare.organisations.models import Organisation, Sender
from radshare.studies.models import Patient

BATCH = 500
FORMATS = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


def names_for(organisation: Organisation, events: Iterable[AuditEvent]) -> Names:
    """The organisation's Patient IDs and usernames for the ids in ``events`` (scoped: another organisation's
    patient or account is never named)."""
    events = list(events)
    patient_refs = {e.patient_ref for e in events if e.patient_ref is not None}
    sender_ids = {e.on_behalf_of_id for e in events if e.on_behalf_of_id is not None}
    patients = dict(
        Patient.objects.filter(organisation=organisation, pk__in=patient_refs).values_list("pk", "patient_id")
    )
    senders = dict(
        Sender.objects.filter(organisation=organisation, pk__in=sender_ids).values_list("pk", "username")
    )
    return Names(patients=patients, senders=senders)


def _batches(organisation: Organisation, events: QuerySet[AuditEvent]) -> Iterator[list[Entry]]:
    for batch in batched(events.iterator(chunk_size=BATCH), BATCH):
        yield entries(batch, names_for(organisation, batch))


def csv_lines(organisation: Organisation, events: QuerySet[AuditEvent]) -> Generator[bytes]:
    """A header row, then one row per entry. A byte order mark first, so that a spreadsheet reads UTF-8."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    yield ("\ufeff" + buffer.getvalue()).encode()
    for batch in _batches(organisation, events):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(entry.csv_row() for entry in batch)
        yield buffer.getvalue().encode()


def json_lines(
    organisation: Organisation, events: QuerySet[AuditEvent], about: dict[str, Any]
) -> Generator[bytes]:
    """One JSON document: what was exported (``about``), then ``entries``, one object a line."""
    head = {
        "standard": "NEN 7513",
        "organisation": {"slug": organisation.slug, "name": organisation.name},
        "exported_at": local_iso(timezone.now()),
        **about,
    }
    yield json.dumps(head, ensure_ascii=False)[:-1].encode() + b', "entries": ['
    first = True
    for batch in _batches(organisation, events):
        lines = [json.dumps(entry.nen7513(), ensure_ascii=False) for entry in batch]
        yield (("\n" if first else ",\n") + ",\n".join(lines)).encode()
        first = False
    yield b"\n]}\n"


def filename(organisation: Organisation, fmt: str) -> str:
    # Server-chosen ASCII (docs/security.md A14): the organisation's slug and the day of the export.
    return f"audit-{organisation.slug}-{timezone.localdate():%Y-%m-%d}.{fmt}"


def response(request: HttpRequest, fmt: str, pieces: Generator[bytes], name: str) -> StreamingHttpResponse:
    streamed = StreamingHttpResponse(streaming.pulled(request, pieces), content_type=FORMATS[fmt])
    streamed["Content-Disposition"] = f'attachment; filename="{name}"'
    streamed["X-Accel-Buffering"] = "no"  # a reverse proxy passes the pieces on as they come
    return streamed
