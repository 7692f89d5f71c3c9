"""What every share-scoped DICOMweb endpoint shares (docs/requirements.md B6.4; docs/security.md A6, A7, A10,
A13, A16): the gate (off, not logged in, not GET), the look-ups of UIDs, always through the session's share, the
error and JSON answers, and the audit entries of refusals.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any

from django.conf import settings
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from radshare.audit.actions import Action
from radshare.audit.services import Outcome
from radshare.recipients.session import Stage, record_recipient, session_share, why_refused
from radshare.shares.models import Share
from radshare.studies.models import Instance, Study

QUERY = Action.RECIPIENT_DICOMWEB_QUERY
RETRIEVE = Action.RECIPIENT_DICOMWEB_RETRIEVE
METADATA = Action.RECIPIENT_DICOMWEB_METADATA
DICOM_JSON = "application/dicom+json"
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


class Level:
    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"
    FRAMES = "frames"


def enabled() -> bool:
    return settings.RADSHARE.recipient_dicomweb


# --- responses ------------------------------------------------------------------------------------------------


def secure_headers(response: HttpResponseBase) -> HttpResponseBase:
    """The headers of every DICOMweb answer."""
    # Patient data: never cached (A13). No CORS header at all: same-origin clients only.
    response["Cache-Control"] = "no-store"
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    return response


def error(status: int, message: str, **headers: str) -> HttpResponse:
    response = HttpResponse(
        json.dumps({"error": message}), status=status, content_type="application/json; charset=utf-8"
    )
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    secure_headers(response)
    return response


def not_found() -> HttpResponse:
    return error(404, "not found")


def json_response(data: Any, warnings: Iterable[str] = ()) -> HttpResponse:
    response = HttpResponse(json.dumps(data), content_type=f"{DICOM_JSON}; charset=utf-8")
    texts = [f'299 radshare "{w}"' for w in warnings]
    if texts:
        response["Warning"] = ", ".join(texts)
    secure_headers(response)
    return response


def gate(request: HttpRequest) -> Share | HttpResponse:
    """Off: 404; not a logged-in recipient: 401; the share ended during the session: 410; locked: 423; GET only:
    405. Else the session's share (its validity checked now, on every request: A7)."""
    if not enabled():
        return not_found()
    share = session_share(request, Stage.IN)
    if share is None:
        _page, status, message = why_refused(request)
        if status == 401:
            return error(401, message, WWW_Authenticate='Session realm="radshare recipient"')
        return error(status, message)
    if request.method != "GET":
        return error(405, "read-only: GET only", Allow="GET")
    return share


def dicomweb_view(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Past the gate, the view gets the session's share (every look-up is scoped to it)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        checked = gate(request)
        if isinstance(checked, HttpResponse):
            return checked
        return view(request, checked, *args, **kwargs)

    return wrapper


# --- audit ------------------------------------------------------------------------------------------------------


def audit(
    request: HttpRequest, share: Share, action: Action, uids: Iterable[str], outcome: str, **detail: Any
) -> None:
    # The same shape as the downloads' entries: the share by its id, never the code; no query values (they may
    # hold a name), only the keys.
    record_recipient(action, request, share, outcome=outcome, study_uids=uids, **detail)


def refused(
    request: HttpRequest, share: Share, action: Action, level: str, uids: tuple[str, ...]
) -> HttpResponse:
    # Another share's or organisation's UID and an unknown one are refused alike (A10), and recorded as an
    # intrusion signal. A malformed "UID" is not repeated into the trail.
    requested = [u[:64] if is_uid(u) else "(malformed)" for u in uids]
    audit(
        request,
        share,
        action,
        [],
        Outcome.DENIED,
        level=level,
        requested=requested,
        reason="not in the share",
    )
    return not_found()


# --- look-ups, always through the share ---------------------------------------------------------------------------


def is_uid(value: str) -> bool:
    return len(value) <= 64 and _UID.fullmatch(value) is not None


def share_study(share: Share, uid: str) -> Study | None:
    if not is_uid(uid):
        return None
    return (
        Study.objects.filter(
            share_studies__share=share, organisation_id=share.organisation_id, study_instance_uid=uid
        )
        .select_related("patient")
        .first()
    )


def study_instances(
    study: Study, series_uid: str | None = None, sop_uid: str | None = None
) -> list[Instance]:
    """The study's instances (of one series, or one instance), in series and instance order; [] for a UID that is
    not in the study. Never one marked broken (its file is missing or not what was received): as if absent."""
    if (series_uid is not None and not is_uid(series_uid)) or (sop_uid is not None and not is_uid(sop_uid)):
        return []
    instances = Instance.objects.filter(
        series__study=study, organisation_id=study.organisation_id, broken_at__isnull=True
    )
    if series_uid is not None:
        instances = instances.filter(series__series_instance_uid=series_uid)
    if sop_uid is not None:
        instances = instances.filter(sop_instance_uid=sop_uid)
    return list(
        instances.select_related("series").order_by(
            F("series__series_number").asc(nulls_last=True),
            "series_id",
            F("instance_number").asc(nulls_last=True),
            "pk",
        )
    )


def locate(
    request: HttpRequest, share: Share, action: Action, level: str, uids: tuple[str, ...]
) -> tuple[Study, list[Instance]] | HttpResponse:
    """The study and its instances named by ``uids`` (study, series, SOP instance), or the refusal (A10)."""
    study = share_study(share, uids[0])
    instances = study_instances(study, *uids[1:]) if study is not None else []
    if study is None or not instances:
        return refused(request, share, action, level, uids)
    return study, instances


# --- anything else under /r/dicomweb/ ---------------------------------------------------------------------------


def unknown(request: HttpRequest, rest: str = "") -> HttpResponseBase:
    """Any other path: past the gate, a 404 (off, not logged in and not GET answer as for the known paths)."""
    checked = gate(request)
    return checked if isinstance(checked, HttpResponse) else not_found()
