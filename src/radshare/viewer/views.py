"""The image viewer (docs/requirements.md S4.5, S4.12): one study of the recipient's share, each series a stack
of the previews rendered at ingest, and the study's reports beside the images (the study page, its images, a
report's PDF). Share-scoped DICOMweb for viewers of the recipient's own is ``dicomweb``.

Every look-up goes through the session's share (docs/security.md A10): a study, render or report of another share is
a 404, and a refused study or report is audited. Image URLs hold internal ids only (A20). Opening a study is one
audit entry; images are neither audited nor counted as downloads (docs/architecture.md "Audit granularity",
"Downloads").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import F
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_safe

from radshare.audit.actions import Action
from radshare.audit.services import Outcome
from radshare.core.storage import get_storage, render_key, video_key
from radshare.downloads.views import UnsatisfiableRangeError, parse_range
from radshare.imaging import reports
from radshare.imaging.models import KEPT_AS_FIELDS, InstanceRender, kept_as
from radshare.imaging.previews import KINDS
from radshare.imaging.render import CT_PRESETS
from radshare.recipients.services import refused_on_device
from radshare.recipients.session import recipient_required, record_recipient
from radshare.shares.models import Share
from radshare.studies.models import Instance, Series, Study

Status = InstanceRender.Status
# A preview, thumbnail or preset is tens of kilobytes: read and sent in one piece. A streamed FileResponse costs a
# hop to a worker thread for each piece under ASGI (docs/architecture.md "Performance budget"); a larger full-size
# JPEG is still streamed.
IMAGE_IN_ONE_PIECE = 1 << 20
# A video is asked for in ranges (seeking); one answer holds at most this much, the browser asks for the rest.
VIDEO_PIECE = 2 << 20
SPEEDS = (0.25, 0.5, 1, 2)  # the playback rates offered (1: as recorded), shown in the page's language


@dataclass
class SeriesStack:
    """One series as the viewer shows it: every frame of its rendered instances, in instance order."""

    series: Series
    # {"src": preview URL, "w": px, "h": px, "full": true when the full-size JPEG is larger, for zooming in}
    images: list[dict[str, Any]] = field(default_factory=list)
    presets: list[str] = field(default_factory=list)  # CT window presets every image of the series has
    waiting: bool = False  # some image of the series still waits for its presets (the second render pass)
    thumb: str = ""
    # A run of frames with a video: {"src": MP4 URL, "first": index of its first frame in images, "frames": n,
    # "fps": frames per second}
    videos: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {**self.presets_json(), "images": self.images, "videos": self.videos}

    def presets_json(self) -> dict[str, Any]:
        """What the page is told of the series' presets, with the page and while it asks (``study_presets``)."""
        return {"id": self.series.pk, "presets": self.presets, "waiting": self.waiting}

    @property
    def label(self) -> str:
        number = self.series.series_number
        name = _("Series %(n)s") % {"n": number} if number is not None else _("Unnumbered series")
        return f"{name}: {self.series.series_description}" if self.series.series_description else name


@dataclass(frozen=True)
class ViewerReport:
    summary: reports.ReportSummary
    document: reports.SrDocument | None = None  # an SR, rendered; a PDF opens through its own URL


class _ImageUrls:
    """Image URLs without a reverse() per frame (a multi-frame instance can have thousands)."""

    def __init__(self) -> None:
        sample = reverse("viewer:image", args=[0, 0, "preview"])
        self.prefix = sample.removesuffix("0/0/preview.jpg")

    def __call__(self, render_pk: int, frame: int, kind: str) -> str:
        return f"{self.prefix}{render_pk}/{frame}/{kind}.jpg"


def series_stacks(study: Study) -> tuple[list[SeriesStack], int]:
    """The study's series that have images, and how many objects cannot be shown (not reports, not images)."""
    series = {
        s.pk: SeriesStack(s)
        for s in Series.objects.filter(study=study).order_by(F("series_number").asc(nulls_last=True), "pk")
    }
    rows = (
        InstanceRender.objects.filter(instance__series__study=study)
        .order_by(F("instance__instance_number").asc(nulls_last=True), "instance_id")
        .values_list(
            "pk",
            "status",
            "frames",
            "preview_columns",
            "preview_rows",
            "columns",
            "presets",
            "presets_due",
            "instance__series_id",
            "instance__sop_class_uid",
            "video_size",
            "video_frame_rate",
        )
    )
    url = _ImageUrls()
    not_shown = 0
    preset_sets: dict[int, set[str]] = {}
    video_prefix = reverse("viewer:video", args=[0]).removesuffix("0.mp4")
    for (
        pk,
        status,
        frames,
        width,
        height,
        full_width,
        presets,
        due,
        series_pk,
        sop_class_uid,
        video,
        fps,
    ) in rows:
        if status != Status.DONE or not frames:
            if status in (Status.UNRENDERABLE, Status.FAILED) and not reports.is_report(sop_class_uid):
                not_shown += 1
            continue
        stack = series[series_pk]
        if not stack.images:
            stack.thumb = url(pk, 0, "thumb")
        extra = {"full": True} if full_width > width else {}
        if video and fps > 0 and frames > 1:
            clip = {
                "src": f"{video_prefix}{pk}.mp4",
                "first": len(stack.images),
                "frames": frames,
                "fps": fps,
            }
            stack.videos.append(clip)
        stack.images.extend(
            {"src": url(pk, f, "preview"), "w": width, "h": height, **extra} for f in range(frames)
        )
        have = set(presets or [])
        preset_sets[series_pk] = preset_sets[series_pk] & have if series_pk in preset_sets else have
        stack.waiting = stack.waiting or due
    stacks = [s for s in series.values() if s.images]
    for stack in stacks:
        stack.presets = [p for p in CT_PRESETS if p in preset_sets.get(stack.series.pk, set())]
    return stacks, not_shown


def viewer_reports(study: Study) -> list[ViewerReport]:
    """The study's reports, oldest first: an SR rendered for the page, a PDF by its header only (each read once and
    kept a few minutes: ``reports.read_report``)."""
    return [
        ViewerReport(*reports.read_report(instance)) for instance in reports.study_report_instances(study)
    ]


def _refuse(request: HttpRequest, share: Share, action: Action, requested_id: int, reason: str) -> Http404:
    # Another share's id and a missing one are refused alike, and recorded as an intrusion signal (A10).
    record_recipient(action, request, share, outcome=Outcome.DENIED, requested_id=requested_id, reason=reason)
    return Http404()


def _record(
    request: HttpRequest,
    share: Share,
    action: Action,
    study: Study,
    outcome: str = Outcome.SUCCESS,
    **detail: Any,
) -> None:
    record_recipient(action, request, share, outcome=outcome, study_uids=[study.study_instance_uid], **detail)


def _modalities(study: Study, stacks: list[SeriesStack]) -> str:
    # Those of the images (not "SR" or "DOC" of a report); the study's own list when nothing is an image.
    return ", ".join(sorted({s.series.modality for s in stacks if s.series.modality}) or study.modalities)


@require_safe
@recipient_required
def study_view(request: HttpRequest, share: Share, pk: int) -> HttpResponse:
    """A study of the share: series thumbnails, the selected series' images, the reports (audited once)."""
    study = Study.objects.filter(share_studies__share=share, pk=pk).first()
    if study is None:
        raise _refuse(request, share, Action.RECIPIENT_STUDY_VIEW, pk, "not in the share")
    stacks, not_shown = series_stacks(study)
    study_reports = viewer_reports(study)
    _record(request, share, Action.RECIPIENT_STUDY_VIEW, study)
    first = stacks[0] if stacks else None
    context = {
        "organisation": share.organisation,
        "logged_in": True,
        "study": study,
        "modalities": _modalities(study, stacks),
        "stacks": stacks,
        "first": first,
        "first_image": first.images[0] if first else None,
        "presets": list(CT_PRESETS),
        "speeds": SPEEDS,
        "not_shown": not_shown,
        "reports": study_reports,
        "viewer_data": {"series": [s.as_json() for s in stacks]},
        # While a series waits for its window presets, the page asks for them (viewer.js).
        "presets_url": reverse("viewer:presets", args=[study.pk]) if any(s.waiting for s in stacks) else "",
        # On a phone: why not, instead of a button leading to a page without a download (S4.8).
        "downloads_offered": not refused_on_device(request),
    }
    return render(request, "viewer/study.html", context)


@require_safe
@recipient_required
def study_presets(request: HttpRequest, share: Share, pk: int) -> HttpResponse:
    """The window presets of a study's series, which ``viewer.js`` asks for while a series waits for its second
    render pass (docs/architecture.md "Renders"). Not audited: it names presets, no patient data, and the page that
    asks was audited as it opened."""
    study = Study.objects.filter(share_studies__share=share, pk=pk).first()
    if study is None:
        raise _refuse(request, share, Action.RECIPIENT_STUDY_VIEW, pk, "not in the share")
    stacks, _ = series_stacks(study)
    response = JsonResponse({"series": [s.presets_json() for s in stacks]})
    response["Cache-Control"] = "no-store"
    return response


@require_safe
@recipient_required
def image(request: HttpRequest, share: Share, render_pk: int, frame: int, kind: str) -> HttpResponseBase:
    """One pre-rendered JPEG of an image in the share. Not audited, not a download (docs/architecture.md)."""
    if kind not in KINDS:
        raise Http404
    found = (
        InstanceRender.objects.filter(
            pk=render_pk, status=Status.DONE, instance__series__study__share_studies__share=share
        )
        .values_list("instance_id", "frames", "presets", *KEPT_AS_FIELDS)
        .first()
    )
    if found is None:
        raise Http404
    instance_pk, frames, presets, *sizes = found
    if frame >= frames or (kind in CT_PRESETS and kind not in presets):
        raise Http404
    try:
        handle = get_storage().open(render_key(instance_pk, frame, kept_as(kind, *sizes)))
    except FileNotFoundError:
        raise Http404 from None
    try:
        piece = handle.read(IMAGE_IN_ONE_PIECE + 1)
        streamed = len(piece) > IMAGE_IN_ONE_PIECE
        if streamed:
            handle.seek(0)
    except BaseException:
        handle.close()
        raise
    response: HttpResponseBase
    if streamed:
        response = FileResponse(handle, content_type="image/jpeg")  # closes the handle once sent
    else:
        handle.close()
        response = HttpResponse(piece, content_type="image/jpeg")
    response["Content-Disposition"] = "inline"
    response["Cache-Control"] = "no-store"  # patient data (A13); the page keeps its prefetched copies
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    return response


@require_safe
@recipient_required
def video(request: HttpRequest, share: Share, render_pk: int) -> HttpResponseBase:
    """The MP4 of a run of frames in the share (docs/architecture.md "Renders"), with HTTP Range: a browser seeks by
    asking for byte ranges (206). Scoped, refused and not audited as the JPEGs are (``image``)."""
    found = (
        InstanceRender.objects.filter(
            pk=render_pk,
            status=Status.DONE,
            video_size__gt=0,
            instance__series__study__share_studies__share=share,
        )
        .values_list("instance_id", "video_size")
        .first()
    )
    if found is None:
        raise Http404
    instance_pk, size = found
    try:
        span = parse_range(request.headers.get("range", ""), size)
    except UnsatisfiableRangeError:
        refused = HttpResponse(status=416)
        refused["Content-Range"] = f"bytes */{size}"
        return refused
    response: HttpResponseBase
    storage = get_storage()
    try:
        if span is None:
            response = FileResponse(storage.open(video_key(instance_pk)), content_type="video/mp4")
        else:
            first, last = span[0], min(span[1], span[0] + VIDEO_PIECE - 1)
            with storage.open_range(video_key(instance_pk), first, last + 1) as handle:
                piece = handle.read(last - first + 1)
            if len(piece) != last - first + 1:
                raise Http404  # not the recorded file: the viewer steps through the JPEGs instead
            response = HttpResponse(piece, status=206, content_type="video/mp4")
            response["Content-Range"] = f"bytes {first}-{last}/{size}"
    except FileNotFoundError:
        raise Http404 from None
    response["Content-Length"] = str(size if span is None else last - first + 1)
    response["Accept-Ranges"] = "bytes"
    response["Content-Disposition"] = "inline"
    response["Cache-Control"] = "no-store"  # patient data (A13)
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    return response


@require_safe
@recipient_required
def report_pdf(request: HttpRequest, share: Share, instance_pk: int) -> HttpResponse:
    """A PDF report of a study in the share, byte for byte, for the browser to show (inline; audited)."""
    instance = (
        Instance.objects.filter(
            pk=instance_pk,
            sop_class_uid=reports.PDF_SOP_CLASS,
            series__study__share_studies__share=share,
        )
        .select_related("series__study")
        .first()
    )
    if instance is None:
        raise _refuse(request, share, Action.RECIPIENT_REPORT_VIEW, instance_pk, "not a report in the share")
    study = instance.series.study
    try:
        pdf = reports.read_pdf(instance)
    except reports.ReportError:
        _record(
            request,
            share,
            Action.RECIPIENT_REPORT_VIEW,
            study,
            outcome=Outcome.FAILURE,
            instance=instance.pk,
            kind="pdf",
            reason="unreadable",
        )
        context = {"organisation": share.organisation, "logged_in": True, "study": study}
        return render(request, "viewer/report_error.html", context)
    _record(request, share, Action.RECIPIENT_REPORT_VIEW, study, instance=instance.pk, kind="pdf")
    response = HttpResponse(pdf, content_type=reports.PDF_MIME_TYPE)
    response["Content-Disposition"] = 'inline; filename="report.pdf"'
    response["Content-Length"] = str(len(pdf))
    response["Cache-Control"] = "no-store"
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    return response
