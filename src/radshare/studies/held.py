"""Images the journal's indexer acknowledged but could not file: their study was filed under another patient a
moment before (docs/operations.md "Journal mode", "Held images"). They wait in ``<DATA_DIR>/journal/held/`` until
the admin has decided the correction, then ``radshare held file`` files them, or ``radshare held delete`` removes
them. This module owns their names: the indexer writes them (``keep``), the command reads them.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from django.conf import settings

from radshare.audit.actions import Action
from radshare.audit.services import ActorType, record
from radshare.core.files import fsync_folder, write_all
from radshare.organisations.models import Organisation, PacsNode
from radshare.studies.errors import IngestError
from radshare.studies.header import Header, read_header
from radshare.studies.models import StudyConflict
from radshare.studies.services import PatientConflictError, StoreOutcome, store_instance

logger = logging.getLogger(__name__)

# <journal id>-<record position, hex>.o<organisation pk>[.n<PACS node pk>].dcm: the record names the file, so the
# same record held again (a crash before the cursor moved) overwrites its own file.
NAME = re.compile(
    r"^(?P<journal>[0-9a-f]+)-(?P<position>[0-9a-f]+)\.o(?P<organisation>\d+)(?:\.n(?P<node>\d+))?\.dcm$"
)


def folder() -> Path:
    return Path(settings.RADSHARE.data_dir) / "journal" / "held"


def keep(
    held: Path,
    journal: str,
    position: int,
    organisation_pk: int,
    node_pk: int | None,
    payload: bytes | memoryview,
) -> str:
    """Write ``payload`` durably to ``held`` (readable by radshare's user only); returns the file's name. Durable
    with its name: once the indexer moves past its record, the journal that held it too may be deleted."""
    if not held.is_dir():
        held.mkdir(mode=0o700, exist_ok=True)
        fsync_folder(held.parent)
    name = f"{journal}-{position:x}.o{organisation_pk}" + (f".n{node_pk}" if node_pk else "") + ".dcm"
    fd = os.open(held / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        write_all(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_folder(held)
    return name


@dataclass(frozen=True)
class Held:
    path: Path
    organisation_pk: int | None  # None: a name this module cannot read (not made by ``keep``)
    node_pk: int | None
    size: int
    held_at: dt.datetime


def listed(held: Path | None = None) -> list[Held]:
    """The held images, oldest first."""
    held = held or folder()
    if not held.is_dir():
        return []
    found = []
    for path in held.glob("*.dcm"):
        match = NAME.match(path.name)
        stat = path.stat()
        found.append(
            Held(
                path,
                int(match["organisation"]) if match else None,
                int(match["node"]) if match and match["node"] else None,
                stat.st_size,
                dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC),
            )
        )
    return sorted(found, key=lambda h: (h.held_at, h.path.name))


class Outcome(StrEnum):
    FILED = "filed"
    DUPLICATE = "already filed"
    UNDECIDED = "left: the correction of its study is not decided yet"
    DISMISSED = "left: the correction of its study was dismissed; delete it (`radshare held delete`)"
    UNREADABLE = "left: cannot be filed (see the log)"


def _header(data: bytes) -> Header | None:
    try:
        return read_header(data)
    except IngestError:
        return None


def _read(item: Held) -> tuple[bytes, Header | None]:
    try:
        data = item.path.read_bytes()
    except OSError:
        return b"", None
    return data, _header(data)


def study_uid(item: Held) -> str:
    """The Study Instance UID in the file's header, or "" for a file that cannot be read."""
    _, header = _read(item)
    return header.study_uid if header else ""


def file_one(item: Held) -> tuple[Outcome, str]:
    """File a held image as the SCP would have (``store_instance``) once the admin accepted the correction that
    holds it. While it is open, or once dismissed, filing it would only count it on a conflict again. Filed or
    already there: the file is deleted. Returns the outcome and the file's Study Instance UID ("" if unreadable)."""
    organisation = Organisation.objects.filter(pk=item.organisation_pk or 0).first()
    data, header = _read(item)
    if organisation is None or header is None:
        logger.error("held image %s: no organisation of its own, or not readable", item.path.name)
        return Outcome.UNREADABLE, header.study_uid if header else ""
    outcome = _file(item, organisation, data, header)
    return outcome, header.study_uid


def _file(item: Held, organisation: Organisation, data: bytes, header: Header) -> Outcome:
    decision = (
        StudyConflict.objects.filter(
            organisation=organisation,
            study__study_instance_uid=header.study_uid,
            new_issuer_of_patient_id=header.issuer,
            new_patient_id=header.patient_id,
        )
        .order_by("-pk")
        .values_list("state", flat=True)
        .first()
    )
    if decision == StudyConflict.State.OPEN:
        return Outcome.UNDECIDED
    if decision == StudyConflict.State.DISMISSED:
        return Outcome.DISMISSED
    node = (
        PacsNode.objects.filter(pk=item.node_pk, organisation=organisation).first() if item.node_pk else None
    )
    try:
        result = store_instance(organisation, data, source="scp", node=node, header=header)
    except PatientConflictError:  # filed under yet another patient since: a new conflict, for the admin
        return Outcome.UNDECIDED
    except IngestError as exc:
        logger.error("held image %s cannot be filed (0x%04X): %s", item.path.name, exc.status, exc.reason)
        return Outcome.UNREADABLE
    item.path.unlink()
    logger.info("held image %s filed (%s)", item.path.name, result.outcome)
    return Outcome.FILED if result.outcome == StoreOutcome.STORED else Outcome.DUPLICATE


def _audit(action: Action, done: list[tuple[Held, str]], command: str) -> None:
    """One entry per organisation for what ``command`` did: how many images, their file names and studies (no
    patient data). ``done``: each held image with its Study Instance UID, read before the file went."""
    by_organisation: dict[int | None, list[tuple[Held, str]]] = {}
    for item, uid in done:
        by_organisation.setdefault(item.organisation_pk, []).append((item, uid))
    known = set(
        Organisation.objects.filter(pk__in=[pk for pk in by_organisation if pk]).values_list("pk", flat=True)
    )
    for organisation_pk, pairs in by_organisation.items():
        record(
            action,
            actor_type=ActorType.OPERATOR,
            actor_label=command,
            organisation=organisation_pk if organisation_pk in known else None,
            study_uids=sorted({uid for _, uid in pairs if uid}),
            detail={"images": len(pairs), "files": sorted(item.path.name for item, _ in pairs)},
        )


def file_all(items: list[Held]) -> dict[Outcome, int]:
    """``file_one`` for each; what was filed (or found filed already) is recorded in the audit trail."""
    outcomes = dict.fromkeys(Outcome, 0)
    filed = []
    for item in items:
        outcome, uid = file_one(item)
        outcomes[outcome] += 1
        if outcome in (Outcome.FILED, Outcome.DUPLICATE):
            filed.append((item, uid))
    if filed:
        _audit(Action.HELD_FILE, filed, "radshare held file")
    return outcomes


def delete(items: list[Held]) -> None:
    """Delete held images (a dismissed correction's): the one door that removes them, recorded in the audit trail."""
    done = [(item, study_uid(item)) for item in items]
    for item, _ in done:
        item.path.unlink(missing_ok=True)
    if done:
        _audit(Action.HELD_DELETE, done, "radshare held delete")
