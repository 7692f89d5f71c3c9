"""The organisation's audit trail in the portal (docs/security.md A19; NEN 7513): a filtered, paginated list for
organisation admins and log administrators, and its export as CSV or JSON. Every query is scoped to the reader's
organisation, and every reading, export and refusal is itself an audit entry."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Max
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_safe

from radshare.audit import queries
from radshare.audit.actions import Action
from radshare.audit.models import AuditEvent
from radshare.audit.services import Outcome, record
from radshare.organisations.auth import sender_required
from radshare.organisations.models import Organisation, Sender
from radshare.trail import export as exports
from radshare.trail.forms import TrailFilterForm

PAGE_SIZE = 50


def reader_required(
    action: Action,
) -> Callable[[Callable[..., HttpResponseBase]], Callable[..., HttpResponseBase]]:
    """Staff of an active organisation (``sender_required``) who may read its trail (``Sender.may_read_audit``);
    anyone else gets 403, and the refusal is recorded as ``action`` denied."""

    def decorate(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        @sender_required
        @wraps(view)
        def wrapper(
            request: HttpRequest, organisation: Organisation, *args: Any, **kwargs: Any
        ) -> HttpResponseBase:
            user = request.user
            assert isinstance(user, Sender)  # noqa: S101 - sender_required guarantees it
            if not user.may_read_audit:
                record(
                    action,
                    outcome=Outcome.DENIED,
                    request=request,
                    organisation=organisation,
                    detail={"reason": "not an organisation admin or log administrator"},
                )
                raise PermissionDenied
            return view(request, organisation, *args, **kwargs)

        return wrapper

    return decorate


def _criteria(form: TrailFilterForm, organisation: Organisation) -> queries.TrailFilter | None:
    return form.criteria(organisation) if form.is_valid() else None


def _query(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


@require_safe
@reader_required(Action.PORTAL_AUDIT_VIEW)
def trail(request: HttpRequest, organisation: Organisation) -> HttpResponse:
    form = TrailFilterForm(request.GET)
    criteria = _criteria(form, organisation)
    events = queries.trail(organisation.pk, criteria) if criteria else AuditEvent.objects.none()
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    shown = list(page.object_list)
    record(
        Action.PORTAL_AUDIT_VIEW,
        request=request,
        organisation=organisation,
        detail={
            "filters": criteria.detail() if criteria else {"invalid": sorted(form.errors)},
            "page": page.number,
            "count": page.paginator.count,
        },
    )
    return render(
        request,
        "trail/trail.html",
        {
            "organisation": organisation,
            "form": form,
            "page": page,
            "rows": queries.entries(shown, exports.names_for(organisation, shown)),
            "query": _query(request),
        },
    )


@require_GET  # not HEAD: an export that sends nothing is not recorded as one
@reader_required(Action.PORTAL_AUDIT_EXPORT)
def export(request: HttpRequest, organisation: Organisation, fmt: str) -> HttpResponseBase:
    """The filtered entries as a file: those there were when the export was asked for (its own entry, written
    before the first byte, is not in it: docs/security.md A18)."""
    if fmt not in exports.FORMATS:
        raise Http404
    form = TrailFilterForm(request.GET)
    criteria = _criteria(form, organisation)
    if criteria is None:  # the page shows what is wrong with the filters
        return redirect(f"{reverse('trail:trail')}?{_query(request)}")
    events = queries.trail(organisation.pk, criteria)
    size = events.aggregate(count=Count("pk"), upto=Max("pk"))
    upto = size["upto"] or 0
    used = criteria.detail()
    record(
        Action.PORTAL_AUDIT_EXPORT,
        request=request,
        organisation=organisation,
        detail={"format": fmt, "filters": used, "count": size["count"]},
    )
    chosen = events.filter(pk__lte=upto)
    name = exports.filename(organisation, fmt)
    if fmt == "csv":
        pieces = exports.csv_lines(organisation, chosen)
    else:
        about = {"exported_by": request.user.get_username(), "filters": used, "count": size["count"]}
        pieces = exports.json_lines(organisation, chosen, about)
    return exports.response(request, fmt, pieces, name)
