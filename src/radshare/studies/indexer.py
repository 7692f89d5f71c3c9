"""Journal mode of the storage SCP (``RADSHARE_INGEST_JOURNAL``; docs/architecture.md "C-STORE ingest").

The SCP acknowledges an instance once it is in the journal (``journal.py``); this module's indexer, a process of the
SCP's own on the other core, files the journal's records through ``store_instance`` as every other ingest path
does, in order. The records found at each look (up to ``BATCH``) are filed in one transaction with the move of the
journal's cursor (``JournalCursor``), so a crash of either process loses nothing and files nothing twice: a restart
goes on from the cursor; were a record filed again all the same, the unique SOP Instance UID makes it a duplicate.

What the SCP could not check before acknowledging:
* a study being destroyed: the indexer waits until the destruction is over, then files it as a new study;
* a study filed under another patient meanwhile (an upload or a correction a moment earlier): the conflict is
  recorded as for a refused instance, and the file is kept in ``<journal>/held/`` for the admin
  (docs/operations.md "Journal mode").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
import multiprocessing
import multiprocessing.process
import os
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from django.db import DatabaseError, close_old_connections, transaction

from radshare.audit.actions import Action
from radshare.audit.services import ActorType, Outcome, record
from radshare.organisations.models import Organisation, PacsNode
from radshare.studies import held, indexer_process, journal
from radshare.studies.errors import IngestError, OutOfResourcesError
from radshare.studies.header import Header
from radshare.studies.models import Instance, JournalCursor
from radshare.studies.services import (
    PatientConflictError,
    StoreOutcome,
    indexed_copy,
    store_instance,
    stored_together,
)
from radshare.studies.signals import announce_arrivals

logger = logging.getLogger(__name__)

IDLE = 0.005  # seconds between looks at the journal when it has nothing new
# Seconds before the next look after a batch that was not full, unless the SCP nudges (an association ended).
GATHER = 0.25
RETRY_FIRST, RETRY_LAST = 0.5, 30.0  # seconds before filing a record again after a passing failure
BATCH = 64  # records filed in one transaction at most (the cursor moves once per batch)
ANNOUNCE_EVERY = 50  # stored instances between two calls for rendering while a study still arrives


@dataclass
class Tally:
    """What one association has come to: its audit entry (``record_association``)."""

    stored: int = 0
    duplicate: int = 0
    refused: int = 0
    held: int = 0
    study_uids: set[str] = field(default_factory=set)
    patients: set[int] = field(default_factory=set)

    def as_json(self) -> dict[str, Any]:
        return {
            "stored": self.stored,
            "duplicate": self.duplicate,
            "refused": self.refused,
            "held": self.held,
            "studies": sorted(self.study_uids),
            "patients": sorted(self.patients),
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Tally:
        return cls(
            value.get("stored", 0),
            value.get("duplicate", 0),
            value.get("refused", 0),
            value.get("held", 0),
            set(value.get("studies", ())),
            set(value.get("patients", ())),
        )

    def add(self, other: Tally) -> None:
        self.stored += other.stored
        self.duplicate += other.duplicate
        self.refused += other.refused
        self.held += other.held
        self.study_uids |= other.study_uids
        self.patients |= other.patients


def record_association(
    organisation: Organisation | int,
    node: PacsNode | None,
    calling_ae_title: str,
    address: str,
    tally: Tally,
    *,
    interrupted: bool = False,
) -> None:
    """The one audit entry of a storage association (docs/architecture.md "Audit granularity"), when it did
    anything."""
    if not (tally.stored or tally.duplicate or tally.refused or tally.held or interrupted):
        return
    detail: dict[str, Any] = {
        "stored": tally.stored,
        "duplicate": tally.duplicate,
        "refused": tally.refused,
        "patients": len(tally.patients),
    }
    if tally.held:
        detail["held"] = tally.held
    if interrupted:
        detail["interrupted"] = True
    record(
        Action.DICOM_STORE,
        outcome=Outcome.FAILURE if tally.refused or tally.held or interrupted else Outcome.SUCCESS,
        node=node,
        organisation=organisation,
        actor_type=ActorType.DICOM_NODE,
        actor_label=calling_ae_title,
        client=address,
        patient=next(iter(tally.patients)) if len(tally.patients) == 1 else None,
        study_uids=tally.study_uids,
        detail=detail,
    )


class Indexer:
    """Files one journal folder's records, in order, from its cursor on."""

    def __init__(self, folder: Path, *, first_live_segment: int) -> None:
        self.folder = folder
        self.journal = journal.journal_id(folder)
        self.first_live_segment = (
            first_live_segment  # the running SCP's first segment: older ones are a past run's
        )
        cursor, _ = JournalCursor.objects.get_or_create(journal=self.journal)
        self.position = cursor.position
        self.associations = {k: Tally.from_json(v) for k, v in cursor.associations.items()}
        self._meta: dict[str, dict[str, Any]] = {k: v.get("meta", {}) for k, v in cursor.associations.items()}
        self._organisations: dict[int, Organisation] = {}
        self._nodes: dict[int, PacsNode] = {}
        self._unannounced = 0
        self._announcing = False  # a call for rendering waits for this transaction's commit
        self._past_closed = False
        self._orphans_checked = False

    # --- the loop ---------------------------------------------------------------------------------------------

    def run(
        self,
        applied: Synchronized[int] | None,
        stop: Event | threading.Event | None,
        alive: Callable[[], bool],
        nudge: Event | threading.Event | None = None,
    ) -> None:
        """File records until ``stop`` is set and nothing is left, or the SCP is gone. ``nudge``: set by the SCP
        when an association ends or it waits for the journal to be filed, so that the last records do not wait
        for the next batch to gather."""
        if applied is not None:
            applied.value = self.position
        while True:
            filed = self.pass_once(applied)
            if filed:
                if filed < BATCH:
                    # Let the next records gather: a batch's transaction, cursor, counts and flushes cost the same
                    # for one record as for 64, and the indexer shares the machine (its cores and its disk) with
                    # the SCP answering the sender.
                    if nudge is None:
                        time.sleep(GATHER)
                    elif nudge.wait(GATHER):
                        nudge.clear()
                continue
            self._close_past_associations()
            self._adopt_orphans()
            if self._unannounced:
                self._unannounced = 0
                announce_arrivals()
            if (stop is not None and stop.is_set()) or not alive():
                return
            time.sleep(IDLE)

    def pass_once(self, applied: Synchronized[int] | None = None, *, live: bool = True) -> int:
        """File whatever the journal holds beyond the cursor, in batches; returns how many records there were."""
        progressed = 0
        present = journal.segments(self.folder)
        batch: list[journal.Record] = []
        for item in journal.read(self.folder, self.position, live=live):
            batch.append(item)
            progressed += 1
            if len(batch) >= BATCH:
                self._file_batch(batch, applied)
                batch = []
        if batch:
            self._file_batch(batch, applied)
        if present and journal.split(self.position)[0] < present[-1]:
            # Every segment before the one that was newest when this pass began is read to its end.
            self._save(journal.position(present[-1], 0), self.associations, self._meta)
            self.position = journal.position(present[-1], 0)
        self._drop_filed_segments()
        return progressed

    def _drop_filed_segments(self) -> None:
        """Segments wholly behind the cursor (committed) are deleted: the journal stays as long as its lag."""
        current = journal.split(self.position)[0]
        for number in journal.segments(self.folder):
            if number < current:
                journal.segment_path(self.folder, number).unlink(missing_ok=True)

    # --- one record -------------------------------------------------------------------------------------------

    def _file_batch(self, batch: list[journal.Record], applied: Synchronized[int] | None) -> None:
        """File the records that are there in one transaction with the cursor's move (one commit, one cursor
        update for up to ``BATCH`` records). Should any of them fail, the batch is rolled back and its records are
        filed one by one, each retried until it is filed."""
        try:
            self._commit(batch)
        except Exception as exc:  # noqa: BLE001 - each record is then filed, retried and logged by _file
            logger.info("journal: a batch of %d records is filed one by one: %s", len(batch), _why(exc))
            close_old_connections()
            for item in batch:
                self._file(item)
                if applied is not None:
                    applied.value = item.end
            return
        if applied is not None:
            applied.value = self.position

    def _file(self, item: journal.Record) -> None:
        """Retry until the record is filed: it was acknowledged, so it may wait but never be dropped."""
        delay = RETRY_FIRST
        while True:
            try:
                self._commit([item], summed=False)
                return
            except (OutOfResourcesError, DatabaseError, OSError) as exc:
                # A study being destroyed, storage full, the database away: all pass.
                logger.warning("journal record not filed yet, again in %.1f s: %s", delay, _why(exc))
            except Exception:
                logger.exception("journal record not filed, again in %.1f s", delay)
            close_old_connections()
            time.sleep(delay)
            delay = min(delay * 2, RETRY_LAST)

    def _commit(self, items: list[journal.Record], *, summed: bool = True) -> None:
        """File ``items`` and move the cursor past the last, in one transaction; then take the new state.

        ``summed``: the instances are stored together (``services.stored_together``): the counts they add to
        their studies and series summed and written once (two statements per study and series instead of three
        per instance), their files written side by side and waited for once, and, when none of them is here
        already, their rows inserted together. A record filed alone after its batch failed is counted, waited for
        and inserted as it is stored, as on every other ingest path, where a study moved meanwhile is told apart
        from one being destroyed, a full disk is a refusal and a duplicate is told by its row."""
        self._announcing = False  # a call registered in a transaction that rolled back never ran
        together = stored_together(all_new=self._all_new(items)) if summed else contextlib.nullcontext()
        with transaction.atomic(), together:
            state = (self.associations, self._meta)
            for item in items:
                state = self._apply(item, *state)
            self._save(items[-1].end, *state)
        self.position, (self.associations, self._meta) = items[-1].end, state
        for item in items:
            if item.file is not None:  # filed: the storage holds it under a name of its own now
                with contextlib.suppress(OSError):
                    item.file.unlink()

    @staticmethod
    def _all_new(items: list[journal.Record]) -> bool:
        """Whether the instances of ``items`` are all new: none of them twice, none indexed already (one query per
        organisation). A PACS that sends a study again gets its batches filed instance by instance, where the
        unique SOP Instance UID tells each duplicate."""
        wanted: dict[int, set[str]] = {}
        count = 0
        for item in items:
            if item.kind != journal.INSTANCE:
                continue
            uid = (item.meta.get("h") or {}).get("sop_instance_uid")
            if not uid:  # a record without the header read (an older version's): filed as it is read
                return False
            wanted.setdefault(int(item.meta["o"]), set()).add(str(uid))
            count += 1
        if sum(map(len, wanted.values())) < count:
            return False
        return not any(
            Instance.objects.filter(organisation_id=organisation, sop_instance_uid__in=uids).exists()
            for organisation, uids in wanted.items()
        )

    def _apply(
        self, item: journal.Record, associations: dict[str, Tally], metas: dict[str, dict[str, Any]]
    ) -> tuple[dict[str, Tally], dict[str, dict[str, Any]]]:
        """File one record inside the caller's transaction; returns the open associations' tallies after it, new
        objects (those given are left as they were, should the transaction roll back)."""
        meta = item.meta
        key = str(meta.get("a", ""))
        tally = Tally.from_json(associations.get(key, Tally()).as_json())
        if item.kind == journal.INSTANCE:
            self._file_instance(item, tally)
            return {**associations, key: tally}, {
                **metas,
                key: metas.get(key, {}) | {k: meta[k] for k in ("o", "n", "ae", "ip") if k in meta},
            }
        # journal.ASSOCIATION_END
        tally.add(Tally.from_json(meta))
        node = self._node(meta.get("n"))
        record_association(int(meta["o"]), node, meta.get("ae", ""), meta.get("ip", ""), tally)
        return {k: v for k, v in associations.items() if k != key}, {
            k: v for k, v in metas.items() if k != key
        }

    def _file_instance(self, item: journal.Record, tally: Tally) -> None:
        organisation = self._organisation(int(item.meta["o"]))
        node = self._node(item.meta.get("n"))
        # What the SCP read before it acknowledged, and the payload's CRC-32 the journal read gave.
        header = Header.from_json(item.meta.get("h"))
        try:
            data = item.data()
        except FileNotFoundError:
            # Its file goes once it is filed: filed before (a cursor put back), so a duplicate.
            tally.duplicate += 1
            if (
                header is not None
                and (copy := indexed_copy(organisation, header.sop_instance_uid)) is not None
            ):
                tally.study_uids.add(copy[2])
                tally.patients.add(copy[3])
            return
        try:
            result = store_instance(
                organisation,
                data,
                source="scp",
                node=node,
                header=header,
                crc32=item.payload_crc,
                durable_file=item.file,
            )
        except PatientConflictError:
            # Counted on the study's conflict by store_instance; the bytes wait for the admin.
            tally.held += 1
            name = self._hold(item, data)
            logger.warning("journal: an instance in conflict with its study's patient is held as %s", name)
            return
        except OutOfResourcesError:
            raise
        except (
            IngestError
        ) as exc:  # checked before it was acknowledged: cannot happen but for a changed check
            tally.refused += 1
            logger.error(
                "journal: an acknowledged instance cannot be filed (0x%04X): %s", exc.status, exc.reason
            )
            return
        tally.study_uids.add(result.study_instance_uid)
        tally.patients.add(result.patient_pk)
        if result.outcome == StoreOutcome.STORED:
            tally.stored += 1
            self._unannounced += 1
            if self._unannounced >= ANNOUNCE_EVERY and not self._announcing:
                self._announcing = True  # once per transaction, however many instances follow in it
                transaction.on_commit(self._announce)
        elif not item.meta.get("left_over"):  # a file a past run left, filed then: its name had not gone yet
            tally.duplicate += 1

    def _announce(self) -> None:
        self._unannounced = 0
        announce_arrivals()

    def _hold(self, item: journal.Record, data: bytes) -> str:
        """Keep the bytes in ``held/`` for the admin (``studies/held.py``), named after the record."""
        node = item.meta.get("n")
        return held.keep(
            self.folder.parent / "held",
            self.journal,
            item.start,
            int(item.meta["o"]),
            node and int(node),
            data,
        )

    def _save(self, end: int, associations: dict[str, Tally], metas: dict[str, dict[str, Any]]) -> None:
        saved = {k: {**v.as_json(), "meta": metas.get(k, {})} for k, v in associations.items()}
        JournalCursor.objects.filter(journal=self.journal).update(position=end, associations=saved)

    def _close_past_associations(self) -> None:
        """Once the records of a past run are filed, the associations it left open will never end (the SCP
        stopped with them): each gets its audit entry, marked interrupted."""
        if self._past_closed:  # called once idle: every record of a past run is filed by then
            return
        self._file_left_over()
        past = {k for k in self.associations if int(k.split("-", 1)[0]) < self.first_live_segment}
        if past:
            with transaction.atomic():
                for key in past:
                    meta = self._meta.get(key, {})
                    record_association(
                        int(meta["o"]),
                        self._node(meta.get("n")),
                        meta.get("ae") or "",
                        meta.get("ip") or "",
                        self.associations[key],
                        interrupted=True,
                    )
                associations = {k: v for k, v in self.associations.items() if k not in past}
                metas = {k: v for k, v in self._meta.items() if k not in past}
                self._save(self.position, associations, metas)
            self.associations, self._meta = associations, metas
        self._past_closed = True

    def _file_left_over(self) -> None:
        """The instance files a past run left once its records are filed: each is filed as its name tells (its
        record was lost with the machine; or it was filed, and the index tells the duplicate), or, cut off before
        it was acknowledged, removed (docs/architecture.md "Journal mode")."""
        for left in journal.files_of_past_runs(self.folder, self.first_live_segment):
            try:
                data = left.path.read_bytes()
            except FileNotFoundError:
                continue
            if zlib.crc32(data) != left.crc:
                logger.info("journal: %s was cut off before it was acknowledged; removed", left.path.name)
                left.path.unlink(missing_ok=True)
                continue
            meta = {"a": left.association, "o": left.organisation, "n": left.node, "left_over": True}
            start = journal.left_over_position(left)
            self._file(journal.Record(journal.INSTANCE, meta, b"", start, self.position, left.crc, left.path))

    def _adopt_orphans(self) -> None:
        """Once idle, file the other journal folders that no running SCP holds: an SCP that crashed and was not
        started again (of two on one machine, say) would otherwise leave what it acknowledged unfiled."""
        if self._orphans_checked:
            return
        self._orphans_checked = True
        for folder, lock in journal.unclaimed(self.folder.parent):
            try:
                if journal.segments(folder):
                    logger.info("journal: filing what the SCP of journal folder %s left", folder.name)
                    orphan = Indexer(folder, first_live_segment=1 << 23)  # every segment is a past run's
                    orphan.pass_once(live=False)
                    orphan._close_past_associations()
                    # Everything readable is filed; what is left is a crash's cut-off tail, never acknowledged.
                    for number in journal.segments(folder):
                        journal.segment_path(folder, number).unlink(missing_ok=True)
            finally:
                os.close(lock)

    def _organisation(self, pk: int) -> Organisation:
        if pk not in self._organisations:
            self._organisations[pk] = Organisation.objects.get(pk=pk)
        return self._organisations[pk]

    def _node(self, pk: int | None) -> PacsNode | None:
        if pk is None:
            return None
        if pk not in self._nodes:
            node = PacsNode.objects.filter(pk=pk).first()  # removed meanwhile: filed without it
            if node is None:
                return None
            self._nodes[pk] = node
        return self._nodes[pk]


def _why(exc: BaseException) -> str:
    if isinstance(exc, IngestError):
        return exc.reason
    return type(exc).__name__


STUCK_AFTER = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Backlog:
    """What one journal folder on this machine holds that is not filed yet (``radshare status``)."""

    folder: str
    waiting_bytes: int
    last_filed: dt.datetime | None  # when its cursor last moved
    held: int  # images kept in ``held/`` (for all folders; on the first one only)

    def stuck(self, now: dt.datetime) -> bool:
        """Records wait and the indexer has filed nothing for ``STUCK_AFTER``: an operator must look."""
        return self.waiting_bytes > 0 and (self.last_filed is None or now - self.last_filed > STUCK_AFTER)


def backlogs(root: Path) -> list[Backlog]:
    """The journal folders under ``root`` (``<DATA_DIR>/journal``) that hold anything, or that an SCP uses."""
    if not root.is_dir():
        return []
    waiting_held = len(held.listed(root / "held"))
    found: list[Backlog] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and (p / "lock").exists()):
        name = journal.journal_id(folder, create=False)
        cursor = JournalCursor.objects.filter(journal=name).first() if name else None
        segment, offset = journal.split(cursor.position if cursor else 0)
        waiting = 0
        for number in journal.segments(folder):
            size = journal.segment_path(folder, number).stat().st_size
            if number > segment:
                waiting += size
            elif number == segment:
                waiting += max(size - offset, 0)
        # An end-of-segment record alone is not waiting work.
        waiting = 0 if waiting <= journal.HEADER.size + 2 else waiting
        waiting += journal.files_waiting(folder)
        found.append(
            Backlog(
                folder.name, waiting, cursor.updated_at if cursor else None, waiting_held if not found else 0
            )
        )
    return found


class JournalMode:
    """The SCP's side of journal mode: the journal folder it holds, its writer and its indexer process."""

    DRAIN_TIMEOUT = 60.0
    RESTART_EVERY = 5.0

    def __init__(self, root: Path) -> None:
        self.folder, self._lock_fd = journal.claim_slot(root)
        filed = JournalCursor.objects.filter(journal=journal.journal_id(self.folder)).values_list(
            "position", flat=True
        )
        self.writer = journal.Writer(self.folder, after=journal.split(filed.first() or 0)[0])
        self.run = journal.split(self.writer.written)[0]  # association keys start with it
        self._count = itertools.count(1)
        self._context = multiprocessing.get_context("spawn")
        self.applied: Synchronized[int] = self._context.Value("q", 0, lock=False)
        self.stop = self._context.Event()
        self.nudge = self._context.Event()  # the indexer files what is there now, without letting more gather
        self._restart_lock = threading.Lock()
        self._restarted = time.monotonic()
        self.process = self._start()

    def _start(self) -> multiprocessing.process.BaseProcess:
        process = self._context.Process(
            target=indexer_process.main,
            args=(str(self.folder), self.applied, self.stop, self.run, self.nudge),
            name="radshare-indexer",
        )
        process.start()
        return process

    def association_key(self) -> str:
        return f"{self.run}-{next(self._count)}"

    def check_indexer(self) -> None:
        """An indexer that died (killed, out of memory) is started again, at most every ``RESTART_EVERY`` seconds:
        the journal must not just grow."""
        if self.process.is_alive() or self.stop.is_set():
            return
        now = time.monotonic()
        with self._restart_lock:
            if self.process.is_alive() or now - self._restarted < self.RESTART_EVERY:
                return
            self._restarted = now
            logger.error("the journal's indexer exited (%s); starting it again", self.process.exitcode)
            self.process = self._start()

    def drain(self) -> bool:
        """Wait until everything appended so far is filed (False after ``DRAIN_TIMEOUT``)."""
        target = self.writer.last_end
        self.nudge.set()
        deadline = time.monotonic() + self.DRAIN_TIMEOUT
        while self.applied.value < target:
            self.check_indexer()
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True

    def close(self) -> None:
        """Let the indexer file what is left, then stop it (what it cannot file now waits for the next start)."""
        self.stop.set()
        self.process.join(timeout=self.DRAIN_TIMEOUT)
        if self.process.is_alive():
            logger.warning("the journal's indexer did not finish in time; the next start files the rest")
            self.process.terminate()
            self.process.join(timeout=10)
        self.writer.close()
        os.close(self._lock_fd)
