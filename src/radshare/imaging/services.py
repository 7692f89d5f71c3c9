"""Renders: claiming pending instances, rendering them in a process pool, recording the outcome."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from datetime import timedelta
from multiprocessing import get_context
from threading import Lock

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Count, Q, Sum
from django.dispatch import Signal
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from radshare.core.cpus import usable_cores
from radshare.core.storage import get_storage, instance_key, render_folder
from radshare.core.tasks import backoff
from radshare.core.workers import current_worker_id
from radshare.imaging.models import InstanceRender
from radshare.imaging.render import RenderJob, RenderOutcome, init_worker, render_file
from radshare.studies.models import Instance, Series, Study

logger = logging.getLogger(__name__)

BATCH = 32
STALE_CLAIM = timedelta(minutes=10)
Status = InstanceRender.Status

# Sent with ``study_ids`` after each batch of renders is recorded (shares listen: SharesConfig.ready).
renders_recorded = Signal()

_pool: ProcessPoolExecutor | None = None
_pool_lock = Lock()


def render_processes() -> int:
    """RADSHARE_RENDER_PROCESSES, or as many as the cores this process may use: a study that has just arrived is
    rendered on every core (a JPEG 2000 study is decode-bound). The render processes run at a lower priority
    (``init_worker``), so the SCP and the web server still come first (docs/architecture.md "Performance
    budget")."""
    return settings.RADSHARE.render_processes or usable_cores()


def pool() -> ProcessPoolExecutor:
    """One pool per worker process, reused across tasks (spawned: the children never touch the database)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(
                max_workers=render_processes(), mp_context=get_context("spawn"), initializer=init_worker
            )
        return _pool


def start_render_processes() -> None:
    """Start the render processes now rather than at the first render (the worker does, as it starts). They run at
    a low priority: started while a study is arriving, they would get the CPU only once the images stop coming, and
    the first share after a restart would wait for their start-up (docs/architecture.md "Renders")."""
    with _sigint_blocked():  # submit() spawns the processes
        executor = pool()
        for _ in range(render_processes()):
            executor.submit(int)  # a task each while none is idle: one process each


@contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Spawned processes inherit this thread's signal mask: a Ctrl-C to the process group while a render
    process starts up (before ``init_worker`` ignores SIGINT) would otherwise kill it with a traceback.
    The worker's main thread still receives the signal and stops the worker in order."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    # Also ignored (in the main thread, where Python allows it): an ignored signal stays ignored across exec, and
    # Python keeps it so at start-up. The mask alone still let one through while a child was importing.
    main = threading.current_thread() is threading.main_thread()
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        yield
    finally:
        if main:
            signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def shutdown_pool() -> None:
    """Stop the render processes now: a render cut short is claimed again later (its claim is given back once this
    worker's lease ends: core/workers.py). Waiting for them could outlast the stop grace of `radshare serve`, which
    then kills the worker and leaves its render processes orphaned mid-start, printing tracebacks."""
    global _pool
    with _pool_lock:
        if _pool is not None:
            processes = list(getattr(_pool, "_processes", {}).values())  # no public API before Python 3.14
            _pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                if process.is_alive():
                    process.terminate()  # SIGTERM: the default action, a quiet exit
            for process in processes:
                process.join(timeout=5)
            _pool = None


def _may_try_now() -> Q:
    """One postponed by a fault of the machine waits for its turn; never one of a study being destroyed."""
    return (Q(retry_after__isnull=True) | Q(retry_after__lte=timezone.now())) & Q(
        instance__series__study__destroy_started_at__isnull=True
    )


def due() -> Q:
    """Pending renders (first passes) that may be tried now."""
    return Q(status=Status.PENDING) & _may_try_now()


def presets_waiting() -> Q:
    """CT renders whose window presets the second pass has yet to make, unclaimed, that may be tried now. They are
    claimed only when no first pass is due (``render_pending_now``), so a share is ready before any of them takes a
    core (docs/architecture.md "Renders"). A rule per study (none while a first pass of the same study is open) cost
    a look at every instance of the study per waiting row: 11 ms per claim at 400 images, and growing with the square
    of a study's size, while holding SQLite's write lock."""
    return Q(status=Status.DONE, presets_due=True, claimed_at__isnull=True) & _may_try_now()


def presets_claimed() -> Q:
    """Second passes claimed by a worker (their files may still appear)."""
    return Q(status=Status.DONE, presets_due=True, claimed_at__isnull=False)


def work_waiting() -> bool:
    """Whether a render of either pass may be made now."""
    return InstanceRender.objects.filter(due() | presets_waiting()).exists()


def delete_render_files(sender: object, study_pk: int, instance_pks: list[int], **kwargs: object) -> None:
    """Receiver of ``studies.signals.study_destroying``: every render file of those instances goes (the rows go
    with the instances)."""
    storage = get_storage()
    for pk in instance_pks:
        for key in list(storage.iterate(render_folder(pk))):
            storage.delete(key)


def rendering(study_pk: int) -> bool:
    """Whether a worker is rendering an instance of the study now (its files may still appear)."""
    return InstanceRender.objects.filter(
        Q(status=Status.RENDERING) | presets_claimed(), instance__series__study_id=study_pk
    ).exists()


def claim_pending(limit: int = BATCH, *, presets: bool = False) -> list[RenderJob]:
    """Mark up to ``limit`` due renders as being rendered by this worker, or (``presets``) CT renders waiting for
    their second pass as claimed by it; any number of workers may call this."""
    now = timezone.now()
    waiting, mark = (presets_waiting(), {}) if presets else (due(), {"status": Status.RENDERING})
    with transaction.atomic():
        rows = list(
            InstanceRender.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(waiting)
            .order_by("id")
            .values_list("id", "instance_id", "instance__storage_key", "attempts")[:limit]
        )
        if not rows:
            return []
        InstanceRender.objects.filter(waiting, id__in=[r[0] for r in rows]).update(
            claimed_at=now, claimed_by=current_worker_id(), **mark
        )
    storage = get_storage()
    return [RenderJob(pk, instance_key(key), storage, attempts, presets) for _, pk, key, attempts in rows]


def postpone(instance_pks: list[int], attempt: int, *, presets: bool = False) -> None:
    """Unclaimed again (a first pass back to pending), tried again after a growing delay (10 s, 20 s, ... an hour),
    so a full disk does not keep the CPU busy; the image is not called broken for it (docs/security.md R8)."""
    claimed = presets_claimed() if presets else Q(status=Status.RENDERING)
    InstanceRender.objects.filter(claimed, instance_id__in=instance_pks).update(
        claimed_at=None,
        claimed_by="",
        attempts=attempt + 1,
        retry_after=timezone.now() + backoff(attempt),
        **({} if presets else {"status": Status.PENDING}),
    )


def record_outcome(outcome: RenderOutcome, attempt: int = 0) -> None:
    if outcome.status == Status.PENDING:
        postpone([outcome.instance_pk], attempt, presets=outcome.presets_pass)
        return
    if outcome.presets_pass:
        _record_presets(outcome)
        return
    InstanceRender.objects.filter(instance_id=outcome.instance_pk).update(
        status=outcome.status,
        reason=outcome.reason,
        frames=outcome.frames,
        rows=outcome.rows,
        columns=outcome.columns,
        preview_rows=outcome.preview_rows,
        preview_columns=outcome.preview_columns,
        presets=outcome.presets,
        presets_due=outcome.presets_due,
        jpeg_sizes=outcome.jpeg_sizes,
        jpeg_size=sum(outcome.jpeg_sizes) + outcome.video_size,  # what the JPEG download holds of it
        checksums=outcome.checksums,
        video_size=outcome.video_size,
        video_crc32=outcome.video_crc32,
        video_frame_rate=outcome.video_frame_rate,
        rendered_at=timezone.now(),
        claimed_at=None,
        claimed_by="",
        attempts=0,
        retry_after=None,
    )
    if outcome.status == Status.FAILED:
        logger.warning("instance %s could not be rendered: %s", outcome.instance_pk, outcome.reason)


def _record_presets(outcome: RenderOutcome) -> None:
    """A second pass is made once: the presets it wrote (none if the frames could not be read this time: the viewer
    then offers none for that series)."""
    InstanceRender.objects.filter(presets_claimed(), instance_id=outcome.instance_pk).update(
        presets=outcome.presets if outcome.status == Status.DONE else [],
        presets_due=False,
        claimed_at=None,
        claimed_by="",
        attempts=0,
        retry_after=None,
    )
    if outcome.status != Status.DONE:
        logger.warning(
            "the CT window presets of instance %s could not be made: %s", outcome.instance_pk, outcome.reason
        )


def _start(jobs: list[RenderJob], parallel: bool) -> Iterator[RenderOutcome]:
    """Hand a claimed batch to the render processes (at once: they render it while the batch before is recorded)."""
    if not jobs:
        return iter(())
    if not parallel:
        return map(render_file, jobs)
    with _sigint_blocked():  # map() submits now, which may spawn the pool's processes
        return pool().map(render_file, jobs)


def _render_batch(jobs: list[RenderJob], outcomes: Iterator[RenderOutcome]) -> int:
    """Wait for one started batch and record its outcomes in one transaction. Whatever is left unrecorded (a render
    process that died, the database away) is postponed, never left claimed; faults are logged once per batch."""
    collected: list[RenderOutcome] = []
    recorded: set[int] = set()
    rendered: set[int] = set()  # recorded and not postponed
    faults: Counter[str] = Counter()
    attempts = {job.instance_pk: job.attempt for job in jobs}
    presets = jobs[0].presets  # a batch is of one pass
    left: list[RenderJob] = []
    try:
        try:
            collected.extend(outcomes)  # kept up to a render process that died
        except BrokenProcessPool:
            shutdown_pool()  # a render process was killed (out of memory, a crashing decoder): start afresh
            faults["render process died"] += 1
        with transaction.atomic():  # one commit for the batch, not one per image
            for outcome in collected:
                record_outcome(outcome, attempts[outcome.instance_pk])
        for outcome in collected:
            recorded.add(outcome.instance_pk)
            if outcome.fault:
                faults[outcome.fault] += 1
            else:
                rendered.add(outcome.instance_pk)
    finally:
        left = [job for job in jobs if job.instance_pk not in recorded]
        _postpone_jobs(left)
    if rendered and not presets:
        _announce(rendered)
    if faults:
        postponed = len(left) + sum(n for fault, n in faults.items() if fault != "render process died")
        logger.warning(
            "%d of %d renders postponed by a fault of the machine (%s); next try in %d s or more",
            postponed,
            len(jobs),
            ", ".join(sorted(faults)),
            int(backoff(min(job.attempt for job in jobs)).total_seconds()),
        )
    return len(recorded)


def _announce(instance_pks: set[int]) -> None:
    """Tell the apps above which studies got renders, so a share waiting for them is ready at once (not at its
    next look, up to a minute later)."""
    study_ids = set(
        InstanceRender.objects.filter(instance_id__in=instance_pks).values_list(
            "instance__series__study_id", flat=True
        )
    )
    for receiver, result in renders_recorded.send_robust(sender=InstanceRender, study_ids=study_ids):
        if isinstance(result, Exception):  # the share's own polling still finds it ready
            logger.error("a receiver of renders_recorded failed (%r)", receiver, exc_info=result)


def render_pending_now(*, parallel: bool = True) -> int:
    """Render everything due, batch by batch, a first pass before any second pass; returns how many renders were
    made (or postponed)."""
    give_back_own_claims()
    handled = 0
    jobs = _claim_next()
    outcomes = _start(jobs, parallel)
    while jobs:
        # The next batch is claimed and started before this one is recorded, so the render processes never wait
        # for the database. They take the batches in the order given: a second pass claimed now comes after them.
        following = _claim_next()
        started = _start(following, parallel)
        try:
            handled += _render_batch(jobs, outcomes)
        except BaseException:
            _abandon(following, started if parallel else iter(()))
            raise
        if not following:  # the presets of the batch just recorded are waiting now
            following = _claim_next()
            started = _start(following, parallel)
        jobs, outcomes = following, started
    return handled


def _abandon(jobs: list[RenderJob], outcomes: Iterator[RenderOutcome]) -> None:
    """A batch started behind one whose recording failed: its renders are let finish (none may write a file after
    its claim is given back: the study could be destroyed meanwhile), then it is given back for a later run."""
    with contextlib.suppress(Exception):
        for _ in outcomes:
            pass
    _postpone_jobs(jobs)


def _postpone_jobs(jobs: list[RenderJob]) -> None:
    """Claimed jobs left without an outcome are postponed (each batch is of one pass); with the database away, this
    worker gives them back on its next run."""
    if jobs:
        with contextlib.suppress(DatabaseError):
            postpone(
                [job.instance_pk for job in jobs], max(job.attempt for job in jobs), presets=jobs[0].presets
            )


def _claim_next() -> list[RenderJob]:
    """A batch of first passes, or when none is due, of second passes."""
    return claim_pending() or claim_pending(presets=True)


def _give_back(claims: Q) -> int:
    """Those claims ended without an outcome: a first pass is pending again, a second pass waiting again."""
    first = InstanceRender.objects.filter(claims, status=Status.RENDERING).update(
        status=Status.PENDING, claimed_at=None, claimed_by=""
    )
    second = InstanceRender.objects.filter(claims, presets_claimed()).update(claimed_at=None, claimed_by="")
    return first + second


def give_back_own_claims() -> int:
    """Claims this worker still holds from a render run that ended early (the database was away): a worker runs one
    task at a time, so none of them is being rendered now."""
    worker_id = current_worker_id()
    if not worker_id:
        return 0
    return _give_back(Q(claimed_by=worker_id))


def release_claims_of(sender: object, worker_ids: Sequence[str], **kwargs: object) -> int:
    """Receiver of ``core.workers.worker_died``: renders those workers held are pending again, and rendered."""
    released = _give_back(Q(claimed_by__in=worker_ids))
    if released:
        request_render()
    return released


def release_stale_claims() -> int:
    """Periodic fallback for claims made outside a worker (no worker id, so no heartbeat to judge them by)."""
    return _give_back(Q(claimed_by="", claimed_at__lt=timezone.now() - STALE_CLAIM))


def add_pending_render(sender: object, instances: list[Instance], **kwargs: object) -> None:
    """Receiver of ``studies.signals.instances_stored``: each instance's render row, "pending" until a worker makes
    it (in the storing transaction, so an instance never lacks one)."""
    InstanceRender.objects.bulk_create([InstanceRender(instance=instance) for instance in instances])


def on_instances_arrived(sender: object, **kwargs: object) -> None:
    """Receiver of ``studies.signals.instances_arrived``: start rendering what came in."""
    request_render()


def request_render() -> None:
    """Ask a worker to render what is pending, unless a render task is already waiting to start.

    A waiting task will see everything committed before it starts; a running one may not, hence "waiting".
    """
    from radshare.imaging.tasks import render_pending  # late import: the task module imports this one

    waiting = DBTaskResult.objects.ready().filter(task_path=render_pending.module_path).exists()
    if not waiting:
        render_pending.enqueue()


def renders_done(study: Study) -> bool:
    """True when every instance of the study is rendered, or known not to be an image."""
    return not InstanceRender.objects.filter(
        instance__series__study=study, status__in=(Status.PENDING, Status.RENDERING)
    ).exists()


def renders_postponed(study: Study) -> bool:
    """True while a render of the study waits for another try after a fault of the machine (a full disk, storage
    away): its files could not be written (docs/security.md R6, R8)."""
    return InstanceRender.objects.filter(
        instance__series__study=study, status__in=(Status.PENDING, Status.RENDERING), attempts__gt=0
    ).exists()


def series_render_state(study: Study) -> dict[int, dict[str, int]]:
    """Per series of the study: counts of renders by status."""
    state: dict[int, dict[str, int]] = {}
    rows = (
        InstanceRender.objects.filter(instance__series__study=study)
        .values("instance__series_id", "status")
        .annotate(n=Count("id"))
    )
    for row in rows:
        state.setdefault(row["instance__series_id"], {})[row["status"]] = row["n"]
    return state


def series_done(series: Series) -> bool:
    return not InstanceRender.objects.filter(
        instance__series=series, status__in=(Status.PENDING, Status.RENDERING)
    ).exists()


def study_sizes(study: Study) -> tuple[int, int | None]:
    """(DICOM bytes, JPEG bytes) of a study; the JPEG size is None until every render is done."""
    agg = InstanceRender.objects.filter(instance__series__study=study).aggregate(
        jpeg=Sum("jpeg_size"), open=Count("id", filter=Q(status__in=(Status.PENDING, Status.RENDERING)))
    )
    return study.size, (None if agg["open"] else int(agg["jpeg"] or 0))
