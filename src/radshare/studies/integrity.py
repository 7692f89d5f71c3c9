"""Does the index agree with the storage? The instances' half of ``radshare storage check`` (the renders' half is
``imaging.integrity``, which builds on the pieces here), and what the pages ask about broken instances.

Both directions, streamed (an installation holds millions of files; nothing holds all keys at once):

1. The storage's ``instances/`` area is walked in key order (``Storage.scan``), ``CHUNK`` objects at a time, each
   chunk looked up in the index by one ``storage_key IN (…)`` query. A file no row knows is an *orphan*; a row's
   file of another size (or, with ``--hash``, another SHA-256) is *changed*. Every row met is marked in a bitmap of
   instance ids (one bit per id: 1.25 MB for ten million).
2. The index is read in id order (keyset pages); a row the walk did not meet is *missing* (looked at once more, so
   a file that appears meanwhile is no false alarm).

Judgements, and what ``--repair`` does about them:

* *orphan*: a file under ``instances/`` older than ``RECENT`` that no row knows: deleted. A younger one may belong
  to an ingest in progress (the file is written before its row commits): reported as *recent*, never a failure.
* *missing*, *changed*: the instance is marked broken (``Instance.broken_at``). From then on downloads and DICOMweb
  leave it out and the pages say so; the check reports it as *known broken*, which is no failure: after a repair
  the check is clean again, and the operator restores the file from a backup at leisure.
* *restored*: an instance marked broken whose file is whole again (the size and the SHA-256 of the received bytes):
  the mark is cleared.
* Rows of a study being destroyed (``Study.destroy_started_at``) are *skipped*: their files may rightly be half
  gone.

A repair never trusts a result that looks like a storage and a database that do not belong together (a storage
not mounted, a database restored from an older backup): when more than ``guard_limit`` of an area's files or rows
would be deleted or marked, nothing of that kind is done without ``--force``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import batched
from typing import Any

from django.utils import timezone

from radshare.core.storage import Storage, StoredObject
from radshare.core.storage.layout import INSTANCES, instance_key
from radshare.studies.models import Instance, Study

EXAMPLES = 10  # examples printed of each kind
RECENT = timedelta(hours=1)  # an unknown file younger than this may belong to an ingest in progress
HASH_READ = 1 << 20
CHUNK = 500  # objects looked up in one query (below SQLite's limit of bound parameters)
PAGE = 5000  # rows read in one page of the index
GUARD_FLOOR = 100  # a repair deletes or marks this many of a kind in any case...
GUARD_SHARE = 100  # ... or one in this many of the area's files or rows, whichever is more ...
GUARD_CAP = 10_000  # ... but never more than this without --force


class Kind:
    """What the check finds. ``PROBLEMS`` fail the check (``--repair`` has something to do); the others are told."""

    ORPHAN = "orphans"
    MISSING = "missing"
    CHANGED = "changed"
    RESTORED = "restored"
    RECENT = "recent"
    KNOWN_BROKEN = "known broken"
    SKIPPED = "skipped"
    PROBLEMS = (ORPHAN, MISSING, CHANGED, RESTORED)
    NOTES = (RECENT, KNOWN_BROKEN, SKIPPED)


@dataclass
class Tally:
    count: int = 0
    # The first few, as internal ids and storage keys (made from hashes): never patient data.
    examples: list[str] = field(default_factory=list)

    def add(self, example: str) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(example)


@dataclass
class AreaReport:
    """What the check of one storage area (``instances``, ``renders``) found and repaired."""

    area: str
    objects: int = 0  # files listed
    rows: int = 0  # index rows checked
    found: dict[str, Tally] = field(default_factory=dict)
    repaired: dict[str, int] = field(default_factory=dict)  # how many files were deleted, rows marked, …
    refused: list[str] = field(default_factory=list)  # repairs not done, and why

    def tally(self, kind: str) -> Tally:
        return self.found.setdefault(kind, Tally())

    @property
    def problems(self) -> int:
        return sum(self.found[kind].count for kind in Kind.PROBLEMS if kind in self.found)


@dataclass(frozen=True)
class CheckOptions:
    hash: bool = False  # compare every file's SHA-256 too (reads every byte), not only its size
    repair: bool = False
    force: bool = False  # repair beyond the guard
    now: datetime = field(default_factory=timezone.now)


def guard_limit(total: int) -> int:
    """How many of one kind a repair changes without ``--force``, of an area of ``total`` files or rows."""
    return min(GUARD_CAP, max(GUARD_FLOOR, total // GUARD_SHARE))


class Repairs[T]:
    """One kind of repair. With ``--force`` it is applied as found, a chunk at a time; otherwise what is found is
    held (at most ``GUARD_CAP``) until the totals are known, and applied only if it stays within the guard."""

    def __init__(self, apply: Callable[[list[T]], int], *, force: bool) -> None:
        self._apply = apply
        self._force = force
        self._held: list[T] = []
        self.found = 0
        self.done = 0

    def add(self, item: T) -> None:
        self.found += 1
        if len(self._held) < GUARD_CAP:
            self._held.append(item)
        if self._force and len(self._held) >= CHUNK:
            self._flush()

    def finish(self, limit: int) -> bool:
        """Apply what is held; False (and nothing applied) when more than ``limit`` were found."""
        if not self._force and self.found > limit:
            self._held.clear()
            return False
        self._flush()
        return True

    def _flush(self) -> None:
        held, self._held = self._held, []
        if held:
            self.done += self._apply(held)


class IdSet:
    """Which ids up to ``top`` were seen, one bit each."""

    def __init__(self, top: int) -> None:
        self.top = top
        self._bits = bytearray(top // 8 + 1)

    def add(self, pk: int) -> None:
        if 0 <= pk <= self.top:
            self._bits[pk >> 3] |= 1 << (pk & 7)

    def __contains__(self, pk: int) -> bool:
        return 0 <= pk <= self.top and bool(self._bits[pk >> 3] & (1 << (pk & 7)))


def chunks(objects: Iterable[StoredObject]) -> Iterator[tuple[StoredObject, ...]]:
    return batched(objects, CHUNK)


def age_hours(obj: StoredObject, now: datetime) -> str:
    return f"{(now - obj.modified).total_seconds() / 3600:.1f} h old"


class AreaCheck:
    """What both areas' checks share: the report, the options, and what to do with a file no row knows."""

    def __init__(self, storage: Storage, area: str, options: CheckOptions) -> None:
        self.storage = storage
        self.options = options
        self.report = AreaReport(area)
        self.orphans = Repairs[str](self._delete, force=options.force)

    def unknown(self, obj: StoredObject) -> None:
        """A file no row knows: an orphan once it is old enough, else perhaps an ingest (or render) in progress."""
        if self.options.now - obj.modified < RECENT:
            self.report.tally(Kind.RECENT).add(obj.key)
            return
        self.report.tally(Kind.ORPHAN).add(f"{obj.key} ({age_hours(obj, self.options.now)})")
        if self.options.repair:
            self.orphans.add(obj.key)

    def _delete(self, keys: list[str]) -> int:
        for key in keys:
            self.storage.delete(key)
        return len(keys)

    def settle(self, repairs: Repairs[Any], total: int, what: str, *, empty: bool = False) -> None:
        """Finish one kind of repair within the guard (nothing at all of an ``empty`` area); say so in the report
        when it was refused."""
        if not self.options.repair:
            return
        limit = 0 if empty else guard_limit(total)
        if repairs.finish(limit):
            if repairs.done:
                self.report.repaired[what] = repairs.done
            return
        reason = (
            "its storage area is empty (not mounted?)"
            if empty
            else f"that is more than {limit} of {total} (1 in {GUARD_SHARE}, at least {GUARD_FLOOR})"
        )
        self.report.refused.append(
            f"{self.report.area}: {repairs.found} to be {what}, but {reason}. Do the storage and the database "
            "belong together (a storage not mounted, a database restored from an older backup)? Check, then run "
            "again with --force."
        )


def sha256_of(storage: Storage, key: str) -> str | None:
    digest = hashlib.sha256()
    try:
        with storage.open(key) as stored:
            while piece := stored.read(HASH_READ):
                digest.update(piece)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


class InstanceCheck(AreaCheck):
    def __init__(self, storage: Storage, options: CheckOptions) -> None:
        super().__init__(storage, INSTANCES, options)
        top = Instance.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        self.seen = IdSet(top)  # rows added after this point are not judged missing: their files came later
        self.mark = Repairs[int](self._mark_broken, force=options.force)
        self.restore = Repairs[int](self._clear_broken, force=True)

    def run(self) -> AreaReport:
        for chunk in chunks(self.storage.scan(INSTANCES)):
            self._files(chunk)
        for page in self._pages():
            self._rows(page)
        self.settle(self.orphans, self.report.objects, "deleted")
        empty = self.report.objects == 0
        self.settle(self.mark, self.report.rows, "marked broken", empty=empty)
        self.settle(self.restore, self.report.rows, "cleared")
        return self.report

    # --- the storage's files, against the rows that name them ---------------------------------------------

    def _files(self, chunk: tuple[StoredObject, ...]) -> None:
        self.report.objects += len(chunk)
        prefix = f"{INSTANCES}/"
        rows = {
            row[0]: row
            for row in Instance.objects.filter(storage_key__in=[o.key.removeprefix(prefix) for o in chunk])
            .order_by()
            .values_list(
                "storage_key", "pk", "size", "sha256", "broken_at", "series__study__destroy_started_at"
            )
        }
        for obj in chunk:
            row = rows.get(obj.key.removeprefix(prefix))
            if row is None:
                self.unknown(obj)
                continue
            _, pk, size, sha256, broken_at, destroying = row
            self.seen.add(pk)
            if destroying is not None:
                self.report.tally(Kind.SKIPPED).add(f"instance {pk}: {obj.key}")
            elif broken_at is not None:
                self._broken(obj, pk, size, sha256)
            elif obj.size != size:
                self._damaged(Kind.CHANGED, pk, f"{obj.key} ({obj.size} bytes, indexed {size})")
            elif self.options.hash and sha256_of(self.storage, obj.key) not in (sha256, None):
                self._damaged(Kind.CHANGED, pk, f"{obj.key} (SHA-256 differs)")

    def _broken(self, obj: StoredObject, pk: int, size: int, sha256: str) -> None:
        """A row marked broken whose file is there: whole again (restored from a backup), or still not whole."""
        if obj.size == size and sha256_of(self.storage, obj.key) == sha256:
            self.report.tally(Kind.RESTORED).add(f"instance {pk}: {obj.key}")
            if self.options.repair:
                self.restore.add(pk)
        else:
            self.report.tally(Kind.KNOWN_BROKEN).add(f"instance {pk}: {obj.key} (changed)")

    def _damaged(self, kind: str, pk: int, example: str) -> None:
        self.report.tally(kind).add(f"instance {pk}: {example}")
        if self.options.repair:
            self.mark.add(pk)

    # --- the rows, against the files the walk met ------------------------------------------------------------

    def _pages(self) -> Iterator[list[tuple[int, str, datetime | None, datetime | None]]]:
        last = 0
        while True:
            page = list(
                Instance.objects.filter(pk__gt=last, pk__lte=self.seen.top)
                .order_by("pk")
                .values_list("pk", "storage_key", "broken_at", "series__study__destroy_started_at")[:PAGE]
            )
            if not page:
                return
            yield page
            last = page[-1][0]

    def _rows(self, page: list[tuple[int, str, datetime | None, datetime | None]]) -> None:
        self.report.rows += len(page)
        for pk, name, broken_at, destroying in page:
            if pk in self.seen:
                continue
            key = instance_key(name)
            if destroying is not None:
                self.report.tally(Kind.SKIPPED).add(f"instance {pk}: {key}")
            elif self.storage.exists(key):
                continue  # appeared since the walk passed its place (put back by hand): judged next time
            elif broken_at is not None:
                self.report.tally(Kind.KNOWN_BROKEN).add(f"instance {pk}: {key} (missing)")
            else:
                self._damaged(Kind.MISSING, pk, key)

    # --- repairs -----------------------------------------------------------------------------------------------

    def _mark_broken(self, pks: list[int]) -> int:
        marked = 0
        for part in batched(pks, CHUNK):
            marked += Instance.objects.filter(pk__in=part, broken_at__isnull=True).update(
                broken_at=self.options.now
            )
        return marked

    def _clear_broken(self, pks: list[int]) -> int:
        return sum(
            Instance.objects.filter(pk__in=part).update(broken_at=None) for part in batched(pks, CHUNK)
        )


def check_instances(storage: Storage, options: CheckOptions) -> AreaReport:
    """Compare the ``instances/`` area with the index both ways; repair when asked (see the module's text)."""
    return InstanceCheck(storage, options).run()


# --- what the pages ask ---------------------------------------------------------------------------------------


def broken_instances(study: Study) -> int:
    """How many of the study's instances are marked broken (left out of downloads and DICOMweb)."""
    return Instance.objects.filter(
        organisation_id=study.organisation_id, series__study=study, broken_at__isnull=False
    ).count()
