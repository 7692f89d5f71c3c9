"""What C-MOVE and C-GET share: the requests that fetch exactly the missing instances, running them, and the result.

A retrieve is planned as the fewest requests (the study, whole series, or lists of images), each sent on its own
association; the sub-operation counts are added up, and afterwards the index, not the PACS, says what arrived.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from radshare.organisations.models import PacsNode
from radshare.pacs.base import (
    Failure,
    PacsError,
    ProgressCallback,
    RemoteInstance,
    RetrieveResult,
    partial_error,
    stored_uids,
)
from radshare.pacs.dimse.association import (
    CANCEL,
    PENDING,
    SUCCESS,
    WARNING,
    Association,
    read_responses,
    status_text,
)

UIDS_PER_REQUEST = 100  # SOP Instance UIDs in one IMAGE-level C-MOVE/C-GET identifier


@dataclass
class Request:
    level: str  # STUDY, SERIES or IMAGE
    series_uid: str = ""
    sop_uids: list[str] = field(default_factory=list)

    def identifier(self, study_uid: str) -> Dataset:
        ds = Dataset()
        ds.QueryRetrieveLevel = self.level
        ds.StudyInstanceUID = study_uid
        if self.level in ("SERIES", "IMAGE"):
            ds.SeriesInstanceUID = self.series_uid
        if self.level == "IMAGE":
            ds.SOPInstanceUID = self.sop_uids if len(self.sop_uids) > 1 else self.sop_uids[0]
        return ds


def plan(remote: list[RemoteInstance] | None, missing: list[RemoteInstance] | None) -> list[Request]:
    """The fewest requests that fetch exactly the missing instances: the study, whole series, or lists of images."""
    if remote is None or missing is None or len(missing) == len(remote):
        return [Request("STUDY")]
    per_series: dict[str, int] = {}
    for instance in remote:
        per_series[instance.series_uid] = per_series.get(instance.series_uid, 0) + 1
    wanted: dict[str, list[str]] = {}
    for instance in missing:
        wanted.setdefault(instance.series_uid, []).append(instance.sop_instance_uid)
    requests: list[Request] = []
    for series_uid, sop_uids in wanted.items():
        if len(sop_uids) == per_series[series_uid]:
            requests.append(Request("SERIES", series_uid))
        else:
            for start in range(0, len(sop_uids), UIDS_PER_REQUEST):
                requests.append(Request("IMAGE", series_uid, sop_uids[start : start + UIDS_PER_REQUEST]))
    return requests


def image_requests(instances: list[RemoteInstance]) -> list[Request]:
    per_series: dict[str, list[str]] = {}
    for instance in instances:
        per_series.setdefault(instance.series_uid, []).append(instance.sop_instance_uid)
    requests: list[Request] = []
    for series_uid, sop_uids in per_series.items():
        for start in range(0, len(sop_uids), UIDS_PER_REQUEST):
            requests.append(Request("IMAGE", series_uid, sop_uids[start : start + UIDS_PER_REQUEST]))
    return requests


@dataclass
class Tally:
    """Sub-operation counts across the requests of one retrieve."""

    completed: int = 0
    failed: int = 0
    warning: int = 0
    base: int = 0  # already_here, counted as done for progress
    refusal: int | None = None  # the failure status that ended the retrieve

    def done(self, status: Dataset) -> int:
        return sum(
            int(status.get(k) or 0)
            for k in (
                "NumberOfCompletedSuboperations",
                "NumberOfFailedSuboperations",
                "NumberOfWarningSuboperations",
            )
        )

    def add_final(self, status: Dataset) -> None:
        self.completed += int(status.get("NumberOfCompletedSuboperations") or 0)
        self.failed += int(status.get("NumberOfFailedSuboperations") or 0)
        self.warning += int(status.get("NumberOfWarningSuboperations") or 0)


def run_retrieve(
    association: Callable[[], Association],
    requests: list[Request],
    study_uid: str,
    *,
    move_destination: str | None,
    tally: Tally,
    expected: int | None,
    on_progress: ProgressCallback | None,
    timeout: float,
) -> None:
    """Send each C-MOVE (to ``move_destination``) or C-GET request, each on its own association (see ``query.c_find``),
    and add up the sub-operations.

    A request the PACS ends with a failure status stops the retrieve; the status is kept in ``tally.refusal``
    for the caller, who counts what arrived (a PACS may fail half-way, e.g. on an unreadable file).
    """
    for request in requests:
        identifier = request.identifier(study_uid)
        before = tally.base + tally.completed + tally.failed + tally.warning
        with association() as assoc:
            if move_destination is not None:
                responses = assoc.send_c_move(
                    identifier, move_destination, StudyRootQueryRetrieveInformationModelMove
                )
            else:
                responses = assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet)
            for status, status_ds, _ in read_responses(assoc, responses, timeout):
                if status in PENDING:
                    if on_progress is not None:
                        on_progress(before + tally.done(status_ds), expected)
                    continue
                tally.add_final(status_ds)
                if status == 0xA801:
                    raise PacsError(
                        f"the PACS does not know radshare's AE title {move_destination!r} as a C-MOVE destination",
                        code=Failure.MOVE_DESTINATION_UNKNOWN,
                        temporary=False,
                    )
                if status not in (SUCCESS, WARNING):
                    tally.refusal = status
                break
        if on_progress is not None:
            on_progress(tally.base + tally.completed + tally.failed + tally.warning, expected)
        if tally.refusal is not None:
            return


MOVE_SETUP = (
    "check that the PACS knows radshare's AE title with the address of radshare's storage SCP, and that the SCP "
    "admits the PACS (this node's AE title and host)"
)


def _refusal_error(status: int, *, moved: bool) -> PacsError:
    """Why nothing arrived, from the status that ended the retrieve."""
    if 0xA700 <= status <= 0xA7FF:
        return PacsError(
            "the PACS is out of resources for this retrieve", code=Failure.OUT_OF_RESOURCES, temporary=True
        )
    if status == CANCEL:
        return PacsError("the PACS cancelled the retrieve", code=Failure.CANCELLED, temporary=True)
    why = f"status 0x{status:04X}, {status_text(status)}"
    if moved:
        # Most often the PACS could not open its association to radshare's SCP (refused, down, unknown to it);
        # radshare's audit trail shows a rejected association if the SCP turned it away.
        return PacsError(
            f"the PACS could not send the images to radshare ({why}): {MOVE_SETUP}",
            code=Failure.MOVE_FAILED,
            temporary=True,
        )
    return PacsError(
        f"the PACS could not run the retrieve ({why})", code=Failure.RETRIEVE_FAILED, temporary=False
    )


def outcome(
    node: PacsNode,
    missing: list[RemoteInstance] | None,
    tally: Tally,
    *,
    expected: int | None,
    already_here: int,
    received: int,
    duplicates: int = 0,
    refused: int = 0,
    temporary_refusals: int = 0,
    moved: bool = False,
) -> RetrieveResult:
    """The result, or PacsError when anything asked for is not here now (counted in the index, not believed).

    ``received``: what the transport counted as stored; used only when the PACS could not list the study.
    """
    if missing is not None:
        asked = len(missing)
        have = len(stored_uids(node.organisation_id, [m.sop_instance_uid for m in missing]))
        failed = asked - have
        received = have - duplicates  # stored by this retrieve (a duplicate arrived from elsewhere meanwhile)
    else:  # the PACS could not list the study: trust its counts
        have = received + duplicates
        failed = max(tally.failed, refused)
        asked = failed + have
    result = RetrieveResult(expected, received, already_here + duplicates, failed)
    if tally.refusal is not None and have == 0:
        raise _refusal_error(tally.refusal, moved=moved)
    if failed or tally.refusal is not None:
        hint = ""
        if tally.refusal is not None:
            hint = f"the PACS ended with status 0x{tally.refusal:04X}, {status_text(tally.refusal)}"
        elif moved and tally.failed == 0:
            # The PACS reports every image sent, yet some are not in this organisation: filed elsewhere.
            hint = "the PACS reports them sent, but they were not stored in this organisation: " + MOVE_SETUP
        error = partial_error(max(failed, 1), asked, result, hint)
        # Our own refusals for bad data will not heal by retrying; everything else may.
        error.temporary = (
            refused == 0 or temporary_refusals > 0 or tally.failed > 0 or tally.refusal is not None
        )
        raise error
    return result
