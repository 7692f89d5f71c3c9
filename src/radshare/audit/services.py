"""The one door into the audit trail: ``record(...)``; and its one way out, ``prune()``.

``record`` fails closed (docs/security.md A18): if the entry cannot be written, the exception propagates and the
caller's data request fails with it. Call it inside the transaction of what it records (or before that happens):
the entry is linked into its chain (``audit.chain``) in that transaction, and commits or rolls back with it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction

from radshare.audit import chain
from radshare.audit.actions import Action
from radshare.audit.models import AuditEvent
from radshare.core.net import client_address

if TYPE_CHECKING:
    from django.http import HttpRequest

    from radshare.organisations.models import ApiKey, Organisation, PacsNode, Sender
    from radshare.studies.models import Patient

Outcome = AuditEvent.Outcome
ActorType = AuditEvent.ActorType


@dataclass(frozen=True)
class _Who:
    pk: int
    label: str
    actor_type: str
    organisation_id: int | None


def _who(user: Sender | None, api_key: ApiKey | None, node: PacsNode | None) -> _Who | None:
    """The acting sender, API key or DICOM node, in that order."""
    if user is not None:
        kind = ActorType.OPERATOR if user.is_superuser else ActorType.SENDER
        return _Who(user.pk, user.get_username(), kind, user.organisation_id)
    if api_key is not None:
        return _Who(api_key.pk, f"API key {api_key.prefix}", ActorType.API_KEY, api_key.organisation_id)
    if node is not None:
        return _Who(node.pk, node.ae_title, ActorType.DICOM_NODE, node.organisation_id)
    return None


def record(
    action: Action,
    *,
    outcome: str = Outcome.SUCCESS,
    request: HttpRequest | None = None,
    user: Sender | None = None,
    node: PacsNode | None = None,
    api_key: ApiKey | None = None,
    actor_type: str | None = None,
    actor_label: str = "",
    organisation: Organisation | int | None = None,
    patient: Patient | int | None = None,
    study_uids: Iterable[str] = (),
    client: str = "",
    on_behalf_of: int | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit entry. ``detail`` must hold no patient data (names, birth dates, BSN, contact details).
    ``on_behalf_of``: the sending user a recipient's access happens for (docs/security.md A16)."""
    action = Action(action)  # a code not declared in audit/actions.py is refused at run time too
    actor_id: int | None = None
    user_agent = ""
    if request is not None:
        client = client or client_address(request)
        user_agent = request.headers.get("user-agent", "")[:300]
        # A request made with an API key is the key's, whatever session cookie came along.
        session_user = getattr(request, "user", None) if api_key is None else None
        if user is None and session_user is not None and session_user.is_authenticated:
            user = session_user
    who = _who(user, api_key, node)
    if who is not None:
        actor_id = who.pk
        actor_label = actor_label or who.label
        actor_type = actor_type or who.actor_type
        if organisation is None:
            organisation = who.organisation_id
    org_id = organisation if isinstance(organisation, int) or organisation is None else organisation.pk
    patient_id = patient if isinstance(patient, int) or patient is None else patient.pk
    event = AuditEvent(
        action=action,
        outcome=outcome,
        actor_type=actor_type or ActorType.ANONYMOUS,
        actor_id=actor_id,
        actor_label=actor_label[:150],
        organisation_id=org_id,
        patient_ref=patient_id,
        on_behalf_of_id=on_behalf_of,
        study_uids=sorted(set(study_uids)),
        client_address=client[:64],
        user_agent=user_agent,
        detail=dict(detail or {}),
    )
    return chain.append(event)  # stamps the time under the chain's lock


def record_not_found(
    action: Action, request: HttpRequest, organisation: Organisation, requested_id: int
) -> AuditEvent:
    """A refused look-up by id: another organisation's object and a missing one are refused alike (404) and both
    recorded, as an intrusion signal (docs/security.md A10), without naming any patient."""
    return record(
        action,
        outcome=Outcome.DENIED,
        request=request,
        organisation=organisation,
        detail={"requested_id": requested_id, "reason": "not found in the organisation"},
    )


def prune(now: dt.datetime | None = None) -> list[chain.Pruned]:
    """Remove the entries past ``RADSHARE_AUDIT_RETENTION_YEARS`` (daily, and ``radshare audit prune``), chain by
    chain up to a signed checkpoint (``chain.prune_chain``); each pruning is one entry of its own chain, in the
    same transaction (docs/security.md A17)."""
    cutoff = chain.retention_cutoff(now)
    done = []
    for key in chain.chains_older_than(cutoff):
        with transaction.atomic():
            pruned = chain.prune_chain(key, cutoff)
            if pruned is None:
                continue
            record(
                Action.AUDIT_PRUNE,
                actor_type=ActorType.SYSTEM,
                organisation=chain.organisation_id(key),
                detail={
                    "deleted": pruned.deleted,
                    "through_seq": pruned.through_seq,
                    "retention_years": settings.RADSHARE.audit_retention_years,
                },
            )
        done.append(pruned)
    return done
