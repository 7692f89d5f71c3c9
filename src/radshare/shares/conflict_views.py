"""Corrections from the PACS in the portal, for organisation admins (docs/architecture.md "Corrections from the
PACS"): the open conflicts, one conflict's page, and its two decisions, each a POST with CSRF from that page.

Another organisation's conflict and an unknown id are a 404, audited alike (docs/security.md A10).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST, require_safe

from radshare.audit.actions import Action
from radshare.audit.services import record, record_not_found
from radshare.organisations.models import Organisation
from radshare.organisations.views import org_admin_required
from radshare.shares import conflicts
from radshare.shares.views import actor_of
from radshare.studies.conflicts import ConflictClosedError, new_patient_fields, open_conflicts
from radshare.studies.models import Patient, StudyConflict


@dataclass(frozen=True)
class Row:
    conflict: StudyConflict
    new: dict[str, Any]  # the new patient's attributes, as Patient fields


@require_safe
@org_admin_required
def conflict_list(request: HttpRequest, organisation: Organisation) -> HttpResponse:
    rows = [Row(c, new_patient_fields(c)) for c in open_conflicts(organisation)]
    record(
        Action.PORTAL_CONFLICTS_LIST,
        request=request,
        organisation=organisation,
        study_uids=[row.conflict.study.study_instance_uid for row in rows],
        detail={"conflicts": [row.conflict.pk for row in rows]},
    )
    return render(request, "shares/conflict_list.html", {"organisation": organisation, "rows": rows})


def _conflict(request: HttpRequest, organisation: Organisation, pk: int, action: Action) -> StudyConflict:
    """The organisation's conflict ``pk``; another organisation's or an unknown id is a 404, audited as ``action``."""
    conflict = (
        StudyConflict.objects.filter(organisation=organisation, pk=pk)
        .select_related("study__patient", "source_node")
        .first()
    )
    if conflict is None:
        record_not_found(action, request, organisation, pk)
        raise Http404(_("Correction not found"))
    return conflict


@require_safe
@org_admin_required
def conflict_detail(request: HttpRequest, organisation: Organisation, pk: int) -> HttpResponse:
    conflict = _conflict(request, organisation, pk, Action.PORTAL_CONFLICT_VIEW)
    if conflict.state != StudyConflict.State.OPEN or conflict.study.destroy_started_at is not None:
        messages.info(request, _("This correction has been decided already."))
        return redirect("shares:conflicts")
    study = conflict.study
    record(
        Action.PORTAL_CONFLICT_VIEW,
        request=request,
        organisation=organisation,
        patient=study.patient_id,
        study_uids=[study.study_instance_uid],
        detail={"conflict": conflict.pk, "study": study.pk},
    )
    existing = Patient.objects.filter(
        organisation=organisation,
        issuer_of_patient_id=conflict.new_issuer_of_patient_id,
        patient_id=conflict.new_patient_id,
    ).first()
    context = {
        "organisation": organisation,
        "row": Row(conflict, new_patient_fields(conflict)),
        "existing": existing,
        "shares": conflicts.live_shares_of(study),
    }
    return render(request, "shares/conflict_detail.html", context)


@require_POST
@org_admin_required
def conflict_accept(request: HttpRequest, organisation: Organisation, pk: int) -> HttpResponse:
    conflict = _conflict(request, organisation, pk, Action.PORTAL_CONFLICT_ACCEPT)
    try:
        accepted = conflicts.accept(organisation, conflict.pk, actor_of(request))
    except ConflictClosedError:
        messages.error(request, _("This correction has been decided already: nothing was changed."))
        return redirect("shares:conflicts")
    count = len(accepted.revoked)
    done = _("The study now belongs to patient %(id)s.") % {"id": accepted.move.to_patient.patient_id}
    if count:
        done += " " + ngettext(
            "%(count)d share of it was revoked; its sender is told.",
            "%(count)d shares of it were revoked; their senders are told.",
            count,
        ) % {"count": count}
    messages.success(request, done)
    return redirect("shares:conflicts")


@require_POST
@org_admin_required
def conflict_dismiss(request: HttpRequest, organisation: Organisation, pk: int) -> HttpResponse:
    conflict = _conflict(request, organisation, pk, Action.PORTAL_CONFLICT_DISMISS)
    try:
        conflicts.dismiss(organisation, conflict.pk, actor_of(request))
    except ConflictClosedError:
        messages.error(request, _("This correction has been decided already: nothing was changed."))
    else:
        messages.success(request, _("The correction is dismissed: the study stays with its patient."))
    return redirect("shares:conflicts")
