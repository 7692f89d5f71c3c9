"""Sender portal: the study browser and upload. Every query is scoped to the sender's organisation."""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

from django.conf import settings
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.decorators import decorator_from_middleware
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_safe

from radshare.audit.actions import Action
from radshare.audit.services import Outcome, record, record_not_found
from radshare.core import streaming
from radshare.core.middleware import CsrfViewMiddleware
from radshare.organisations.auth import sender_required
from radshare.organisations.models import Organisation
from radshare.studies.browse import StudySearch, get_study, search_studies
from radshare.studies.forms import StudySearchForm
from radshare.studies.integrity import broken_instances
from radshare.studies.models import Study
from radshare.studies.upload import (
    MAX_FILES,
    MB,
    SpoolUploadHandler,
    UploadImport,
    UploadReport,
    UploadSpool,
    touched_studies,
)
from radshare.studies.upload import Outcome as FileOutcome
from radshare.studies.upload import Reason as FileReason

PAGE_SIZE = 50


@require_safe
@sender_required
def study_list(request: HttpRequest, organisation: Organisation) -> HttpResponse:
    form = StudySearchForm(request.GET or None)
    page = None
    if not form.is_bound or form.is_valid():
        criteria = form.criteria() if form.is_bound else StudySearch()
        page = Paginator(search_studies(organisation, criteria), PAGE_SIZE).get_page(request.GET.get("page"))
        shown: list[Study] = list(page.object_list)
        record(
            Action.PORTAL_STUDIES_LIST,
            request=request,
            organisation=organisation,
            study_uids=[s.study_instance_uid for s in shown],
            detail={
                "count": page.paginator.count,
                "page": page.number,
                "criteria": sorted(k for k in form.fields if request.GET.get(k)),
            },
        )
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "studies/study_list.html",
        {
            "form": form,
            "page": page,
            "query": query.urlencode(),
            "organisation": organisation,
        },
    )


@require_safe
@sender_required
def study_detail(request: HttpRequest, organisation: Organisation, pk: int) -> HttpResponse:
    try:
        study = get_study(organisation, pk)
    except Study.DoesNotExist:
        # Another organisation's study and a missing one are refused alike; both are recorded (intrusion signal).
        record_not_found(Action.PORTAL_STUDY_VIEW, request, organisation, pk)
        raise Http404(_("Study not found")) from None
    record(
        Action.PORTAL_STUDY_VIEW,
        request=request,
        organisation=organisation,
        patient=study.patient,
        study_uids=[study.study_instance_uid],
    )
    return render(
        request,
        "studies/study_detail.html",
        {
            "study": study,
            "patient": study.patient,
            "series_list": study.series.all(),
            "organisation": organisation,
            "broken": broken_instances(study),
        },
    )


# --- upload (docs/requirements.md B1.4) ----------------------------------------------------------------------------

csrf_protect = decorator_from_middleware(CsrfViewMiddleware)  # radshare's CSRF check, as a decorator

# The reasons shown to the user, by code (never the exception's text, docs/security.md A15).
REASON_TEXTS: dict[FileReason, Promise] = {
    FileReason.UNREADABLE: _("Not a readable DICOM file (damaged or incomplete)."),
    FileReason.TRUNCATED: _(
        "The file is incomplete (cut off). Copy it again from the original disc or folder."
    ),
    FileReason.MISSING_UIDS: _(
        "The file lacks identifiers every DICOM image must have (study, series or image UID)."
    ),
    FileReason.CONFLICT: _(
        "This study is already filed under another patient. Nothing was changed; "
        "check the patient details at the source."
    ),
    FileReason.STORAGE_FAILED: _(
        "Could not be saved: storage is full or unavailable. Tell the administrator, then upload again."
    ),
    FileReason.ZIP_UNREADABLE: _(
        "Not a readable ZIP file (damaged or incomplete). Nothing from it was stored."
    ),
    FileReason.ZIP_MEMBER_UNREADABLE: _("Could not be unpacked from the ZIP (damaged or an unusual format)."),
    FileReason.ZIP_ENCRYPTED: _("Protected with a password in the ZIP. Upload it without a password."),
    FileReason.ZIP_TOO_LARGE: _(
        "Unpacked, this ZIP exceeds the upload limit of %(limit)s MB. Nothing from it was stored."
    ),
    FileReason.TOO_MANY_FILES: _("Holds too many files for one upload. Nothing from it was stored."),
    FileReason.MISSING_FROM_UPLOAD: _("Listed in the DICOMDIR, but not in the upload."),
    FileReason.NOT_DICOM: _("Not a DICOM file."),
    FileReason.EMPTY: _("Empty file."),
    FileReason.NESTED_ARCHIVE: _("A ZIP inside a ZIP is not opened. Upload it separately."),
    FileReason.DICOMDIR: _("DICOMDIR: the disc's index, used to find its images."),
    FileReason.DICOMDIR_UNREADABLE: _(
        "DICOMDIR could not be read; the files beside it were examined anyway."
    ),
}
OUTCOME_TEXTS: dict[FileOutcome, Promise] = {
    FileOutcome.STORED: _("Stored"),
    FileOutcome.DUPLICATE: _("Already present"),
    FileOutcome.REFUSED: _("Refused"),
    FileOutcome.SKIPPED: _("Skipped"),
}


def _upload_limit_mb() -> int:
    return settings.RADSHARE.upload_max_mb


def _report_context(organisation: Organisation, report: UploadReport) -> dict[str, Any]:
    limit = {"limit": _upload_limit_mb()}
    lines = [
        {
            "path": r.path,
            "outcome": r.outcome.value,
            "outcome_text": OUTCOME_TEXTS[r.outcome],
            "reason": str(REASON_TEXTS[r.reason]) % limit if r.reason else "",
            "unlisted": r.unlisted,
        }
        for r in report.results
    ]
    return {
        "report": report,
        "counts": {o.value: report.counts[o] for o in FileOutcome},
        "touched": touched_studies(organisation, report),
        "refused_lines": [line for line in lines if line["outcome"] == FileOutcome.REFUSED],
        "skipped_lines": [line for line in lines if line["outcome"] == FileOutcome.SKIPPED],
        "lines": lines,
        "unlisted_count": sum(1 for r in report.results if r.unlisted),
    }


def _import(
    request: HttpRequest, organisation: Organisation, run: UploadImport, spool: UploadSpool
) -> Generator[int]:
    """Runs the import, yielding after each file; the one audit entry is written however it ends (done, an
    error, or the browser gone mid-way): what was stored is on record either way."""
    finished = False
    results = run.run()
    try:
        for _result in results:
            yield 1
        finished = True
    finally:
        results.close()  # now, not when collected: it closes the ZIPs and starts rendering
        _record_upload(request, organisation, run.report, spool.total, finished=finished)


def _record_upload(
    request: HttpRequest, organisation: Organisation, report: UploadReport, size: int, *, finished: bool
) -> None:
    """One audit entry per upload: counts and the studies touched, no file names (they may name a patient)."""
    counts = {o.value: report.counts[o] for o in FileOutcome}
    reasons = sorted(
        {r.reason.value for r in report.results if r.reason and r.outcome == FileOutcome.REFUSED}
    )
    kept = counts["stored"] + counts["duplicate"]
    record(
        Action.PORTAL_UPLOAD,
        outcome=Outcome.FAILURE if counts["refused"] and not kept else Outcome.SUCCESS,
        request=request,
        organisation=organisation,
        patient=next(iter(report.patient_pks)) if len(report.patient_pks) == 1 else None,
        study_uids=report.study_uids,
        detail={
            **counts,
            "bytes": size,
            "archives": report.archives,
            "dicomdirs": report.dicomdirs,
            "patients": len(report.patient_pks),
            "refusal_reasons": reasons,
            **({} if finished else {"interrupted": True}),
        },
    )


def _refusal(spool: UploadSpool) -> str | None:
    """What to tell the user when the upload as a whole is refused before anything is stored."""
    limit_mb = _upload_limit_mb()
    if spool.storage_failed:
        return str(REASON_TEXTS[FileReason.STORAGE_FAILED])
    if spool.too_large:
        return str(
            _(
                "This upload is larger than the limit of %(limit)s MB, so nothing was stored. "
                "Upload fewer files at a time, for example one study folder at a time."
            )
            % {"limit": limit_mb}
        )
    if spool.too_many:
        return str(
            _(
                "This upload holds more than %(count)s files, so nothing was stored. Upload fewer files at a time."
            )
            % {"count": MAX_FILES}
        )
    if not spool.files:
        return str(_("Choose one or more files, or a folder, to upload."))
    return None


def _refusal_code(spool: UploadSpool) -> str:
    if spool.storage_failed:
        return "storage_failed"
    return "too_large" if spool.too_large else "too_many_files"


def _wants_stream(request: HttpRequest) -> bool:
    return "application/x-ndjson" in request.headers.get("accept", "")


@csrf_exempt  # checked in _upload, once the upload handler is in place (it must parse the body itself)
@require_http_methods(["GET", "HEAD", "POST"])
@sender_required
def upload(request: HttpRequest, organisation: Organisation) -> HttpResponseBase:
    if request.method != "POST":
        return _upload(request, organisation, None)
    spool = UploadSpool(_upload_limit_mb() * MB)
    request.upload_handlers = [SpoolUploadHandler(spool)]
    try:
        response = _upload(request, organisation, spool)
    except BaseException:
        spool.close()
        raise
    if not isinstance(response, StreamingHttpResponse):
        spool.close()
    return response


@csrf_protect
def _upload(request: HttpRequest, organisation: Organisation, spool: UploadSpool | None) -> HttpResponseBase:
    context: dict[str, Any] = {
        "organisation": organisation,
        "limit_mb": _upload_limit_mb(),
        "limit_bytes": _upload_limit_mb() * MB,
    }
    if spool is None:
        return render(request, "studies/upload.html", context)
    request.POST  # noqa: B018 - parse the body (csrf_protect has, unless the check was skipped)
    if (refusal := _refusal(spool)) is not None:
        if spool.storage_failed or spool.too_large or spool.too_many:
            record(
                Action.PORTAL_UPLOAD,
                outcome=Outcome.FAILURE,
                request=request,
                organisation=organisation,
                detail={"bytes": spool.total, "reason": _refusal_code(spool)},
            )
        status = 503 if spool.storage_failed else 413 if spool.too_large or spool.too_many else 400
        if _wants_stream(request):
            return JsonResponse({"event": "error", "message": refusal}, status=status)
        return render(request, "studies/upload.html", {**context, "error": refusal}, status=status)
    run = UploadImport(organisation, spool)
    if _wants_stream(request):
        response = StreamingHttpResponse(
            streaming.pulled(request, _upload_events(request, organisation, run, spool)),
            content_type="application/x-ndjson",
        )
        response["X-Accel-Buffering"] = "no"  # let a reverse proxy pass the progress on as it comes
        return response
    run.prepare()
    for _step in _import(request, organisation, run, spool):
        pass
    return render(request, "studies/upload.html", {**context, **_report_context(organisation, run.report)})


def _upload_events(
    request: HttpRequest, organisation: Organisation, run: UploadImport, spool: UploadSpool
) -> Generator[bytes]:
    """Progress for the page's script, one JSON object a line, then the report as HTML."""
    language = translation.get_language()
    steps: Generator[int] | None = None
    try:
        total = run.prepare()
        yield _line({"event": "start", "total": total})
        steps = _import(request, organisation, run, spool)
        for done, _step in enumerate(steps, start=1):
            yield _line({"event": "progress", "done": done, "total": total})
        with translation.override(language):
            context = {"organisation": organisation, **_report_context(organisation, run.report)}
            html = render_to_string("studies/_upload_report.html", context, request=request)
        yield _line({"event": "done", "counts": context["counts"], "html": html})
    finally:
        if steps is not None:
            steps.close()  # the browser went away mid-way: the audit entry is still written
        spool.close()


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\n"
