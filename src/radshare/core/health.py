"""Readiness: whether each part radshare needs works, for ``/readyz`` (monitoring) and ``radshare status``.

Five parts, each checked cheaply (operators poll every few seconds: three queries in all) and within a short time:

* ``database``: a trivial query (``SELECT 1``);
* ``storage``: a few random bytes written durably through the storage door under a probe key of their own
  (``core/storage/layout.py::probe_key``), read back and deleted: the path a C-STORE's success depends on;
* ``worker``: some worker sent a heartbeat within ``WORKER_SILENCE`` (``core/workers.py``);
* ``queue``: no task has been ready to run for longer than ``QUEUE_WAIT`` (a task waiting for its ``run_after``
  is not ready yet);
* ``scp``: the DICOM SCP's port accepts a TCP connection within ``SCP_CONNECT_TIMEOUT`` (a bind to every
  interface is tried on loopback). Only a connection: no association, so the SCP neither logs nor audits it.

The database and storage checks run in a thread of their own and get ``CHECK_TIMEOUT``; one that has not answered
by then is failing, so a stalled file system or a database behind a lost connection never hangs a poll. At most one
such thread per part and process is ever waiting: while it waits, later polls report it instead of starting
another.

``Readiness.as_json`` says ok or failing per part and nothing more (``/readyz`` is served to the public site too).
The details (times, counts, addresses, error texts; never patient data) are for ``radshare status`` and the log.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Case, Count, DateTimeField, F, Max, Min, Q, When
from django.utils import timezone
from django_tasks_db.models import DBTaskResult, get_date_max

from radshare.core.models import Worker
from radshare.core.storage import get_storage
from radshare.core.storage.layout import probe_key
from radshare.core.workers import LEASE

logger = logging.getLogger(__name__)

DATABASE, STORAGE, WORKER, QUEUE, SCP = "database", "storage", "worker", "queue", "scp"
PARTS = (DATABASE, STORAGE, WORKER, QUEUE, SCP)

# A worker renews its lease every 5 s; this long without any heartbeat means no worker runs.
WORKER_SILENCE = timedelta(minutes=2)
# A task ready to run this long has found no worker to run it (or the workers are stuck behind others).
QUEUE_WAIT = timedelta(minutes=5)
# Seconds the database and the storage get to answer.
CHECK_TIMEOUT = 2.0
# Seconds the DICOM SCP's port gets to accept a connection.
SCP_CONNECT_TIMEOUT = 1.0
PROBE_SIZE = 64  # bytes written, read back and deleted by the storage check
LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 - a bind to every interface, reached on loopback
DETAIL_LENGTH = 200


@dataclass(frozen=True)
class Check:
    part: str
    ok: bool
    detail: str  # for an operator: English, no patient data


@dataclass(frozen=True)
class Readiness:
    checks: tuple[Check, ...]  # one per part, in ``PARTS`` order

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failing(self) -> list[str]:
        return [check.part for check in self.checks if not check.ok]

    def check(self, part: str) -> Check:
        return next(check for check in self.checks if check.part == part)

    def as_json(self) -> dict[str, Any]:
        """The answer of ``/readyz``: which parts fail, and nothing about why."""
        return {
            "status": "ok" if self.ok else "unavailable",
            "failing": self.failing,
            "checks": {check.part: "ok" if check.ok else "failing" for check in self.checks},
        }


def check_readiness() -> Readiness:
    """Check every part: database and storage in threads of their own (at the same time), the SCP meanwhile."""
    started = time.monotonic()
    database = _database_slot.start()
    storage = _storage_slot.start()
    scp = check_scp()
    deadline = started + CHECK_TIMEOUT
    found = {check.part: check for check in (*database.wait(deadline), *storage.wait(deadline), scp)}
    return Readiness(tuple(found[part] for part in PARTS))


def format_age(age: timedelta) -> str:
    """``12 s``, ``3 min``, ``5 h``, ``2 days``: for details an operator reads."""
    seconds = max(int(age.total_seconds()), 0)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


# --- the parts -------------------------------------------------------------------------------------------


def database_checks(found: list[Check]) -> None:
    """The database, worker and queue checks, appended to ``found`` as each is done (so that a poll that stops
    waiting still reports what was answered). Three queries, on this thread's connection."""
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        found.append(Check(DATABASE, False, f"no answer: {_error(exc)}"))
        found.extend(
            Check(part, False, "not checked: the database does not answer") for part in (WORKER, QUEUE)
        )
        return
    found.append(Check(DATABASE, True, f"{connection.vendor} answered in {_ms(started)} ms"))
    found.append(_worker_check())
    found.append(_queue_check())


def _worker_check() -> Check:
    now = timezone.now()
    try:
        seen = Worker.objects.aggregate(
            last=Max("alive_until"), live=Count("id", filter=Q(alive_until__gt=now))
        )
    except DatabaseError as exc:
        return Check(WORKER, False, f"cannot read the heartbeats: {_error(exc)}")
    if seen["last"] is None:
        return Check(WORKER, False, "no worker is registered (none started, or all stopped)")
    # A heartbeat sets the lease to end LEASE later (database clock; ``radshare worker --heartbeat-timeout``
    # changes the lease of that worker, and this estimate with it).
    age = now - (seen["last"] - LEASE)
    detail = f"last heartbeat {format_age(age)} ago; {seen['live']} worker(s) with a live lease"
    return Check(WORKER, age <= WORKER_SILENCE, detail)


def _queue_check() -> Check:
    # A task is ready from when it was enqueued, or from its run_after (a retry's backoff) when it has one.
    ready_since = Case(
        When(run_after=get_date_max(), then=F("enqueued_at")),
        default=F("run_after"),
        output_field=DateTimeField(),
    )
    try:
        seen = DBTaskResult.objects.ready().aggregate(count=Count("id"), since=Min(ready_since))
    except DatabaseError as exc:
        return Check(QUEUE, False, f"cannot read the task queue: {_error(exc)}")
    if not seen["count"]:
        return Check(QUEUE, True, "no task waiting")
    age = timezone.now() - seen["since"]
    return Check(
        QUEUE, age <= QUEUE_WAIT, f"oldest ready task waiting {format_age(age)} ({seen['count']} ready)"
    )


def storage_checks(found: list[Check]) -> None:
    """Write a probe durably, read it back and delete it, through the storage door."""
    started = time.monotonic()
    storage = get_storage()
    key = probe_key()
    payload = secrets.token_bytes(PROBE_SIZE)
    try:
        storage.put_durable(key, payload)
    except OSError as exc:
        found.append(Check(STORAGE, False, f"cannot write: {_error(exc)}"))
        return
    problem = ""
    try:
        with storage.open(key) as stored:
            if stored.read(PROBE_SIZE + 1) != payload:
                problem = "what was read back differs from what was written"
    except OSError as exc:
        problem = f"cannot read back what was written: {_error(exc)}"
    try:
        storage.delete(key)
    except OSError as exc:
        problem = problem or f"cannot delete what was written: {_error(exc)}"
    if problem:
        found.append(Check(STORAGE, False, problem))
    else:
        found.append(Check(STORAGE, True, f"wrote, read back and deleted a probe in {_ms(started)} ms"))


def check_scp() -> Check:
    cfg = settings.RADSHARE
    host = LOOPBACK.get(cfg.dicom_bind, cfg.dicom_bind)
    where = f"[{host}]:{cfg.dicom_port}" if ":" in host else f"{host}:{cfg.dicom_port}"
    try:
        with socket.create_connection((host, cfg.dicom_port), timeout=SCP_CONNECT_TIMEOUT):
            pass
    except TimeoutError:
        return Check(SCP, False, f"{where} did not accept a connection within {SCP_CONNECT_TIMEOUT:g} s")
    except OSError as exc:
        return Check(SCP, False, f"nothing accepts connections on {where} ({exc.strerror or exc})")
    return Check(SCP, True, f"{where} accepts connections")


# --- bounded runs ----------------------------------------------------------------------------------------


class _Pending:
    """A run of a slot's checks: what it has found so far, and whether it is done."""

    def __init__(self, slot: _Slot, waiting_for: float | None = None) -> None:
        self.slot = slot
        self.found: list[Check] = []
        self.done = threading.Event()
        self.waiting_for = waiting_for  # seconds an earlier run has not answered; then this one never started

    def wait(self, deadline: float) -> list[Check]:
        """The slot's checks: those found, and the rest failing with why they are missing."""
        if self.waiting_for is not None:
            first = (
                f"still no answer to the check started {format_age(timedelta(seconds=self.waiting_for))} ago"
            )
        elif self.done.wait(max(deadline - time.monotonic(), 0)):
            first = "the check stopped without an answer (see the log)"
        else:
            first = f"no answer within {CHECK_TIMEOUT:g} s"
        found = list(self.found)  # a copy: the run may still append
        answered = {check.part for check in found}
        missing = [part for part in self.slot.parts if part not in answered]
        if missing:
            found.append(Check(missing[0], False, first))
            found.extend(
                Check(part, False, f"not checked: {missing[0]} did not answer") for part in missing[1:]
            )
        return found


class _Slot:
    """One part (or parts checked together) run in a thread of its own, one run at a time per process: a run that
    hangs holds one thread, however often readiness is polled meanwhile."""

    def __init__(self, name: str, parts: tuple[str, ...], run: Callable[[list[Check]], None]) -> None:
        self.name = name
        self.parts = parts
        self._run = run
        self._lock = threading.Lock()
        self._busy_since: float | None = None

    def start(self) -> _Pending:
        with self._lock:
            now = time.monotonic()
            if self._busy_since is not None:
                return _Pending(self, waiting_for=now - self._busy_since)
            self._busy_since = now
        pending = _Pending(self)
        threading.Thread(
            target=self._main, args=(pending,), name=f"readiness {self.name}", daemon=True
        ).start()
        return pending

    def _main(self, pending: _Pending) -> None:
        try:
            self._run(pending.found)
        except Exception:
            logger.exception("readiness check of %s failed", self.name)
        finally:
            connection.close()  # this thread's own connection (with PostgreSQL: back to the pool)
            with self._lock:
                self._busy_since = None
            pending.done.set()


_database_slot = _Slot(DATABASE, (DATABASE, WORKER, QUEUE), database_checks)
_storage_slot = _Slot(STORAGE, (STORAGE,), storage_checks)


# --- the log ---------------------------------------------------------------------------------------------

_logged_lock = threading.Lock()
_logged_failing: tuple[str, ...] = ()


def log_change(readiness: Readiness) -> None:
    """Log when the set of failing parts changes (a poll every few seconds must not repeat the same line)."""
    global _logged_failing
    failing = tuple(readiness.failing)
    with _logged_lock:
        if failing == _logged_failing:
            return
        _logged_failing = failing
    if failing:
        reasons = "; ".join(f"{check.part}: {check.detail}" for check in readiness.checks if not check.ok)
        logger.warning("not ready: %s", reasons)
    else:
        logger.info("ready again: every part answers")


# --- helpers ---------------------------------------------------------------------------------------------


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _error(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:DETAIL_LENGTH]
