"""Portal pages for a study's reports: read an SR, open a PDF, attach a PDF. Scoped to the sender's organisation."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_safe

from radshare.audit.actions import Action
from radshare.audit.services import Outcome, record, record_not_found
from radshare.imaging import reports
from radshare.imaging.forms import ReportAttachForm
from radshare.organisations.auth import sender_required
from radshare.organisations.models import Organisation
from radshare.studies.browse import get_study
from radshare.studies.errors import IngestError
from radshare.studies.models import Instance, Study


def _study(request: HttpRequest, organisation: Organisation, pk: int, action: Action) -> Study:
    try:
        return get_study(organisation, pk)
    except Study.DoesNotExist:
        # Another organisation's study and a missing one are refused alike, and recorded (intrusion signal).
        record_not_found(action, request, organisation, pk)
        raise Http404(_("Study not found")) from None


def _report(
    request: HttpRequest, organisation: Organisation, pk: int, instance_pk: int
) -> tuple[Study, Instance]:
    study = _study(request, organisation, pk, Action.PORTAL_REPORT_VIEW)
    try:
        instance = Instance.objects.get(
            pk=instance_pk,
            organisation=organisation,
            series__study=study,
            sop_class_uid__in=reports.REPORT_SOP_CLASSES,
        )
    except Instance.DoesNotExist:
        record(
            Action.PORTAL_REPORT_VIEW,
            outcome=Outcome.DENIED,
            request=request,
            organisation=organisation,
            detail={"requested_id": instance_pk, "study": pk, "reason": "not a report of this study"},
        )
        raise Http404(_("Report not found")) from None
    return study, instance


def _record_view(
    request: HttpRequest, study: Study, instance: Instance, kind: str, *, ok: bool = True
) -> None:
    record(
        Action.PORTAL_REPORT_VIEW,
        outcome=Outcome.SUCCESS if ok else Outcome.FAILURE,
        request=request,
        organisation=study.organisation_id,
        patient=study.patient,
        study_uids=[study.study_instance_uid],
        detail={"instance": instance.pk, "kind": kind, **({} if ok else {"reason": "unreadable"})},
    )


@require_safe
@sender_required
def report_detail(
    request: HttpRequest, organisation: Organisation, pk: int, instance_pk: int
) -> HttpResponse:
    """An SR document as a readable page (a PDF has its own URL: redirect there)."""
    study, instance = _report(request, organisation, pk, instance_pk)
    if reports.is_pdf(instance.sop_class_uid):
        return redirect("imaging:report_pdf", pk=study.pk, instance_pk=instance.pk)
    try:
        document = reports.read_sr(instance)
    except reports.ReportError:
        document = None
    _record_view(request, study, instance, "sr", ok=document is not None)
    return render(
        request,
        "imaging/report_detail.html",
        {"study": study, "document": document, "organisation": organisation, "instance": instance},
    )


@require_safe
@sender_required
def report_pdf(request: HttpRequest, organisation: Organisation, pk: int, instance_pk: int) -> HttpResponse:
    """An encapsulated PDF, byte for byte, shown by the browser (inline; link to it, never frame it)."""
    study, instance = _report(request, organisation, pk, instance_pk)
    if not reports.is_pdf(instance.sop_class_uid):
        return redirect("imaging:report", pk=study.pk, instance_pk=instance.pk)
    try:
        pdf = reports.read_pdf(instance)
    except reports.ReportError:
        _record_view(request, study, instance, "pdf", ok=False)
        return render(
            request,
            "imaging/report_detail.html",
            {"study": study, "document": None, "organisation": organisation, "instance": instance},
        )
    _record_view(request, study, instance, "pdf")
    response = HttpResponse(pdf, content_type=reports.PDF_MIME_TYPE)
    response["Content-Disposition"] = 'inline; filename="report.pdf"'
    response["Content-Length"] = str(len(pdf))
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "no-store"
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    # The site's strict CSP applies here too: Chromium's PDF viewer works under it (checked with Chromium 156).
    return response


@require_http_methods(["GET", "HEAD", "POST"])
@sender_required
def report_attach(request: HttpRequest, organisation: Organisation, pk: int) -> HttpResponse:
    """Attach a PDF report to a study: stored as an Encapsulated PDF instance of the study (audited)."""
    study = _study(request, organisation, pk, Action.PORTAL_REPORT_ATTACH)
    if request.method != "POST":
        form = ReportAttachForm()
        return _attach_page(request, organisation, study, form)
    form = ReportAttachForm(request.POST, request.FILES)
    if not form.is_valid():
        _record_attach(request, study, outcome=Outcome.FAILURE, detail={"reasons": form.refusal_codes()})
        return _attach_page(request, organisation, study, form, status=400)
    pdf = form.pdf()
    try:
        attached = reports.attach_pdf_report(study, pdf, title=form.cleaned_data["title"])
    except (IngestError, reports.ReportError) as exc:
        reason = "storage" if isinstance(exc, IngestError) else "no_source_instance"
        _record_attach(
            request, study, outcome=Outcome.FAILURE, detail={"reasons": [reason], "bytes": len(pdf)}
        )
        form.add_error(None, _("The report could not be stored. Try again later, or tell the administrator."))
        return _attach_page(request, organisation, study, form, status=503)
    _record_attach(
        request,
        study,
        outcome=Outcome.SUCCESS,
        detail={"instance": attached.result.instance_pk, "bytes": attached.size},
    )
    messages.success(request, _("The report was attached to the study."))
    return redirect(reverse("portal:study", args=[study.pk]) + "#reports")


def _record_attach(request: HttpRequest, study: Study, *, outcome: str, detail: dict[str, object]) -> None:
    record(
        Action.PORTAL_REPORT_ATTACH,
        outcome=outcome,
        request=request,
        organisation=study.organisation_id,
        patient=study.patient,
        study_uids=[study.study_instance_uid],
        detail=detail,
    )


def _attach_page(
    request: HttpRequest,
    organisation: Organisation,
    study: Study,
    form: ReportAttachForm,
    *,
    status: int = 200,
) -> HttpResponse:
    return render(
        request,
        "imaging/report_attach.html",
        {
            "study": study,
            "form": form,
            "organisation": organisation,
        },
        status=status,
    )
