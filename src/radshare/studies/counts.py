"""The counts ingest keeps on studies and series (instances, reports, bytes, series, modalities) and in the usage
counters: written in the transaction that stores the instances, so they are right whenever it commits, however an
association ends (docs/architecture.md "C-STORE ingest").

Each stored instance adds a ``Counts`` of its own, written at once (``services._index``). The journal's indexer
files up to 64 instances per transaction: inside ``added_once`` their counts are summed and written when the block
ends, still inside the transaction, with one UPDATE per study and per series and one usage statement, instead of
three statements per instance.
"""

from __future__ import annotations

import contextvars
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.db import connection
from django.utils import timezone

from radshare.core.usage import Usage, count_each
from radshare.studies.errors import BEING_DESTROYED, StaleIdsError, StudyBeingDestroyedError
from radshare.studies.models import Series, Study

_SERIES = (
    "UPDATE studies_series SET number_of_instances = number_of_instances + %s,"
    " number_of_reports = number_of_reports + %s, size = size + %s WHERE id = %s"
)
_STUDY = (
    "UPDATE studies_study SET number_of_instances = number_of_instances + %s,"
    " number_of_reports = number_of_reports + %s, size = size + %s, number_of_series = number_of_series + %s,"
    " last_instance_at = %s WHERE id = %s AND patient_id = %s AND destroy_started_at IS NULL"
)


@dataclass
class Counts:
    """What some stored instances add: per (study, the patient it must still be filed under), per series, and per
    organisation's usage."""

    # (study, patient) -> [instances, reports, bytes, new series]; studies with a new series of some modality
    studies: dict[tuple[int, int], list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0, 0, 0])
    )
    series: dict[int, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))
    new_modalities: set[int] = field(default_factory=set)
    usage: dict[int, Counter[Usage]] = field(default_factory=lambda: defaultdict(Counter))

    def add_instance(
        self,
        *,
        organisation: int,
        study: int,
        patient: int,
        series: int,
        size: int,
        report: bool,
        study_created: bool,
        series_created: bool,
        modality: str,
    ) -> None:
        row = self.studies[study, patient]
        row[0] += 1
        row[1] += int(report)
        row[2] += size
        row[3] += int(series_created)
        series_row = self.series[series]
        series_row[0] += 1
        series_row[1] += int(report)
        series_row[2] += size
        if series_created and modality:
            self.new_modalities.add(study)
        self.usage[organisation].update(
            {
                Usage.INSTANCES_RECEIVED: 1,
                Usage.BYTES_RECEIVED: size,
                Usage.STUDIES_RECEIVED: int(study_created),
            }
        )

    def add(self, other: Counts) -> None:
        for study, values in other.studies.items():
            self.studies[study] = [a + b for a, b in zip(self.studies[study], values, strict=True)]
        for series, sums in other.series.items():
            self.series[series] = [a + b for a, b in zip(self.series[series], sums, strict=True)]
        self.new_modalities |= other.new_modalities
        for organisation, usage in other.usage.items():
            self.usage[organisation].update(usage)

    def write(self) -> None:
        """Write the counts (inside the instances' transaction). Every study must still be filed under its patient
        (an admin may have moved it since this process cached its ids; ``StaleIdsError``) and not be being
        destroyed (``StudyBeingDestroyedError``); the caller's transaction then rolls back."""
        # The retention of an unshared study counts from its last instance.
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        with connection.cursor() as cursor:
            # The studies first, in order: their row locks (PostgreSQL) order concurrent transactions adding
            # series to one study, and never deadlock.
            for (study, patient), (n, reports, size, new_series) in sorted(self.studies.items()):
                cursor.execute(_STUDY, [n, reports, size, new_series, now, study, patient])
                if cursor.rowcount == 0:
                    if Study.objects.filter(pk=study, destroy_started_at__isnull=True).exists():
                        raise StaleIdsError  # moved to another patient
                    raise StudyBeingDestroyedError(BEING_DESTROYED)
            for series, (n, reports, size) in sorted(self.series.items()):
                cursor.execute(_SERIES, [n, reports, size, series])
        for study in sorted(self.new_modalities):
            # Under the study's row lock (SQLite: the write transaction), read every series: concurrent
            # associations adding series of other modalities to the same study each see the others' rows.
            found = (
                Series.objects.filter(study_id=study).exclude(modality="").values_list("modality", flat=True)
            )
            Study.objects.filter(pk=study).update(modalities_in_study="\\".join(sorted(set(found)))[:100])
        # Usage (per organisation and day): counted once whatever the ingest path.
        for organisation, usage in sorted(self.usage.items()):
            count_each(usage, organisation=organisation)


_pending: contextvars.ContextVar[Counts | None] = contextvars.ContextVar("radshare_counts", default=None)


def pending() -> Counts | None:
    """The counts being summed by an enclosing ``added_once``, or None: write each instance's at once."""
    return _pending.get()


@contextmanager
def added_once() -> Iterator[Counts]:
    """Inside one transaction: sum the counts of every instance stored in the block and write them at its end. An
    instance adds its counts only once its own rows are in (``services._index_or_record``), so one that rolls back
    adds none. Should the write fail (a study moved or being destroyed meanwhile), the caller rolls the whole
    transaction back."""
    counts = Counts()
    token = _pending.set(counts)
    try:
        yield counts
    finally:
        _pending.reset(token)
    counts.write()
