"""Sender portal: the share dialog (docs/requirements.md S2), the shares overview and a share's page (B5.2, B5.3, B6.6).

Every query is scoped to the sender's organisation; another organisation's share is a 404, and the refusal is
audited (docs/security.md A10). Every state change is a POST with CSRF; the services audit what they do.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import segno
from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Prefetch, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from radshare.audit.actions import Action
from radshare.audit.models import AuditEvent
from radshare.audit.services import record, record_not_found
from radshare.organisations.auth import sender_required
from radshare.organisations.models import Organisation, Sender
from radshare.pacs.base import failure_text
from radshare.pacs.client import PacsStudy
from radshare.shares import services, signals
from radshare.shares.codes import share_url
from radshare.shares.forms import ShareFilterForm, ShareForm
from radshare.shares.models import Share, ShareStudy
from radshare.shares.pacs import Found, find_by_uid
from radshare.shares.phones import PhoneError, normalize_phone
from radshare.shares.retrieve import PACS_REASON, retrieval_progress
from radshare.shares.services import Actor, ShareError
from radshare.studies.models import Study
from radshare.studies.services import PLACEHOLDER_BIRTH_DATES

PAGE_SIZE = 50
MAX_SELECTION = 1000
MAX_NAMED = 10  # study UIDs a "not found" message names

# Why preparation failed, by the code stored on the share (never an exception's text).
STATUS_REASONS = {
    "study_missing": gettext_lazy(
        "A study of this share is no longer in radshare. Share it again once it is back."
    ),
    "preparation_timeout": gettext_lazy("The images were not ready within 24 hours."),
    "storage_unwritable": gettext_lazy(
        "The images cannot be saved: the storage is full or unavailable. radshare tries again by itself; "
        "tell the administrator."
    ),
    "pacs_node_missing": gettext_lazy(
        "The PACS node to retrieve a study from has been removed or switched off. Share the study again."
    ),
}


def status_reason_text(reason: str) -> str:
    """The stored reason (a code) in the reader's language; a PACS failure by its own code (``pacs.base``)."""
    if reason.startswith(PACS_REASON) and (text := failure_text(reason.removeprefix(PACS_REASON))):
        return text
    known = STATUS_REASONS.get(reason)
    return str(known) if known is not None else reason


def _ints(values: list[str]) -> list[int]:
    out = []
    for value in values[:MAX_SELECTION]:
        try:
            out.append(int(value))
        except ValueError:
            raise Http404(_("Study not found")) from None
    return out


def _pinned(request: HttpRequest) -> dict[str, int]:
    """PACS studies carried by the dialog's form as "<node id>:<study UID>"."""
    pinned = {}
    source = request.POST if request.method == "POST" else request.GET
    for value in source.getlist("pacs")[:MAX_SELECTION]:
        node, _sep, uid = value.partition(":")
        if node.isdigit() and uid:
            pinned[uid.strip()] = int(node)
    return pinned


def _selected(request: HttpRequest, organisation: Organisation) -> tuple[list[Study], list[str]]:
    """The studies a sender picked (by id from the browser, by UID from "share again", deep links and the PACS
    search). Returns the studies here and the UIDs that are not here (to be looked up in the PACS)."""
    source = request.POST if request.method == "POST" else request.GET
    ids = _ints(source.getlist("study"))
    uids = [u.strip() for u in source.getlist("study_uid")[:MAX_SELECTION] if u.strip()]
    uids += list(_pinned(request))
    scoped = Study.objects.filter(organisation=organisation).select_related("patient")
    studies = list(
        scoped.filter(Q(pk__in=ids) | Q(study_instance_uid__in=uids)).order_by("-study_date", "pk")
    )
    found_ids = {s.pk for s in studies}
    for pk in set(ids) - found_ids:
        record_not_found(Action.PORTAL_SHARE_NEW, request, organisation, pk)
        raise Http404(_("Study not found"))
    missing = sorted(set(uids) - {s.study_instance_uid for s in studies})
    return studies, missing


def not_found_message(uids: list[str]) -> str:
    """Which study UIDs (of a deep link or an earlier share) were found neither here nor in a PACS."""
    shown = [uid[:64] for uid in uids[:MAX_NAMED]] + (["…"] if len(uids) > MAX_NAMED else [])
    return ngettext(
        "Study not found: %(uids)s. It is not in radshare, nor in a PACS that radshare searches.",
        "Studies not found: %(uids)s. They are not in radshare, nor in a PACS that radshare searches.",
        len(uids),
    ) % {"uids": ", ".join(shown)}


def _patient_key(study: Study | PacsStudy) -> str:
    return study.patient.patient_id if isinstance(study, Study) else study.patient_id


def _mixed_patients(request: HttpRequest, studies: list[Study], found: Found) -> bool:
    """More than one patient, or not the one the deep link names (``patient_id``)."""
    patients = {_patient_key(s) for s in studies} | {_patient_key(p.study) for p in found.selections}
    wanted = request.GET.get("patient_id", "").strip()
    if len({s.patient_id for s in studies}) > 1 or len(patients) > 1:
        return True
    return bool(wanted) and patients != {wanted}


def _needs_birth_date(studies: list[Study], found: Found) -> bool:
    """``services.needs_birth_date``; for studies still in a PACS, by the birth date the PACS gave."""
    if studies:
        return services.needs_birth_date(studies[0])
    birth = found.selections[0].study.patient_birth_date
    return birth is None or birth in PLACEHOLDER_BIRTH_DATES


def _share_form(request: HttpRequest, studies: list[Study], needs_birth: bool) -> ShareForm:
    initial = {
        "recipient_type": request.GET.get("recipient_type") or Share.RecipientType.PATIENT,
        "study": [s.pk for s in studies],
    }
    form = ShareForm(
        request.POST if request.method == "POST" else None,
        initial=initial,
        study_choices=[s.pk for s in studies],
        needs_birth_date=needs_birth,
    )
    form.fields["study"].required = bool(studies)
    if not _sender_has_address(request):
        # Nothing could tell the sender: the dialog says where to add an address instead (share_new.html).
        del form.fields["notify_on_open"]
    return form


def _sender_has_address(request: HttpRequest) -> bool:
    return isinstance(request.user, Sender) and bool(request.user.email)


def _create(request: HttpRequest, organisation: Organisation, form: ShareForm, found: Found) -> Share | None:
    """The share the valid ``form`` asks for; None when the service refuses it (its reason is on the form)."""
    data = form.cleaned_data
    try:
        new = services.create_share(
            organisation,
            data["study"],
            recipient_type=data["recipient_type"],
            phone=data["phone"],
            delivery=data["delivery"],
            email=data["email"],
            language=data["language"],
            consent_confirmed=data["consent_confirmed"],
            reason=data["reason"],
            birth_date=data.get("birth_date"),
            notify_on_open=data.get("notify_on_open", False),
            recipient_name=data.get("recipient_name", ""),
            created_by=request.user,  # type: ignore[arg-type]  # sender_required guarantees a Sender
            request=request,
            pacs=found.selections,
        )
    except ShareError as exc:
        form.add_error(exc.field if exc.field in form.fields else None, str(exc.message))
        return None
    return new.share


@require_http_methods(["GET", "POST"])
@sender_required
def share_new(request: HttpRequest, organisation: Organisation) -> HttpResponse:
    """The share dialog (docs/requirements.md S2): the studies picked here or in a PACS, then the recipient."""
    studies, missing = _selected(request, organisation)
    found = Found()
    if missing:
        found = find_by_uid(organisation, missing, actor_of(request), _pinned(request))
    pacs_uids = {p.study.study_instance_uid for p in found.selections}
    context: dict[str, Any] = {
        "organisation": organisation,
        "studies": studies,
        "pacs_selections": found.selections,
        "pacs_problems": found.problems,
        "selected_count": len(studies) + len(found.selections),
        "missing": [u for u in missing if u not in pacs_uids],
    }
    if not studies and not found.selections:
        for problem in found.problems:
            messages.error(request, _("The PACS could not be searched: %(problem)s") % {"problem": problem})
        if context["missing"]:
            # A deep link from a PACS (docs/requirements.md S1.3) names the study it meant: say which was not found.
            messages.error(request, not_found_message(context["missing"]))
        else:
            messages.error(request, _("Select one or more studies to share first."))
        return redirect("portal:studies")
    if _mixed_patients(request, studies, found):
        # The browser's check stops this before it gets here; a crafted request or deep link still meets the rule.
        context["mixed"] = True
        return render(request, "shares/share_new.html", context, status=422)
    needs_birth = _needs_birth_date(studies, found)
    form = _share_form(request, studies, needs_birth)
    context.update(
        form=form,
        needs_birth_date=needs_birth,
        expires_on=timezone.localdate() + timedelta(days=settings.RADSHARE.share_validity_days),
        validity_days=settings.RADSHARE.share_validity_days,
    )
    if request.method == "POST" and form.is_valid():
        warning = _phone_warning(form.cleaned_data["phone"])
        if warning and not form.cleaned_data.get("phone_warning_accepted"):
            form.add_error("phone", warning)
            context["phone_warning"] = True
        elif (share := _create(request, organisation, form, found)) is not None:
            messages.success(request, _("The share has been made."))
            return redirect("shares:detail", share.pk)
    return render(request, "shares/share_new.html", context, status=422 if form.errors else 200)


def _phone_warning(raw: str) -> str:
    try:
        return str(normalize_phone(raw).warning)
    except PhoneError:
        return ""  # create_share reports it on the field


def _search(organisation: Organisation, form: ShareFilterForm) -> QuerySet[Share]:
    shares = Share.objects.filter(organisation=organisation).select_related("patient", "created_by")
    if not form.is_valid():
        return shares.none()
    data = form.cleaned_data
    for part in (data.get("q") or "").replace(",", " ").replace("^", " ").split():
        shares = shares.filter(Q(patient__patient_id__iexact=part) | Q(patient__patient_name__icontains=part))
    if data.get("status") == "live":
        shares = shares.exclude(status__in=Share.ENDED)
    elif data.get("status"):
        shares = shares.filter(status=data["status"])
    if data.get("delivery"):
        shares = shares.filter(delivery=data["delivery"])
    if data.get("recipient_type"):
        shares = shares.filter(recipient_type=data["recipient_type"])
    if data.get("created_from"):
        shares = shares.filter(created_at__date__gte=data["created_from"])
    if data.get("created_to"):
        shares = shares.filter(created_at__date__lte=data["created_to"])
    return shares.prefetch_related(
        Prefetch("share_studies", queryset=ShareStudy.objects.select_related("study"))
    ).order_by("-created_at", "-pk")


@require_safe
@sender_required
def share_list(request: HttpRequest, organisation: Organisation) -> HttpResponse:
    form = ShareFilterForm(request.GET)
    page = Paginator(_search(organisation, form), PAGE_SIZE).get_page(request.GET.get("page"))
    shown: list[Share] = list(page.object_list)
    record(
        Action.PORTAL_SHARES_LIST,
        request=request,
        organisation=organisation,
        detail={
            "count": page.paginator.count,
            "page": page.number,
            "shares": [s.pk for s in shown],
            "criteria": sorted(k for k in form.fields if request.GET.get(k)),
        },
    )
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "shares/share_list.html",
        {
            "form": form,
            "page": page,
            "shares": shown,
            "query": query.urlencode(),
            "organisation": organisation,
        },
    )


def share_for_sender(request: HttpRequest, organisation: Organisation, pk: int, action: Action) -> Share:
    """The organisation's share ``pk``; another organisation's or an unknown id is a 404, audited as ``action``."""
    share = (
        Share.objects.filter(organisation=organisation, pk=pk).select_related("patient", "created_by").first()
    )
    if share is None:
        record_not_found(action, request, organisation, pk)
        raise Http404(_("Share not found"))
    return share


def _qr_svg(url: str) -> str:
    # segno writes the SVG itself from the URL; nothing user-supplied reaches the markup unescaped.
    return mark_safe(  # noqa: S308 - generated markup, see above
        segno.make(url, error="m").svg_inline(scale=5, title=_("QR code of the link"), svgclass="qr")
    )


@require_safe
@sender_required
def share_detail(request: HttpRequest, organisation: Organisation, pk: int) -> HttpResponse:
    share = share_for_sender(request, organisation, pk, Action.PORTAL_SHARE_VIEW)
    show_link = share.delivery == Share.Delivery.URL and not share.has_ended
    link = ""
    if show_link:
        try:
            link = share_url(services.current_code(share))
        except ShareError:
            show_link = False
    share_studies = list(share.share_studies.select_related("study"))
    services.audit(Action.PORTAL_SHARE_VIEW, share, actor_of(request), link_shown=bool(link))
    total, prepared = services.preparation_progress(share)
    # Its onward shares' creation and end show in the original's trail too (docs/architecture.md "Onward shares").
    trail = AuditEvent.objects.filter(
        Q(detail__share=share.pk) | Q(detail__original=share.pk), organisation_id=organisation.pk
    ).order_by("timestamp", "pk")
    again = (
        reverse("shares:new")
        + "?"
        + "&".join(
            [f"recipient_type={share.recipient_type}"]
            + [f"study_uid={ss.study_instance_uid}" for ss in share_studies]
        )
    )
    return render(
        request,
        "shares/share_detail.html",
        {
            "organisation": organisation,
            "share": share,
            "share_studies": share_studies,
            "link": link,
            "qr": _qr_svg(link) if link else "",
            "progress": (total, prepared),
            "retrieval": retrieval_progress(share),
            "locked": share.is_locked(),
            "lock_held": share.is_held,
            "trail": trail,
            "onward_shares": list(share.onward_shares.order_by("created_at", "pk")),
            "share_again_url": again,
            "status_reason_text": status_reason_text(share.status_reason),
            **_from_above(share),
        },
    )


def _from_above(share: Share) -> dict[str, Any]:
    """What the apps above add to the share's page (delivery: the e-mail's state and "send again")."""
    context: dict[str, Any] = {}
    for _receiver, extra in signals.share_page.send(sender=Share, share=share):
        context.update(cast("dict[str, Any]", extra))  # each receiver returns a dict (shares/signals.py)
    return context


def actor_of(request: HttpRequest) -> Actor:
    user = request.user
    return Actor(user=user if isinstance(user, Sender) else None, request=request)


def act_on(request: HttpRequest, share: Share, action: Any, done: str, **kwargs: Any) -> HttpResponseRedirect:
    """Run ``action`` (a service) on the share and come back to its page with what happened."""
    try:
        action(share, actor_of(request), **kwargs)
    except ShareError as exc:
        messages.error(request, str(exc.message))
    else:
        messages.success(request, done)
    return redirect("shares:detail", share.pk)


@require_http_methods(["GET", "POST"])
@sender_required
def share_revoke(request: HttpRequest, organisation: Organisation, pk: int) -> HttpResponse:
    share = share_for_sender(request, organisation, pk, Action.PORTAL_SHARE_REVOKE)
    if request.method == "POST":
        return act_on(
            request, share, services.revoke, _("The share has been revoked: its link no longer works.")
        )
    return render(request, "shares/share_revoke.html", {"organisation": organisation, "share": share})


@require_POST
@sender_required
def share_unlock(request: HttpRequest, organisation: Organisation, pk: int) -> HttpResponse:
    share = share_for_sender(request, organisation, pk, Action.PORTAL_SHARE_UNLOCK)
    return act_on(request, share, services.unlock, _("The share has been unlocked."))


@require_POST
@sender_required
def share_retry(request: HttpRequest, organisation: Organisation, pk: int) -> HttpResponse:
    share = share_for_sender(request, organisation, pk, Action.PORTAL_SHARE_RETRY)
    return act_on(request, share, services.retry_preparation, _("The share is being prepared again."))
