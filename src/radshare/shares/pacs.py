"""Finding the studies a sender picked in the organisation's PACS nodes (deep links, PACS search, the API).

Each query is audited with who asked (docs/security.md A16); a node that does not answer is reported, not fatal.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from radshare.audit.actions import Action
from radshare.audit.services import Outcome, record
from radshare.organisations.models import Organisation, PacsNode
from radshare.pacs.base import is_uid
from radshare.pacs.client import PacsError, StudyQuery, find_studies
from radshare.shares.services import Actor, PacsSelection


@dataclass
class Found:
    selections: list[PacsSelection] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "PACS1: <what went wrong, in the reader's language>"


def searchable_nodes(organisation: Organisation, node_pk: int | None = None) -> list[PacsNode]:
    nodes = [n for n in PacsNode.objects.filter(organisation=organisation, is_active=True) if n.searchable]
    return [n for n in nodes if node_pk is None or n.pk == node_pk]


def audit_query(actor: Actor, organisation: Organisation, node: PacsNode, count: int, criteria: Iterable[str],
                failure: PacsError | None = None) -> None:  # fmt: skip
    """One ``pacs.query`` entry; a failed query keeps its code and its English reason (docs/security.md A16)."""
    record(
        Action.PACS_QUERY,
        outcome=Outcome.FAILURE if failure else Outcome.SUCCESS,
        request=actor.request,
        user=actor.user,
        api_key=actor.api_key,
        organisation=organisation,
        detail={
            "node": node.pk,
            "count": count,
            "criteria": sorted(criteria),
            **({"code": failure.code, "reason": failure.reason} if failure else {}),
        },
    )


def find_by_uid(
    organisation: Organisation, uids: Sequence[str], actor: Actor, pinned: dict[str, int] | None = None
) -> Found:
    """Look the study UIDs up in the PACS nodes (a UID pinned to a node is looked up there only)."""
    found = Found()
    nodes = searchable_nodes(organisation)
    if not nodes or not uids:
        return found
    remaining = [u for u in dict.fromkeys(uids) if is_uid(u)]  # one that is no UID is in no PACS either
    pinned = pinned or {}
    for node in nodes:
        wanted = [u for u in remaining if pinned.get(u, node.pk) == node.pk]
        if not wanted:
            continue
        try:
            studies = find_studies(node, StudyQuery(study_uids=tuple(wanted)))
        except PacsError as exc:
            audit_query(actor, organisation, node, 0, ["study_uids"], exc)
            found.problems.append(f"{node.ae_title}: {exc.message}")
            continue
        audit_query(actor, organisation, node, len(studies), ["study_uids"])
        for study in studies:
            if study.study_instance_uid in remaining:
                found.selections.append(PacsSelection(node, study))
                remaining.remove(study.study_instance_uid)
    return found
