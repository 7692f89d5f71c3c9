"""Query and retrieve studies from an organisation's PACS (docs/requirements.md S1.2, "integration level 3").

A ``PacsNode`` with a host and port is spoken to by DIMSE (C-ECHO, C-FIND; retrieve by C-MOVE to radshare's own
AE title, or C-GET, as ``node.retrieve`` says); a node with only a DICOMweb URL by QIDO-RS and WADO-RS.

Every retrieved instance is stored in ``node.organisation`` (docs/security.md A10: the node decides where data goes,
never the caller). Instances the organisation holds already (same SOP Instance UID) are not fetched again.

Failures raise ``PacsError`` with a short English ``reason`` (no patient data: no names, ids or UIDs) and
``temporary`` (retrying later may help). Invalid queries raise ``ValueError``. Nothing here writes the audit
trail: the caller knows who asked and records the query/retrieve (docs/security.md A16), and must call these
functions outside a database transaction (a C-MOVE's images are committed by the storage SCP's own connections).
"""

from __future__ import annotations

import logging
import re

from radshare.organisations.models import PacsNode
from radshare.pacs import dicomweb, dimse
from radshare.pacs.base import (
    Failure,
    PacsError,
    PacsStudy,
    ProgressCallback,
    RemoteInstance,
    RetrieveResult,
    StudyQuery,
    matching_keys,
    newest_first,
    stored_uids,
    study_uids,
)
from radshare.studies.signals import announce_arrivals

__all__ = [
    "Failure",
    "PacsError",
    "PacsStudy",
    "RetrieveResult",
    "StudyQuery",
    "echo",
    "find_studies",
    "retrieve_study",
]

logger = logging.getLogger(__name__)

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def _usable(node: PacsNode) -> None:
    if not node.is_active:
        raise PacsError("this PACS node is switched off", code=Failure.NODE_OFF, temporary=False)
    if not node.dimse_queryable and not node.dicomweb_url:
        raise PacsError(
            "this PACS node has neither a DICOM address (host and port) nor a DICOMweb URL",
            code=Failure.NODE_UNADDRESSED,
            temporary=False,
        )


def echo(node: PacsNode) -> str:
    """Check the way ``find_studies`` and ``retrieve_study`` will use: C-ECHO for a DIMSE node ("C-ECHO ok
    (12 ms)"), else a QIDO-RS query that matches nothing ("QIDO-RS ok (34 ms)"). Raises ``PacsError``."""
    _usable(node)
    if node.dimse_queryable:
        return dimse.echo(node)
    return dicomweb.echo(node)


def find_studies(node: PacsNode, query: StudyQuery, limit: int = 200) -> list[PacsStudy]:
    """Studies on the PACS matching every criterion of ``query``, newest first, at most ``limit`` (exactly
    ``limit`` means there may be more: narrow the search).

    DIMSE: C-FIND, Study Root, STUDY level, with ModalitiesInStudy; a PACS that refuses that key is asked without
    it, and one that ignores it or does not return it is filtered here (asking its series where needed).
    DICOMweb: QIDO-RS, the same keys. Raises ``ValueError`` for a query without criteria or with invalid values.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    keys = matching_keys(query)
    uids = study_uids(query)
    _usable(node)
    if node.dimse_queryable:
        studies = dimse.find_studies(node, keys, uids, limit)
    else:
        studies = dicomweb.find_studies(node, keys, uids, limit)
    logger.info("PACS node %s: query answered with %d studies", node.pk, len(studies))
    return newest_first(studies)[:limit]


def _list_instances(node: PacsNode, uid: str, timeout: float) -> list[RemoteInstance] | None:
    """The study's instances on the PACS, asked the way the node is spoken to; None: it cannot list them."""
    if node.dimse_queryable:
        return dimse.list_instances(node, uid, timeout, with_classes=node.retrieve == "get")
    return dicomweb.list_instances(node, uid, timeout)


def _compare(
    node: PacsNode, remote: list[RemoteInstance] | None, on_progress: ProgressCallback | None
) -> tuple[list[RemoteInstance] | None, int]:
    """(the instances to fetch, how many are here already); None: the PACS could not list them (fetch all)."""
    if remote is None:
        return None, 0
    if not remote:
        raise PacsError("the PACS has no images of this study", code=Failure.NO_IMAGES, temporary=False)
    here = stored_uids(node.organisation_id, [r.sop_instance_uid for r in remote])
    missing = [r for r in remote if r.sop_instance_uid not in here]
    if on_progress is not None:
        on_progress(len(here), len(remote))
    return missing, len(here)


def _fetch(
    node: PacsNode,
    uid: str,
    remote: list[RemoteInstance] | None,
    missing: list[RemoteInstance] | None,
    *,
    already_here: int,
    on_progress: ProgressCallback | None,
    timeout: float,
) -> RetrieveResult:
    """Fetch what is not here yet by the node's transport (C-MOVE, C-GET or WADO-RS); nothing when all is here."""
    if remote is not None and missing == []:
        return RetrieveResult(len(remote), 0, already_here, 0)
    if node.dimse_queryable and node.retrieve != "get":
        # The storage SCP that receives the C-MOVE's images asks for their renders itself.
        return dimse.move(
            node, uid, remote, missing, already_here=already_here, on_progress=on_progress, timeout=timeout
        )
    transport = dimse.get if node.dimse_queryable else dicomweb.retrieve
    try:
        result = transport(
            node, uid, remote, missing, already_here=already_here, on_progress=on_progress, timeout=timeout
        )
    except PacsError as exc:
        if exc.result is not None and exc.result.received:
            announce_arrivals()  # what did arrive is stored: render it (a retry fetches only the rest)
        raise
    if result.received:
        announce_arrivals()
    return result


def retrieve_study(
    node: PacsNode,
    study_uid: str,
    *,
    on_progress: ProgressCallback | None = None,
    timeout: float = 300,
) -> RetrieveResult:
    """Fetch one study from the PACS into ``node.organisation``; return the counts.

    First the PACS is asked which instances the study has (C-FIND at IMAGE level, or SERIES then IMAGE level for a
    strictly hierarchical PACS; or QIDO-RS). Those the organisation holds already are not fetched (if the PACS
    cannot list them, the whole study is fetched and the copies already here are counted as ``already_here``).
    Then:

    * ``node.retrieve == "move"``: C-MOVE to radshare's own AE title. The images arrive through radshare's storage
      SCP (``radshare scp``/``serve``, another process or thread), which stores them. The PACS must know
      radshare's AE title as a move destination with the SCP's address and port, and must call radshare's SCP with
      this node's AE title from this node's host (so that the SCP files them into this organisation); see
      ``dimse.move``. Afterwards the index is checked: images the PACS reports as sent but that did not arrive in
      this organisation count as failed.
    * ``node.retrieve == "get"``: C-GET; each image arrives on the same association and is stored here
      (``store_instance(..., source="pacs")``), in the transfer syntax the PACS holds it in where offered.
    * a node with only a DICOMweb URL: WADO-RS, original transfer syntax (``*``), each part stored as received.

    ``on_progress(done, expected)`` is called as images arrive: ``done`` counts the study's instances dealt with
    (already here, received, failed), ``expected`` is the study's number of instances (None if unknown).
    ``timeout`` bounds each wait for the PACS (between two answers), not the whole transfer.

    Raises ``PacsError``: refused association, PACS down or silent for ``timeout`` seconds, or a partial result
    ("3 of 40 images could not be retrieved", ``.result`` holding the counts): a partial retrieve never passes.
    """
    uid = study_uid.strip()
    if len(uid) > 64 or not _UID.match(uid):
        raise ValueError("the study instance UID is not a valid UID")
    _usable(node)
    remote = _list_instances(node, uid, timeout)
    missing, already_here = _compare(node, remote, on_progress)
    result = _fetch(
        node, uid, remote, missing, already_here=already_here, on_progress=on_progress, timeout=timeout
    )
    logger.info(
        "PACS node %s: retrieve done, %d received, %d already here (of %s)",
        node.pk,
        result.received,
        result.already_here,
        "?" if result.expected is None else result.expected,
    )
    return result
