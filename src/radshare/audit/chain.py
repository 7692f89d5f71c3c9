"""The hash chain over the audit trail, its signed checkpoints and its pruning (docs/security.md A17).

Chains. Each organisation's entries form one chain (key ``org:<id>``); the entries of no organisation (a refused
DICOM caller, an unknown share code, a key rotation) form the installation's own chain (``installation``). An
entry's place in its chain is ``seq`` (1, 2, 3, ...; unique per chain, so a chain cannot fork), ``prev_hash`` is
the hash of the entry before it and ``entry_hash`` is the SHA-256 of its canonical form (``canonical``), which
holds every stored field that matters, ``seq`` and ``prev_hash`` included.

Writers. ``append`` (called by ``services.record`` only) locks the chain's ``AuditChainHead`` row, so writers of
one chain take their turn, on PostgreSQL by the row lock and on SQLite by the database's write lock (every
transaction takes it at BEGIN, docs/security.md R2). It runs inside the caller's transaction: the entry commits
or rolls back with what it records.

Checkpoints. Once a day (``tasks.PERIODIC``) each chain's head is signed with the audit key (HMAC-SHA256, key id
stored; docs/security.md A28). Anyone with write access to the database can recompute plain hashes, but not a
signature: rewriting the history before the newest checkpoint shows.

Pruning. Entries older than ``RADSHARE_AUDIT_RETENTION_YEARS`` go, but only up to and including the newest
checkpoint that has nothing younger behind it; the first entry left then links to that checkpoint's hash, so the
chain stays verifiable from there. ``_delete_through`` is the only deletion of audit entries.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from radshare.audit.models import GENESIS, AuditChainHead, AuditCheckpoint, AuditEvent
from radshare.core import keys
from radshare.core.keys import Purpose

logger = logging.getLogger(__name__)

INSTALLATION = "installation"
ORGANISATION = "org:"

# What the hash covers: every stored field that says what happened, and the entry's place in its chain.
HASHED = (
    "event_id",
    "timestamp",
    "action",
    "outcome",
    "actor_type",
    "actor_id",
    "actor_label",
    "on_behalf_of_id",
    "organisation_id",
    "patient_ref",
    "study_uids",
    "client_address",
    "user_agent",
    "detail",
    "chain",
    "seq",
    "prev_hash",
)


def chain_key(organisation_id: int | None) -> str:
    """The chain of an organisation's entries; that of the installation for entries of no organisation."""
    return INSTALLATION if organisation_id is None else f"{ORGANISATION}{organisation_id}"


def organisation_id(chain: str) -> int | None:
    """The organisation whose chain this is (None: the installation's)."""
    if chain == INSTALLATION:
        return None
    return int(chain.removeprefix(ORGANISATION))


def _json(value: object) -> bytes:
    # Sorted keys, no spaces, ASCII: one byte string for one value, whatever dict order or database gave it.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _plain(value: object) -> object:
    """A whole-numbered float as the integer it reads as: PostgreSQL's jsonb gives ``1e+20`` back as
    ``100000000000000000000`` and ``2.0`` as ``2.0``, SQLite gives both back as floats."""
    if isinstance(value, float) and value.is_integer():
        return int(Decimal(repr(value)))
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def canonical(event: AuditEvent) -> bytes:
    """The bytes an entry's hash is taken over (the migration that linked the first entries used it too: a
    change here makes every stored hash wrong)."""
    values = {name: _plain(getattr(event, name)) for name in HASHED}
    values["event_id"] = str(event.event_id)
    values["timestamp"] = event.timestamp.astimezone(dt.UTC).isoformat(timespec="microseconds")
    return _json(values)


def entry_hash(event: AuditEvent) -> str:
    return hashlib.sha256(canonical(event)).hexdigest()


# --- writing ------------------------------------------------------------------------------------------------


def _locked_head(chain: str) -> AuditChainHead:
    """The chain's head, locked until the transaction ends (made at the chain's first entry)."""
    head = AuditChainHead.objects.select_for_update().filter(chain=chain).first()
    if head is None:
        # Of two first writers, the second waits for the first's row at the insert and then locks that one.
        AuditChainHead.objects.bulk_create(
            [AuditChainHead(chain=chain, seq=0, entry_hash=GENESIS)], ignore_conflicts=True
        )
        head = AuditChainHead.objects.select_for_update().get(chain=chain)
    return head


def append(event: AuditEvent) -> AuditEvent:
    """Link ``event`` into its organisation's chain and insert it (``services.record`` is the one caller)."""
    event.chain = chain_key(event.organisation_id)
    # The hash is taken over the values as they read back from the database (JSON, a list of strings).
    event.detail = json.loads(_json(event.detail))
    event.study_uids = [str(uid) for uid in event.study_uids]
    with transaction.atomic():
        head = _locked_head(event.chain)
        event.seq, event.prev_hash = head.seq + 1, head.entry_hash
        event.timestamp = timezone.now()  # under the lock: times follow the order of the chain
        event.entry_hash = entry_hash(event)
        event.save()
        AuditChainHead.objects.filter(chain=event.chain).update(seq=event.seq, entry_hash=event.entry_hash)
    return event


# --- checkpoints ----------------------------------------------------------------------------------------------


def _signature(checkpoint: AuditCheckpoint, key: bytes) -> str:
    message = _json(
        {
            "chain": checkpoint.chain,
            "seq": checkpoint.seq,
            "entry_hash": checkpoint.entry_hash,
            "created_at": checkpoint.created_at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        }
    )
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _sign(checkpoint: AuditCheckpoint) -> None:
    key = keys.current(Purpose.AUDIT)
    checkpoint.key_id, checkpoint.signature = keys.key_id(key), _signature(checkpoint, key)


def signature_problem(checkpoint: AuditCheckpoint) -> str:
    """Why the checkpoint's signature does not verify with the key it names; "" when it does."""
    for key in keys.candidates(Purpose.AUDIT):
        if keys.key_id(key) == checkpoint.key_id:
            if hmac.compare_digest(_signature(checkpoint, key), checkpoint.signature):
                return ""
            return f"{_checkpoint(checkpoint)} was changed: its signature does not verify"
    return (
        f"{_checkpoint(checkpoint)} is signed with key {checkpoint.key_id}, which is neither RADSHARE_SECRET_KEY "
        "nor one of RADSHARE_OLD_SECRET_KEYS"
    )


@dataclass(frozen=True)
class Signing:
    made: list[AuditCheckpoint]
    refused: dict[str, str]  # chain -> why it was not signed


def write_checkpoints(now: dt.datetime | None = None) -> Signing:
    """Sign the head of every chain that grew since its last checkpoint, after checking what was added since.
    A chain that does not verify gets no checkpoint: a signature must never vouch for a changed entry."""
    done = Signing([], {})
    for chain in AuditChainHead.objects.filter(seq__gt=0).order_by("chain").values_list("chain", flat=True):
        newest = AuditCheckpoint.objects.filter(chain=chain).order_by("-seq").first()
        report = verify(chain, since=newest)
        if not report.ok:
            logger.error("audit chain %s does not verify, so it is not signed: %s", chain, report.problem)
            done.refused[chain] = report.problem
            continue
        if newest is not None and newest.seq >= report.last_seq:
            continue  # nothing new
        checkpoint = AuditCheckpoint(
            chain=chain,
            seq=report.last_seq,
            entry_hash=report.last_hash,
            created_at=now or timezone.now(),
        )
        _sign(checkpoint)
        try:
            with transaction.atomic():
                checkpoint.save()
        except IntegrityError:
            continue  # another run signed this head a moment ago
        done.made.append(checkpoint)
    return done


def resign_checkpoints() -> int:
    """Sign every checkpoint made with an old key again with the current one (``radshare keys rotate``); returns
    how many. A checkpoint whose signature does not verify is left as it is (and logged): signing it again would
    vouch for whatever changed it."""
    current = keys.key_id(keys.current(Purpose.AUDIT))
    moved = 0
    with transaction.atomic():
        for checkpoint in AuditCheckpoint.objects.select_for_update().exclude(key_id=current).order_by("pk"):
            if problem := signature_problem(checkpoint):
                logger.error("audit chain %s: not signed again: %s", checkpoint.chain, problem)
                continue
            _sign(checkpoint)
            checkpoint.save(update_fields=["key_id", "signature"])
            moved += 1
    return moved


def checkpoints_on_old_keys() -> int:
    """How many checkpoints are not signed with the current key (``radshare keys status``)."""
    return AuditCheckpoint.objects.exclude(key_id=keys.key_id(keys.current(Purpose.AUDIT))).count()


# --- verifying ------------------------------------------------------------------------------------------------


class _Link(Protocol):
    """A chain's head or a checkpoint: a place in the chain and the hash of the entry there."""

    seq: int
    entry_hash: str


@dataclass(frozen=True)
class ChainReport:
    chain: str
    checked: int = 0  # entries whose hash and link were checked
    last_seq: int = 0
    last_hash: str = GENESIS
    start: AuditCheckpoint | None = None  # the checkpoint the check started from; None: from the first entry
    signatures: int = 0  # checkpoint signatures checked
    problem: str = ""  # the first thing found wrong, naming the entry

    @property
    def ok(self) -> bool:
        return not self.problem


def _when(moment: dt.datetime) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M:%S}"


def _entry(event: AuditEvent) -> str:
    return f"entry #{event.seq} ({_when(event.timestamp)}, {event.action})"


def _checkpoint(checkpoint: AuditCheckpoint) -> str:
    return f"the checkpoint of {_when(checkpoint.created_at)} (#{checkpoint.seq})"


def _removed(first: int, last: int, after: AuditEvent | None) -> str:
    which = f"entry #{first} was" if first == last else f"entries #{first} to #{last} were"
    return f"{which} removed" + (f" (after {_entry(after)})" if after is not None else "")


class _Walk:
    """One pass over a stretch of a chain, in ``seq`` order, stopping at the first problem."""

    def __init__(self, checkpoints: dict[int, AuditCheckpoint], start: AuditCheckpoint | None) -> None:
        self.checkpoints = checkpoints
        self.start = start
        self.expected = start.seq + 1 if start else 1
        self.prev_hash = start.entry_hash if start else GENESIS
        self.prev: AuditEvent | None = None
        self.checked = 0

    def step(self, event: AuditEvent) -> str:
        if event.seq != self.expected:
            return _removed(self.expected, event.seq - 1, self.prev)
        if entry_hash(event) != event.entry_hash:
            return f"{_entry(event)} was changed"
        if event.prev_hash != self.prev_hash:
            if self.prev is not None:
                return (
                    f"{_entry(self.prev)} or {_entry(event)} was changed: #{event.seq} does not link to "
                    f"#{self.prev.seq}"
                )
            start = _checkpoint(self.start) if self.start else "the start of its chain"
            return f"{_entry(event)} was changed: it does not link to {start}"
        signed = self.checkpoints.get(event.seq)
        if signed is not None and signed.entry_hash != event.entry_hash:
            return f"{_entry(event)} was changed: it is not the entry signed in {_checkpoint(signed)}"
        self.prev, self.prev_hash, self.expected = event, event.entry_hash, event.seq + 1
        self.checked += 1
        return ""

    def end(self, link: _Link) -> str:
        """The stretch must end where ``link`` (the chain's head, or a checkpoint) says it does."""
        if self.expected <= link.seq:
            return _removed(self.expected, link.seq, self.prev)
        if self.prev_hash != link.entry_hash:
            return f"{_entry(self.prev)} was changed" if self.prev else "the chain's head was changed"
        return ""


def _entries(chain: str, after: int, through: int) -> Iterator[AuditEvent]:
    return (
        AuditEvent.objects.filter(chain=chain, seq__gt=after, seq__lte=through)
        .order_by("seq")
        .iterator(chunk_size=2000)
    )


def _start(chain: str, checkpoints: dict[int, AuditCheckpoint], through: int) -> AuditCheckpoint | None:
    """Where a chain's check starts: at its first entry's seq 1, or at the checkpoint it was pruned to."""
    first = AuditEvent.objects.filter(chain=chain, seq__lte=through).order_by("seq").values("seq").first()
    first_seq = first["seq"] if first else through + 1
    below = [seq for seq in checkpoints if seq < first_seq]
    return checkpoints[max(below)] if first_seq > 1 and below else None


def _walk(
    chain: str, checkpoints: dict[int, AuditCheckpoint], start: AuditCheckpoint | None, end: _Link
) -> ChainReport:
    walk = _Walk(checkpoints, start)
    problem = ""
    for event in _entries(chain, start.seq if start else 0, end.seq):
        if problem := walk.step(event):
            break
    problem = problem or walk.end(end)
    return ChainReport(
        chain, walk.checked, walk.expected - 1, walk.prev_hash, start, len(checkpoints), problem
    )


def verify(chain: str, since: AuditCheckpoint | None = None) -> ChainReport:
    """Recompute ``chain`` from its start (its first entry, or the checkpoint it was pruned to), or ``since`` a
    checkpoint, up to its head: the first entry changed, removed or inserted behind radshare's back is named."""
    head = AuditChainHead.objects.filter(chain=chain).first()
    if since is not None:
        checkpoints = {since.seq: since}
    else:
        checkpoints = {c.seq: c for c in AuditCheckpoint.objects.filter(chain=chain).order_by("seq")}
    for checkpoint in checkpoints.values():
        if problem := signature_problem(checkpoint):
            return ChainReport(chain, problem=problem)
    if head is None:
        stray = AuditEvent.objects.filter(chain=chain).order_by("seq").first()
        if stray is None:
            return ChainReport(chain)
        problem = f"{_entry(stray)} was inserted behind radshare's back (or its chain's head was removed)"
        return ChainReport(chain, problem=problem)
    beyond = [seq for seq in checkpoints if seq > head.seq]
    if beyond:
        return ChainReport(
            chain, problem=_removed(head.seq + 1, max(beyond), None) + ", and the head moved back"
        )
    start = since or _start(chain, checkpoints, head.seq)
    report = _walk(chain, checkpoints, start, head)
    if report.ok and (stray := _inserted(chain, head.seq)) is not None:
        problem = f"{_entry(stray)} was inserted behind radshare's back (radshare wrote up to #{head.seq})"
        return ChainReport(chain, report.checked, problem=problem)
    return report


def _inserted(chain: str, seq: int) -> AuditEvent | None:
    """An entry past the head that no writer put there. Entries are read before the head again: a writer's
    entry and its head commit together, so one that is seen is also below the head read after it."""
    stray = list(AuditEvent.objects.filter(chain=chain, seq__gt=seq).order_by("seq")[:1000])
    if not stray:
        return None
    head = AuditChainHead.objects.filter(chain=chain).values_list("seq", flat=True).first() or 0
    return next((event for event in stray if event.seq > head), None)


def chains() -> list[str]:
    """Every chain that has a head, an entry or a checkpoint."""
    found: set[str] = set(AuditChainHead.objects.values_list("chain", flat=True))
    found.update(AuditEvent.objects.order_by().values_list("chain", flat=True).distinct())
    found.update(AuditCheckpoint.objects.order_by().values_list("chain", flat=True).distinct())
    return sorted(found)


def verify_all(only: Iterable[str] | None = None) -> list[ChainReport]:
    return [verify(chain) for chain in (chains() if only is None else only)]


# --- pruning --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pruned:
    chain: str
    deleted: int
    through_seq: int  # the checkpoint's seq: the chain now starts after it


def retention_cutoff(now: dt.datetime | None = None) -> dt.datetime:
    """Entries older than this are past ``RADSHARE_AUDIT_RETENTION_YEARS``."""
    now = now or timezone.now()
    year = now.year - settings.RADSHARE.audit_retention_years
    try:
        return now.replace(year=year)
    except ValueError:  # 29 February
        return now.replace(year=year, day=28)


def chains_older_than(cutoff: dt.datetime) -> list[str]:
    found = AuditEvent.objects.filter(timestamp__lt=cutoff).order_by().values_list("chain", flat=True)
    return sorted(set(found.distinct()))


def prune_chain(chain: str, cutoff: dt.datetime) -> Pruned | None:
    """Delete ``chain``'s entries up to its newest checkpoint with only entries older than ``cutoff`` behind it,
    and the checkpoints before that one; None when there is nothing to delete. Runs in the caller's transaction
    (``services.prune``, which records it). The stretch that goes is verified first: pruning must not remove the
    evidence that an entry was changed."""
    head = _locked_head(chain)  # this chain's writers, and another pruner, wait
    kept = AuditEvent.objects.filter(chain=chain, timestamp__gte=cutoff).aggregate(first=models.Min("seq"))
    anchors = AuditCheckpoint.objects.filter(chain=chain, seq__lte=head.seq)
    if kept["first"] is not None:
        anchors = anchors.filter(seq__lt=kept["first"])
    anchor = anchors.order_by("-seq").first()
    if anchor is None:
        return None
    checkpoints = {c.seq: c for c in AuditCheckpoint.objects.filter(chain=chain, seq__lte=anchor.seq)}
    problems = (signature_problem(c) for c in checkpoints.values())
    problem = (
        next((p for p in problems if p), "")
        or _walk(chain, checkpoints, _start(chain, checkpoints, anchor.seq), anchor).problem
    )
    if problem:
        logger.error("audit chain %s does not verify, so nothing is pruned: %s", chain, problem)
        return None
    deleted = _delete_through(chain, anchor.seq)
    AuditCheckpoint.objects.filter(chain=chain, seq__lt=anchor.seq).delete()
    return Pruned(chain, deleted, anchor.seq) if deleted else None


def _delete_through(chain: str, seq: int) -> int:
    """The only deletion of audit entries (docs/security.md A17): the ORM's own, past ``AuditQuerySet``'s
    refusal."""
    deleted, _ = models.QuerySet.delete(AuditEvent.objects.filter(chain=chain, seq__lte=seq))
    return deleted
