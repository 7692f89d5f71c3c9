"""The download pages (docs/requirements.md S4.6-S4.8, B6.3, B6.5; docs/security.md A10, A13-A16, A18, R5;
docs/architecture.md "Downloads").

``choose`` is the download dialog (a page; no script needed): DICOM or JPEG, their sizes, downloads left today.
``download_all`` and ``download_study`` stream the ZIP built in ``media``: exact Content-Length, a server-chosen
ASCII file name, one HTTP Range (206) to resume, at most ``RADSHARE_DOWNLOADS_PER_DAY`` downloads per share and
calendar day (Europe/Amsterdam). A download is a ZIP request from byte 0. A Range request continues a counted
download only within that download's grant (``services.draw_grant``, docs/security.md A24): the same browser
session, the same ZIP (ETag), the same day, and at most one copy of its bytes plus a margin for bytes lost in
flight; any other range counts as a new download (and is refused at the limit). The count, the grant and the
"started" audit entry are written in one transaction before the first byte (A18).

Streaming under ASGI needs an async iterator (docs/architecture.md "Gotchas"): the ZIP's parts are pulled from a
worker thread (the event loop's executor), about 2 MiB at a time, so memory stays flat at any
size; the ZIP is written from the sizes and CRC-32s recorded at ingest (``media.zipwriter``), a range by
seeking. The counter and the grants are ``services``; the ZIP's contents are ``media``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.utils import translation
from django.views.decorators.http import require_safe

from radshare.audit.actions import Action
from radshare.audit.services import Outcome
from radshare.core.usage import Usage, count
from radshare.downloads import media, services
from radshare.imaging.models import InstanceRender
from radshare.recipients.services import refused_on_device, share_studies
from radshare.recipients.session import (
    Stage,
    recipient_required,
    record_recipient,
    refusal,
    session_hash,
    session_share,
)
from radshare.shares.models import Share
from radshare.shares.services import mark_downloaded
from radshare.studies.models import Instance, Study

logger = logging.getLogger(__name__)

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
# Modalities of objects that are not images: a file name names the images' modality ("CT", not "CT-SR").
_NOT_IMAGES = frozenset({"SR", "DOC", "KO", "PR"})


def _audit(
    request: HttpRequest, share: Share, action: Action, uids: list[str], outcome: str, **detail: Any
) -> None:
    # Never the code: the share by its id, the recipient by the method it logged in with (A16).
    record_recipient(action, request, share, outcome=outcome, study_uids=uids, **detail)


def _not_in_share(request: HttpRequest, share: Share, requested: int) -> Http404:
    # Another share's study and a missing one are refused alike, and recorded (A10).
    _audit(
        request,
        share,
        Action.RECIPIENT_DOWNLOAD_START,
        [],
        Outcome.DENIED,
        requested_id=requested,
        reason="not in the share",
    )
    return Http404()


def _refuse_start(
    request: HttpRequest,
    share: Share,
    studies: list[Study],
    kind: str,
    outcome: str,
    why: str,
    page: str,
    status: int,
) -> HttpResponse:
    """A download that does not start: audited with ``why``, answered with the refusal page for ``page``."""
    uids = [s.study_instance_uid for s in studies]
    _audit(request, share, Action.RECIPIENT_DOWNLOAD_START, uids, outcome, kind=kind, reason=why)
    return _refusal(request, share, page, status)


def _refusal(request: HttpRequest, share: Share, reason: str, status: int) -> HttpResponse:
    context = {
        "organisation": share.organisation,
        "logged_in": True,
        "reason": reason,
        "limit": services.daily_limit(),
    }
    return render(request, "downloads/refused.html", context, status=status)


# --- the dialog -------------------------------------------------------------------------------------------


def _broken(study: Study) -> int:
    """The study's instances marked broken, as ``share_studies`` counted them."""
    return int(getattr(study, "broken", 0))


def _sizes(studies: list[Study]) -> tuple[int, int]:
    """(DICOM ZIP, JPEG ZIP) sizes from the index, without reading a file: the page stays fast. The DICOM ZIP also
    carries the previews, about the size of the full-size JPEGs (the same files for images up to 1024 px); the
    exact sizes come with each download (Content-Length). Instances marked broken are left out of both."""
    jpeg = (
        InstanceRender.objects.filter(
            instance__series__study__in=studies,
            instance__broken_at__isnull=True,
            status=InstanceRender.Status.DONE,
        ).aggregate(total=Sum("jpeg_size"))["total"]
        or 0
    )
    broken = 0
    if any(_broken(s) for s in studies):
        broken = (
            Instance.objects.filter(series__study__in=studies, broken_at__isnull=False).aggregate(
                total=Sum("size")
            )["total"]
            or 0
        )
    return sum(s.size for s in studies) - broken + jpeg, jpeg


@require_safe
@recipient_required
def choose(request: HttpRequest, share: Share) -> HttpResponse:
    """The download dialog for all studies, or for one (``?study=<id>``, scoped to the share)."""
    studies = share_studies(share)
    study = None
    if "study" in request.GET:
        wanted = request.GET["study"]
        study = next((s for s in studies if str(s.pk) == wanted), None)
        if study is None:
            raise _not_in_share(request, share, int(wanted) if wanted.isdigit() else -1)
    chosen = [study] if study is not None else studies
    dicom_size, jpeg_size = _sizes(chosen)

    def url(kind: str) -> str:
        if study is None:
            return reverse("downloads:all", args=[kind])
        return reverse("downloads:study", args=[study.pk, kind])

    context = {
        "organisation": share.organisation,
        "logged_in": True,
        "study": study,
        "count": len(chosen),
        "left_out": sum(_broken(s) for s in chosen),
        "dicom_size": dicom_size,
        "jpeg_size": jpeg_size,
        "dicom_url": url(media.DICOM),
        "jpeg_url": url(media.JPEG),
        "refused_on_device": refused_on_device(request),
        "left": services.downloads_left(share),
        "limit": services.daily_limit(),
        "care_provider": share.recipient_type == Share.RecipientType.CARE_PROVIDER,
    }
    return render(request, "downloads/choose.html", context)


# --- the ZIP ----------------------------------------------------------------------------------------------


class UnsatisfiableRangeError(Exception):
    """A range that starts past the end (RFC 9110 15.5.17: 416)."""


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One byte range of ``Range: bytes=a-b | a- | -n`` as (first, last), inclusive; None for the whole file
    (no header, or one this server does not honour, such as several ranges: RFC 9110 14.2 allows ignoring it)."""
    match = _RANGE.fullmatch(header.strip())
    if not header or match is None or not (match[1] or match[2]):
        return None
    if not match[1]:  # the last n bytes
        suffix = int(match[2])
        if suffix == 0:
            raise UnsatisfiableRangeError
        return max(size - suffix, 0), size - 1
    first = int(match[1])
    last = int(match[2]) if match[2] else size - 1
    if first >= size:
        raise UnsatisfiableRangeError
    if last < first:
        return None
    return first, min(last, size - 1)


@dataclass
class _Download:
    share: Share
    layout: media.Layout
    first: int
    last: int
    partial: bool
    filename: str
    detail: dict[str, Any]
    session: str = ""  # the browser session's hash, for its grant
    grant: int | None = None  # the DownloadGrant this request drew its bytes from

    @property
    def length(self) -> int:
        return self.last - self.first + 1


def _filename(kind: str, studies: list[Study]) -> str:
    """Server-chosen and ASCII (A14): what a person recognises, never a name, number or description. One study: its
    modality and date (``CT-2025-03-14-dicom.zip``); several: "radiology" and the newest study's date."""
    modalities: list[str] = []
    if len(studies) == 1:
        for modality in studies[0].modalities:
            clean = re.sub(r"[^A-Z0-9]", "", modality.upper())[:8]
            if clean and clean not in _NOT_IMAGES and clean not in modalities:
                modalities.append(clean)
    dates = [s.study_date for s in studies if s.study_date is not None]
    parts = ["-".join(modalities[:3]) or "radiology", f"{max(dates):%Y-%m-%d}" if dates else "", kind]
    return "-".join(p for p in parts if p) + ".zip"


def _begin(request: HttpRequest, download: _Download) -> bool:
    """Continue a counted download within its grant, or count a new one (with its grant); record the start. All
    together or not at all (A18, R5, A24). False: a new download over today's limit."""
    share, etag = download.share, download.layout.etag
    with transaction.atomic():
        grant = None
        if download.first > 0:
            grant = services.draw_grant(share, download.session, etag, download.length)
        counted = grant is None
        if counted:
            if not services.count_download(share):
                return False
            # Usage counts downloads as the daily limit does: a resumed or ranged one is the same download.
            count(Usage.DOWNLOADS, organisation=share.organisation_id, kind=download.detail["kind"])
            mark_downloaded(share)
            grant = services.open_grant(
                share, download.session, etag, size=download.layout.size, drawn=download.length
            )
        download.grant = grant
        download.detail["counted"] = counted
        _audit(
            request,
            share,
            Action.RECIPIENT_DOWNLOAD_START,
            download.layout.study_uids,
            Outcome.SUCCESS,
            **download.detail,
        )
    return True


def _chosen(request: HttpRequest, share: Share, pk: int | None) -> list[Study]:
    """The studies of the download: all, or the one ``pk`` of the share."""
    studies = share_studies(share)
    if pk is None:
        return studies
    study = next((s for s in studies if s.pk == pk), None)
    if study is None:
        raise _not_in_share(request, share, pk)
    return [study]


def _layout(
    request: HttpRequest, share: Share, kind: str, studies: list[Study]
) -> media.Layout | HttpResponse:
    """The ZIP's layout, or the refusal when this device may not download or a stored file is missing."""
    if refused_on_device(request):
        return _refuse_start(request, share, studies, kind, Outcome.DENIED, "mobile device", "device", 403)
    try:
        return media.layout(kind, share, studies, translation.get_language() or settings.LANGUAGE_CODE)
    except media.MissingFileError:
        logger.error("share %s: a stored file of the %s download is missing", share.pk, kind)
        return _refuse_start(request, share, studies, kind, Outcome.FAILURE, "file missing", "missing", 500)


def _span(request: HttpRequest, layout: media.Layout) -> tuple[int, int] | HttpResponse | None:
    """The range asked for (None: all of it), or the 416 answer to one past the end."""
    header = request.headers.get("range", "")
    if request.headers.get("if-range", layout.etag) != layout.etag:
        header = ""  # the ZIP changed since the part the client holds: all of it again (RFC 9110 13.1.5)
    try:
        return parse_range(header, layout.size)
    except UnsatisfiableRangeError:
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{layout.size}"
        return response


def _prepare(request: HttpRequest, kind: str, pk: int | None) -> HttpResponseBase | _Download:
    """Everything before the first byte, in one thread with the database: the answer when it is not a ZIP."""
    share = session_share(request, Stage.IN)
    if share is None:
        return refusal(request)  # e.g. the share ended: the page that says so, not the start page
    if kind not in media.KINDS:
        raise Http404
    studies = _chosen(request, share, pk)
    layout = _layout(request, share, kind, studies)
    if isinstance(layout, HttpResponse):
        return layout
    span = _span(request, layout)
    if isinstance(span, HttpResponse):
        return span
    first, last = span or (0, layout.size - 1)
    download = _Download(
        share=share,
        layout=layout,
        first=first,
        last=last,
        partial=span is not None,
        filename=_filename(kind, studies),
        detail={"kind": kind, "size": layout.size, "range": f"{first}-{last}" if span is not None else ""},
    )
    if request.method == "HEAD":
        response = HttpResponse(status=206 if download.partial else 200, content_type="application/zip")
        _headers(response, download)
        return response
    download.session = session_hash(request)
    if not services.retry_locked(lambda: _begin(request, download)):
        return _refuse_start(request, share, studies, kind, Outcome.DENIED, "daily limit", "limit", 429)
    return download


def _headers(response: HttpResponseBase, download: _Download) -> None:
    response["Content-Length"] = str(download.last - download.first + 1)
    response["Content-Disposition"] = f'attachment; filename="{download.filename}"'
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "no-store"
    response["ETag"] = download.layout.etag
    if download.partial:
        response["Content-Range"] = f"bytes {download.first}-{download.last}/{download.layout.size}"


def _finish(request: HttpRequest, download: _Download, sent: int, error: str) -> None:
    complete = not error and sent == download.length
    kind, organisation = download.detail["kind"], download.share.organisation_id
    try:
        if download.grant is not None and sent < download.length:
            services.refund_grant(download.grant, download.length - sent)
        count(
            Usage.DOWNLOAD_BYTES, sent, organisation=organisation, kind=kind
        )  # what went out, cut off or not
        _audit(
            request,
            download.share,
            Action.RECIPIENT_DOWNLOAD_END,
            download.layout.study_uids,
            Outcome.SUCCESS if complete else Outcome.FAILURE,
            **download.detail,
            sent=sent,
            complete=complete,
            error=error,
        )
    except Exception:
        # The bytes are out already; the "started" entry stands. Only the ending is missing from the trail.
        logger.exception("share %s: the end of a download could not be recorded", download.share.pk)


async def _stream(request: HttpRequest, download: _Download) -> AsyncIterator[bytes]:
    reader = media.ZipReader(download.layout, download.first, download.last)
    loop = asyncio.get_running_loop()

    def read() -> asyncio.Future[list[bytes]]:
        # The loop's own executor, not asgiref's sync_to_async: reading touches no database and needs none of its
        # context shuttling, which cost more per piece than the read (measured: ~0.1 s of CPU per 870 MB ZIP).
        return loop.run_in_executor(None, reader.read)

    sent, error = 0, "cut off"
    # The next parts are read in a thread while these are sent: one piece (about 2 MiB) ahead only, so memory
    # stays at about two pieces. Each part goes out as it was read (a stored file whole, generated bytes joined):
    # no copy on the way, no CRC (docs/architecture.md "Performance budget").
    ahead = read()
    try:
        while parts := await ahead:
            ahead = read()
            for part in parts:
                yield part
                sent += len(part)
        error = ""
    except Exception as exc:  # noqa: BLE001 - e.g. a file gone mid-way: the response ends short, the client sees it
        error = type(exc).__name__
        logger.warning("share %s: download broke off: %s", download.share.pk, error)
    finally:
        ahead.cancel()  # a read still running in its thread ends on its own; its result is dropped
        # Also when the client went away (the task is cancelled): shielded, so the entry is still written.
        await asyncio.shield(sync_to_async(_finish)(request, download, sent, error))


async def _download(request: HttpRequest, kind: str, pk: int | None) -> HttpResponseBase:
    prepared = await sync_to_async(_prepare)(request, kind, pk)
    if isinstance(prepared, HttpResponseBase):
        return prepared
    response = StreamingHttpResponse(
        _stream(request, prepared), status=206 if prepared.partial else 200, content_type="application/zip"
    )
    _headers(response, prepared)
    return response


@require_safe
async def download_all(request: HttpRequest, kind: str) -> HttpResponseBase:
    return await _download(request, kind, None)


@require_safe
async def download_study(request: HttpRequest, pk: int, kind: str) -> HttpResponseBase:
    return await _download(request, kind, pk)
