"""WADO-RS of the share-scoped DICOMweb (docs/requirements.md B6.4; docs/security.md A10, A13, A16, A18, R5;
docs/architecture.md "Downloads").

* ``studies/{study}``, ``.../series/{series}``, ``.../instances/{sop}`` as ``multipart/related;
  type="application/dicom"`` with the original stored bytes (whatever ``transfer-syntax`` the Accept header names,
  as long as it is absent, ``*`` or the stored one: radshare never transcodes), streamed from an async generator
  with an exact Content-Length;
* ``.../metadata`` at each level (JSON read from the file headers, bulk data left out);
* ``.../instances/{sop}/frames/{list}`` as ``application/octet-stream`` parts, read straight from the stored pixel
  data (``frames``).

Counting (R5), in the same transaction as the audit entry (A18), against the downloads' daily counter
(radshare.downloads.services):
* every whole-study retrieve (``GET studies/{study}``) counts as one download;
* series, instance and frame retrieves count once per study, share and calendar day: the first of the day counts,
  later ones of that study that day do not (a viewer fetches a study instance by instance). A study counted today
  by a whole-study retrieve is counted for those too.
* metadata never counts. Over the daily limit: 429 with Retry-After.
Audit (A16): one ``recipient.dicomweb.retrieve`` per counted study retrieve (the entry is also what "counted today"
is looked up by), one ``recipient.dicomweb.metadata`` per study or series metadata request; never one per instance
or frame.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils import timezone
from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from radshare.audit.models import AuditEvent
from radshare.audit.services import Outcome
from radshare.core.storage import Storage, get_storage, instance_key
from radshare.downloads import services as downloads
from radshare.shares.models import Share
from radshare.shares.services import mark_downloaded
from radshare.studies.models import Study
from radshare.viewer.dicomweb.common import (
    DICOM_JSON,
    METADATA,
    RETRIEVE,
    Level,
    audit,
    dicomweb_view,
    error,
    gate,
    json_response,
    locate,
    not_found,
    secure_headers,
)
from radshare.viewer.dicomweb.frames import FrameError, read_frames
from radshare.viewer.dicomweb.negotiation import (
    MultipartReader,
    Part,
    accepts_json,
    accepts_multipart,
    frames_body,
    new_boundary,
)

logger = logging.getLogger(__name__)

BULK_THRESHOLD = 1024  # binary values above this size are left out of metadata (no BulkDataURI service)
_BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}


# --- metadata -----------------------------------------------------------------------------------------------


def _without_bulk(ds: Dataset) -> None:
    """Binary values over BULK_THRESHOLD go, also inside sequences (pixel data is not read at all)."""
    for element in list(ds):
        if element.VR == "SQ":
            for item in element.value:
                _without_bulk(item)
        elif element.VR in _BINARY_VRS and element.value is not None and len(element.value) > BULK_THRESHOLD:
            del ds[element.tag]


def instance_metadata(storage: Storage, key: str) -> dict[str, Any]:
    """One instance's DICOM JSON from its stored file's header; the stored transfer syntax as (0008,3002)."""
    with storage.open(key) as stored:
        ds = dcmread(stored, stop_before_pixels=True)
    _without_bulk(ds)
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax:
        ds.add(DataElement(0x00083002, "UI", str(syntax)))
    return ds.to_json_dict(bulk_data_threshold=BULK_THRESHOLD, suppress_invalid_tags=True)


def _metadata(request: HttpRequest, share: Share, level: str, uids: tuple[str, ...]) -> HttpResponse:
    located = locate(request, share, METADATA, level, uids)
    if isinstance(located, HttpResponse):
        return located
    study, instances = located
    if not accepts_json(request.headers.get("accept", "")):
        return error(406, f"only {DICOM_JSON} is offered")
    storage = get_storage()
    try:
        data = [instance_metadata(storage, instance_key(i.storage_key)) for i in instances]
    except (OSError, InvalidDicomError, ValueError, TypeError, KeyError, AttributeError):
        logger.error("share %s: a stored file of a DICOMweb metadata request could not be read", share.pk)
        return error(500, "a stored file could not be read")
    if level != Level.INSTANCE:  # one entry per study or series, not per instance (A16)
        audit(
            request,
            share,
            METADATA,
            [study.study_instance_uid],
            Outcome.SUCCESS,
            level=level,
            instances=len(data),
        )
    return json_response(data)


@dicomweb_view
def study_metadata(request: HttpRequest, share: Share, study: str) -> HttpResponse:
    return _metadata(request, share, Level.STUDY, (study,))


@dicomweb_view
def series_metadata(request: HttpRequest, share: Share, study: str, series: str) -> HttpResponse:
    return _metadata(request, share, Level.SERIES, (study, series))


@dicomweb_view
def instance_metadata_view(
    request: HttpRequest, share: Share, study: str, series: str, sop: str
) -> HttpResponse:
    return _metadata(request, share, Level.INSTANCE, (study, series, sop))


# --- counting -------------------------------------------------------------------------------------------------


def _entry_today(share: Share, study_uid: str, day: dt.date, outcome: str) -> bool:
    return AuditEvent.objects.filter(
        action=RETRIEVE,
        outcome=outcome,
        organisation_id=share.organisation_id,
        actor_label=f"share {share.pk}",
        timestamp__gte=timezone.now() - dt.timedelta(days=3),
        detail__share=share.pk,
        detail__study=study_uid,
        detail__day=day.isoformat(),
    ).exists()


def _seconds_to_midnight() -> int:
    now = timezone.localtime()
    midnight = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(int((midnight - now).total_seconds()), 1)


def count_retrieve(
    request: HttpRequest, share: Share, study: Study, level: str, instances: int, size: int
) -> bool:
    """Count a WADO-RS retrieve against the daily limit and record it, together or not at all (A18, R5).
    False: over the limit (the refusal recorded once per study and day for partial retrieves)."""
    uid = study.study_instance_uid
    whole = level == Level.STUDY

    def write() -> bool:
        day = downloads.today()
        detail = {"level": level, "study": uid, "day": day.isoformat()}
        with transaction.atomic():
            # One decision at a time per share and day: without it two first requests for a study could both count.
            downloads.lock_day(share, day)
            if not whole and _entry_today(share, uid, day, Outcome.SUCCESS):
                return True  # this study counted today already
            if not downloads.count_download(share):
                if whole or not _entry_today(share, uid, day, Outcome.DENIED):
                    audit(request, share, RETRIEVE, [uid], Outcome.DENIED, **detail, reason="daily limit")
                return False
            mark_downloaded(share)
            audit(
                request,
                share,
                RETRIEVE,
                [uid],
                Outcome.SUCCESS,
                **detail,
                counted=True,
                instances=instances,
                size=size,
            )
        return True

    return downloads.retry_locked(write)


# --- studies, series and instances ----------------------------------------------------------------------------


@dataclass
class _Retrieve:
    """A counted retrieve, ready to stream."""

    share: Share
    reader: MultipartReader


def _prepare_retrieve(
    request: HttpRequest, level: str, uids: tuple[str, ...]
) -> HttpResponseBase | _Retrieve:
    """Everything before the first byte, in one thread with the database: the answer when it is not the files."""
    share = gate(request)
    if isinstance(share, HttpResponse):
        return share
    located = locate(request, share, RETRIEVE, level, uids)
    if isinstance(located, HttpResponse):
        return located
    study, instances = located
    stored = {i.transfer_syntax_uid for i in instances}
    if not accepts_multipart(request.headers.get("accept", ""), "application/dicom", stored, native=True):
        return error(
            406, 'offered: multipart/related; type="application/dicom" (transfer-syntax=* or as stored)'
        )
    storage = get_storage()
    try:
        parts = [
            Part(key, storage.size(key), i.transfer_syntax_uid)
            for i in instances
            for key in [instance_key(i.storage_key)]
        ]
    except OSError:
        logger.error("share %s: a stored file of a DICOMweb retrieve is missing", share.pk)
        audit(
            request,
            share,
            RETRIEVE,
            [study.study_instance_uid],
            Outcome.FAILURE,
            level=level,
            reason="file missing",
        )
        return error(500, "a stored file could not be read")
    if not count_retrieve(request, share, study, level, len(parts), sum(p.size for p in parts)):
        return error(429, "daily download limit reached", Retry_After=str(_seconds_to_midnight()))
    return _Retrieve(share, MultipartReader(storage, parts, new_boundary()))


async def _stream(retrieve: _Retrieve) -> AsyncIterator[bytes]:
    read = sync_to_async(retrieve.reader.read, thread_sensitive=False)
    try:
        while chunk := await read():
            yield chunk
    except OSError as exc:  # a file gone mid-way: the response ends short, the client sees it
        logger.warning("share %s: a DICOMweb retrieve broke off: %s", retrieve.share.pk, type(exc).__name__)
    finally:
        retrieve.reader.close()


async def _retrieve(request: HttpRequest, level: str, uids: tuple[str, ...]) -> HttpResponseBase:
    prepared = await sync_to_async(_prepare_retrieve)(request, level, uids)
    if isinstance(prepared, HttpResponseBase):
        return prepared
    reader = prepared.reader
    response = StreamingHttpResponse(
        _stream(prepared),
        content_type=f'multipart/related; type="application/dicom"; boundary={reader.boundary}',
    )
    response["Content-Length"] = str(reader.length)
    return secure_headers(response)


async def retrieve_study(request: HttpRequest, study: str) -> HttpResponseBase:
    return await _retrieve(request, Level.STUDY, (study,))


async def retrieve_series(request: HttpRequest, study: str, series: str) -> HttpResponseBase:
    return await _retrieve(request, Level.SERIES, (study, series))


async def retrieve_instance(request: HttpRequest, study: str, series: str, sop: str) -> HttpResponseBase:
    return await _retrieve(request, Level.INSTANCE, (study, series, sop))


# --- frames -------------------------------------------------------------------------------------------------


def _frame_numbers(text: str) -> list[int] | None:
    if not re.fullmatch(r"\d{1,9}(,\d{1,9})*", text):
        return None
    return [int(n) for n in text.split(",")]


def _prepare_frames(request: HttpRequest, uids: tuple[str, ...], frame_list: str) -> HttpResponse:
    """The frames as stored in one multipart answer, counted like any retrieve of their study."""
    share = gate(request)
    if isinstance(share, HttpResponse):
        return share
    located = locate(request, share, RETRIEVE, Level.FRAMES, uids)
    if isinstance(located, HttpResponse):
        return located
    study, (instance,) = located
    wanted = _frame_numbers(frame_list)
    if wanted is None or not all(1 <= n <= instance.number_of_frames for n in wanted):
        return not_found()
    syntax = UID(instance.transfer_syntax_uid)
    native = not syntax.is_encapsulated and (syntax.is_little_endian or syntax.is_deflated)
    if not accepts_multipart(
        request.headers.get("accept", ""), "application/octet-stream", {str(syntax)}, native
    ):
        return error(
            406,
            'offered: multipart/related; type="application/octet-stream" (transfer-syntax=* or as stored)',
        )
    try:
        sent_syntax, frames = read_frames(
            get_storage(), instance_key(instance.storage_key), instance.number_of_frames, wanted
        )
    except (OSError, InvalidDicomError, FrameError, ValueError, TypeError, KeyError, AttributeError) as exc:
        logger.error("share %s: frames of a stored file could not be read: %s", share.pk, type(exc).__name__)
        return error(500, "the frames could not be read")
    if not count_retrieve(request, share, study, Level.FRAMES, 1, sum(len(f) for f in frames)):
        return error(429, "daily download limit reached", Retry_After=str(_seconds_to_midnight()))
    boundary = new_boundary()
    response = HttpResponse(
        frames_body(frames, sent_syntax, boundary),
        content_type=f'multipart/related; type="application/octet-stream"; boundary={boundary}',
    )
    secure_headers(response)
    return response


def retrieve_frames(request: HttpRequest, study: str, series: str, sop: str, frames: str) -> HttpResponseBase:
    return _prepare_frames(request, (study, series, sop), frames)
