"""Retrieve by C-MOVE: the PACS sends the images to radshare's own storage SCP, which stores them."""

from __future__ import annotations

from django.conf import settings
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove  # type: ignore[attr-defined]

from radshare.organisations.models import PacsNode
from radshare.pacs.base import (
    PacsError,
    ProgressCallback,
    RemoteInstance,
    RetrieveResult,
    stored_uids,
    wait_for_index,
)
from radshare.pacs.dimse.association import Association
from radshare.pacs.dimse.retrieve import Tally, outcome, plan, run_retrieve


def move(
    node: PacsNode,
    study_uid: str,
    remote: list[RemoteInstance] | None,
    missing: list[RemoteInstance] | None,
    *,
    already_here: int,
    on_progress: ProgressCallback | None,
    timeout: float,
) -> RetrieveResult:
    """C-MOVE to radshare's own AE title; radshare's storage SCP (any process) receives and stores the images.

    What has to be configured for this to work:

    * the PACS knows radshare's AE title (``RADSHARE_DICOM_AE_TITLE``) as a C-MOVE destination, with the address
      and port (``RADSHARE_DICOM_PORT``) of a running radshare storage SCP it can reach;
    * the PACS accepts radshare's AE title as a caller (C-FIND and C-MOVE) from radshare's address;
    * radshare's SCP admits the PACS's storage association: the PACS must call with this node's AE title from this
      node's host (a PACS that sends under another AE title needs a node for that title too, in the same
      organisation, or the images land elsewhere and this retrieve reports them as not arrived).
    """
    destination = settings.RADSHARE.dicom_ae_title
    expected = len(remote) if remote is not None else None
    tally = Tally(base=already_here)
    try:
        run_retrieve(
            lambda: Association(node, [(StudyRootQueryRetrieveInformationModelMove, None)], timeout=timeout),
            plan(remote, missing),
            study_uid,
            move_destination=destination,
            tally=tally,
            expected=expected,
            on_progress=on_progress,
            timeout=timeout,
        )
    except PacsError as exc:
        # Broken off part-way: count what arrived (a retry fetches only the rest).
        if missing is not None:
            wait_for_index(node.organisation_id, [m.sop_instance_uid for m in missing])
            have = len(stored_uids(node.organisation_id, [m.sop_instance_uid for m in missing]))
            exc.result = RetrieveResult(expected, have, already_here, len(missing) - have)
        raise
    if missing is not None:
        wait_for_index(node.organisation_id, [m.sop_instance_uid for m in missing])
    return outcome(
        node,
        missing,
        tally,
        expected=expected,
        already_here=already_here,
        # What the PACS sent and radshare's SCP acknowledged (the SCP commits before it acknowledges).
        received=tally.completed + tally.warning,
        moved=True,
    )
