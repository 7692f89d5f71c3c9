"""Share-scoped, read-only DICOMweb for the logged-in recipient (docs/requirements.md B6.4; docs/security.md
A6, A10, A13, A16, R5;
docs/architecture.md "Downloads"), so that a standard viewer or dicomweb-client can open a share.

Under ``/r/dicomweb/`` (the recipient's URL space; the paths hold Study, Series and SOP Instance UIDs, as DICOMweb
requires, and nothing else):

* QIDO-RS (PS3.18 10.6): ``studies``, ``series``, ``instances`` at the root, ``studies/{study}/series``,
  ``studies/{study}/instances`` and ``studies/{study}/series/{series}/instances``, answered from the index with
  ``application/dicom+json``. Matching follows PS3.4 C.2.2.2 (single value, list of UIDs, wildcards, date
  ranges, universal); ``limit``, ``offset``, ``includefield`` (everything the index holds is always returned)
  and ``fuzzymatching`` (not supported: a 299 warning) are understood. A known attribute the index cannot match
  on is ignored with a 299 warning; a parameter that is no attribute at all is a 400.
* WADO-RS: ``studies/{study}``, ``.../series/{series}``, ``.../instances/{sop}`` as ``multipart/related;
  type="application/dicom"`` with the original stored bytes (whatever ``transfer-syntax`` the Accept header
  names, as long as it is absent, ``*`` or the stored one: radshare never transcodes), streamed from an async
  generator with an exact Content-Length; ``.../metadata`` at each level (JSON read from the file headers, bulk
  data left out); ``.../instances/{sop}/frames/{list}`` as ``application/octet-stream`` parts, read straight
  from the stored pixel data (what OHIF asks for).

Everything is scoped to the session's share: a UID of another share, of another organisation, a malformed one and
an unknown one are the same 404 (A10), and the refusal is audited. Off (404 for every path) unless
``RADSHARE_RECIPIENT_DICOMWEB``; without a recipient session a 401 (clients are programs: no redirect).

Counting (docs/architecture.md "Downloads", R5), in the same transaction as the audit entry (A18):
* every whole-study retrieve (``GET studies/{study}``) counts as one download;
* series, instance and frame retrieves count once per study, share and calendar day: the first of the day
  counts, later ones of that study that day do not (a viewer fetches a study instance by instance). A study
  counted today by a whole-study retrieve is counted for those too.
* metadata and QIDO never count. Over the daily limit: 429 with Retry-After.
Audit (A16): one ``recipient.dicomweb.query`` per QIDO request, one ``recipient.dicomweb.retrieve`` per counted
study retrieve (the entry is also what "counted today" is looked up by), one ``recipient.dicomweb.metadata`` per
study or series metadata request; never one per instance or frame.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import secrets
import struct
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, BinaryIO

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.http import HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.urls import path, re_path
from django.utils import timezone
from pydicom import dcmread
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRLittleEndian

from radshare.audit.models import AuditEvent
from radshare.audit.services import Outcome
from radshare.core.storage import Storage, get_storage, instance_key
from radshare.recipients import downloads
from radshare.recipients.models import DownloadDay
from radshare.recipients.session import Stage, record_recipient, session_share
from radshare.shares.models import Share
from radshare.shares.services import mark_downloaded
from radshare.studies.models import Instance, Series, Study

logger = logging.getLogger(__name__)

QUERY = "recipient.dicomweb.query"
RETRIEVE = "recipient.dicomweb.retrieve"
METADATA = "recipient.dicomweb.metadata"
DICOM_JSON = "application/dicom+json"
CHUNK = 1024 * 1024
BULK_THRESHOLD = 1024  # binary values above this size are left out of metadata (no BulkDataURI service)
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_DATE = re.compile(r"\d{8}")
_HEX_TAG = re.compile(r"[0-9A-Fa-f]{8}")
_CONTROL = ("limit", "offset", "includefield", "fuzzymatching")
_MATCHABLE_VRS = {"UI", "DA", "PN", "CS", "LO", "SH", "IS", "US"}
_BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
_PIXEL_DATA = 0x7FE00010


class Level:
    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"
    FRAMES = "frames"


def enabled() -> bool:
    return settings.RADSHARE.recipient_dicomweb


# --- responses ------------------------------------------------------------------------------------------------


def _headers(response: HttpResponseBase) -> HttpResponseBase:
    # Patient data: never cached (A13). No CORS header at all: same-origin clients only.
    response["Cache-Control"] = "no-store"
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    return response


def _error(status: int, message: str, **headers: str) -> HttpResponse:
    response = HttpResponse(
        json.dumps({"error": message}), status=status, content_type="application/json; charset=utf-8"
    )
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    _headers(response)
    return response


def _not_found() -> HttpResponse:
    return _error(404, "not found")


def _json(data: Any, warnings: Iterable[str] = ()) -> HttpResponse:
    response = HttpResponse(json.dumps(data), content_type=f"{DICOM_JSON}; charset=utf-8")
    texts = [f'299 radshare "{w}"' for w in warnings]
    if texts:
        response["Warning"] = ", ".join(texts)
    _headers(response)
    return response


def _gate(request: HttpRequest) -> Share | HttpResponse:
    """Off: 404; not a logged-in recipient (or the share ended): 401; GET only: 405. Else the session's share
    (its validity checked now, on every request: A7)."""
    if not enabled():
        return _not_found()
    share = session_share(request, Stage.IN)
    if share is None:
        return _error(401, "not logged in", WWW_Authenticate='Session realm="radshare recipient"')
    if request.method != "GET":
        return _error(405, "read-only: GET only", Allow="GET")
    return share


def dicomweb_view(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        gate = _gate(request)
        if isinstance(gate, HttpResponse):
            return gate
        return view(request, gate, *args, **kwargs)

    return wrapper


# --- audit ------------------------------------------------------------------------------------------------------


def _audit(
    request: HttpRequest, share: Share, action: str, uids: Iterable[str], outcome: str, **detail: Any
) -> None:
    # The same shape as the downloads' entries: the share by its id, never the code; no query values (they may
    # hold a name), only the keys.
    record_recipient(action, request, share, outcome=outcome, study_uids=uids, **detail)


def _refused(
    request: HttpRequest, share: Share, action: str, level: str, uids: tuple[str, ...]
) -> HttpResponse:
    # Another share's or organisation's UID and an unknown one are refused alike (A10), and recorded as an
    # intrusion signal. A malformed "UID" is not repeated into the trail.
    requested = [u[:64] if _is_uid(u) else "(malformed)" for u in uids]
    _audit(
        request,
        share,
        action,
        [],
        Outcome.DENIED,
        level=level,
        requested=requested,
        reason="not in the share",
    )
    return _not_found()


# --- negotiation --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaRange:
    type: str
    params: dict[str, str]


def media_ranges(header: str) -> list[MediaRange]:
    """The Accept header's media ranges, those with q=0 left out."""
    ranges = []
    for item in header.split(","):
        pieces = [p.strip() for p in item.split(";")]
        if not pieces[0]:
            continue
        params = {}
        for piece in pieces[1:]:
            name, _, value = piece.partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        try:
            if float(params.get("q", "1")) <= 0:
                continue
        except ValueError:
            continue
        ranges.append(MediaRange(pieces[0].lower(), params))
    return ranges


def accepts_json(header: str) -> bool:
    if not header.strip():
        return True
    wanted = {DICOM_JSON, "application/json", "application/*", "*/*"}
    return any(r.type in wanted for r in media_ranges(header))


def accepts_multipart(header: str, part_type: str, stored: set[str], native: bool) -> bool:
    """Whether the client takes ``multipart/related; type=<part_type>`` parts as stored. A named transfer syntax
    must be every part's stored one; ``*`` takes any. Without one, DICOM files go as stored (radshare does not
    transcode) and frames only when they are uncompressed little endian (``native``)."""
    if not header.strip():
        return part_type == "application/dicom" or native
    for r in media_ranges(header):
        if r.type in ("*/*", "multipart/*") or (r.type == "multipart/related" and "type" not in r.params):
            if part_type == "application/dicom" or native:
                return True
            continue
        if r.type != "multipart/related" or r.params["type"].lower() not in (part_type, "*/*"):
            continue
        syntax = r.params.get("transfer-syntax")
        if syntax == "*" or (syntax is not None and stored == {syntax}):
            return True
        if syntax is None and (part_type == "application/dicom" or native):
            return True
    return False


# --- look-ups, always through the share ---------------------------------------------------------------------------


def _is_uid(value: str) -> bool:
    return len(value) <= 64 and _UID.fullmatch(value) is not None


def _share_study(share: Share, uid: str) -> Study | None:
    if not _is_uid(uid):
        return None
    return (
        Study.objects.filter(
            share_studies__share=share, organisation_id=share.organisation_id, study_instance_uid=uid
        )
        .select_related("patient")
        .first()
    )


def _instances(study: Study, series_uid: str | None = None, sop_uid: str | None = None) -> list[Instance]:
    """The study's instances (of one series, or one instance), in series and instance order; [] for a UID that is
    not in the study."""
    if (series_uid is not None and not _is_uid(series_uid)) or (sop_uid is not None and not _is_uid(sop_uid)):
        return []
    instances = Instance.objects.filter(series__study=study, organisation_id=study.organisation_id)
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


def _locate(
    request: HttpRequest, share: Share, action: str, level: str, uids: tuple[str, ...]
) -> tuple[Study, list[Instance]] | HttpResponse:
    study = _share_study(share, uids[0])
    instances = _instances(study, *uids[1:]) if study is not None else []
    if study is None or not instances:
        return _refused(request, share, action, level, uids)
    return study, instances


# --- QIDO-RS: records from the index ----------------------------------------------------------------------------


def _element(vr: str, *values: Any) -> dict[str, Any]:
    present = [v for v in values if v is not None and v != ""]
    return {"vr": vr, "Value": present} if present else {"vr": vr}


def _person(vr_value: str) -> dict[str, Any]:
    return {"vr": "PN", "Value": [{"Alphabetic": vr_value}]} if vr_value else {"vr": "PN"}


def _da(value: dt.date | None) -> str | None:
    return value.strftime("%Y%m%d") if value is not None else None


class _Urls:
    """Retrieve URLs (0008,1190), absolute, as the request reached us."""

    def __init__(self, request: HttpRequest) -> None:
        self.base = request.build_absolute_uri("/r/dicomweb")

    def study(self, study: str) -> str:
        return f"{self.base}/studies/{study}"

    def series(self, study: str, series: str) -> str:
        return f"{self.study(study)}/series/{series}"

    def instance(self, study: str, series: str, sop: str) -> str:
        return f"{self.series(study, series)}/instances/{sop}"


def _study_record(study: Study, urls: _Urls) -> dict[str, Any]:
    patient = study.patient
    return {
        "00080020": _element("DA", _da(study.study_date)),
        "00080030": _element("TM", study.study_time),
        "00080050": _element("SH", study.accession_number),
        "00080056": _element("CS", "ONLINE"),
        "00080061": _element("CS", *study.modalities),
        "00080090": _person(study.referring_physician_name),
        "00081030": _element("LO", study.study_description),
        "00081190": _element("UR", urls.study(study.study_instance_uid)),
        "00100010": _person(patient.patient_name),
        "00100020": _element("LO", patient.patient_id),
        "00100021": _element("LO", patient.issuer_of_patient_id),
        "00100030": _element("DA", _da(patient.patient_birth_date)),
        "00100040": _element("CS", patient.patient_sex),
        "0020000D": _element("UI", study.study_instance_uid),
        "00201206": _element("IS", study.number_of_series),
        "00201208": _element("IS", study.number_of_instances),
    }


def _series_record(
    series: Series, study_record: dict[str, Any], study_uid: str, urls: _Urls
) -> dict[str, Any]:
    return {
        **study_record,
        "00080060": _element("CS", series.modality),
        "0008103E": _element("LO", series.series_description),
        "00081190": _element("UR", urls.series(study_uid, series.series_instance_uid)),
        "00180015": _element("CS", series.body_part_examined),
        "0020000E": _element("UI", series.series_instance_uid),
        "00200011": _element("IS", series.series_number),
        "00201209": _element("IS", series.number_of_instances),
    }


def _instance_record(
    instance: Instance, series_record: dict[str, Any], study_uid: str, series_uid: str, urls: _Urls
) -> dict[str, Any]:
    return {
        **series_record,
        "00080016": _element("UI", instance.sop_class_uid),
        "00080018": _element("UI", instance.sop_instance_uid),
        "00081190": _element("UR", urls.instance(study_uid, series_uid, instance.sop_instance_uid)),
        "00083002": _element("UI", instance.transfer_syntax_uid),
        "00200013": _element("IS", instance.instance_number),
        "00280008": _element("IS", instance.number_of_frames),
        "00280010": _element("US", instance.rows),
        "00280011": _element("US", instance.columns),
    }


def _records(
    request: HttpRequest, studies: list[Study], level: str, series_uid: str | None = None
) -> list[Any]:
    urls = _Urls(request)
    study_records = {s.pk: _study_record(s, urls) for s in studies}
    if level == Level.STUDY:
        return [study_records[s.pk] for s in studies]
    place = {s.pk: n for n, s in enumerate(studies)}
    uid_of = {s.pk: s.study_instance_uid for s in studies}
    series_list = Series.objects.filter(study__in=studies)
    if series_uid is not None:
        series_list = series_list.filter(series_instance_uid=series_uid)
    ordered = sorted(
        series_list,
        key=lambda s: (place[s.study_id], s.series_number is None, s.series_number or 0, s.pk),
    )
    series_records = {
        s.pk: _series_record(s, study_records[s.study_id], uid_of[s.study_id], urls) for s in ordered
    }
    if level == Level.SERIES:
        return [series_records[s.pk] for s in ordered]
    series_of = {s.pk: s for s in ordered}
    series_place = {s.pk: n for n, s in enumerate(ordered)}
    instances = sorted(
        Instance.objects.filter(series__in=ordered).only(
            "series_id",
            "sop_class_uid",
            "sop_instance_uid",
            "transfer_syntax_uid",
            "instance_number",
            "number_of_frames",
            "rows",
            "columns",
        ),
        key=lambda i: (series_place[i.series_id], i.instance_number is None, i.instance_number or 0, i.pk),
    )
    out = []
    for instance in instances:
        series = series_of[instance.series_id]
        out.append(
            _instance_record(
                instance,
                series_records[series.pk],
                uid_of[series.study_id],
                series.series_instance_uid,
                urls,
            )
        )
    return out


# --- QIDO-RS: matching (PS3.4 C.2.2.2) -------------------------------------------------------------------------


class QueryError(Exception):
    """A query the client must fix (400)."""


@dataclass
class Query:
    keys: dict[str, tuple[str, str, list[str]]] = field(default_factory=dict)  # tag -> (name, VR, values)
    limit: int | None = None
    offset: int = 0
    warnings: list[str] = field(default_factory=list)


def _non_negative(params: QueryDict, name: str) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise QueryError(f"{name} must be a non-negative integer")
    return int(value)


def _tag_of(name: str) -> int | None:
    if _HEX_TAG.fullmatch(name):
        return int(name, 16)
    return tag_for_keyword(name)


def parse_query(params: QueryDict) -> Query:
    query = Query(limit=_non_negative(params, "limit"), offset=_non_negative(params, "offset") or 0)
    if params.get("fuzzymatching", "").lower() == "true":
        query.warnings.append(
            "The fuzzymatching parameter is not supported. Only literal matching has been performed."
        )
    for name, values in params.lists():
        if name in _CONTROL:
            continue
        tag = _tag_of(name.split(".")[0])
        if tag is None:
            raise QueryError(f"unknown query parameter: {name[:64]}")
        if "." in name:
            query.warnings.append(f"Sequence matching ({name[:64]}) is not supported; the key was ignored.")
            continue
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = "UN"
        label = keyword_for_tag(tag) or f"{tag:08X}"
        split: list[str] = []
        for value in values:
            split += re.split(r"[\\,]", value) if vr == "UI" else value.split("\\")
        for value in split:
            _check_value(label, vr, value)
        query.keys[f"{tag:08X}"] = (label, vr, split)
    return query


def _check_value(label: str, vr: str, value: str) -> None:
    if value in ("", "*"):
        return
    if vr == "DA":
        first, dash, last = value.partition("-")
        if not all(_DATE.fullmatch(d) for d in (first, last) if d) or (dash and not (first or last)):
            raise QueryError(f"{label}: a date is YYYYMMDD, a range YYYYMMDD-YYYYMMDD")
        if not dash and not first:
            raise QueryError(f"{label}: a date is YYYYMMDD")
    elif vr in ("IS", "US") and not re.fullmatch(r"[+-]?\d+", value.strip()):
        raise QueryError(f"{label} must be an integer")


def wildcard_match(pattern: str, text: str) -> bool:
    """PS3.4 C.2.2.2.4 wildcards: ``*`` any run of characters, ``?`` one character. Linear in practice and at
    worst len(pattern) x len(text) (no regular expression: "*a*a*a...b" would backtrack exponentially)."""
    p = t = 0
    star, resume = -1, 0
    while t < len(text):
        if p < len(pattern) and pattern[p] == "*":
            star, resume = p, t
            p += 1
        elif p < len(pattern) and pattern[p] in ("?", text[t]):
            p += 1
            t += 1
        elif star >= 0:
            p, resume = star + 1, resume + 1
            t = resume
        else:
            return False
    return all(c == "*" for c in pattern[p:])


def _match_one(vr: str, have: Any, value: str) -> bool:
    if vr == "UI":
        return bool(have == value)
    if vr == "DA":
        first, dash, last = value.partition("-")
        if not dash:
            return bool(have == value)
        return (not first or have >= first) and (not last or have <= last)
    if vr in ("IS", "US"):
        return bool(have == int(value))
    if vr == "PN":
        if "*" in value or "?" in value:
            return wildcard_match(value.casefold(), str(have).casefold())
        return bool(have.casefold() == value.casefold())
    if "*" in value or "?" in value:
        return wildcard_match(value, str(have))
    return bool(have == value)


def matches(record_: dict[str, Any], tag: str, vr: str, values: list[str]) -> bool:
    if any(v in ("", "*") for v in values):
        return True  # universal matching
    have = record_.get(tag, {}).get("Value", [])
    if vr == "PN":
        have = [h.get("Alphabetic", "") for h in have]
    return any(_match_one(vr, h, v) for h in have for v in values)


def run_query(records: list[dict[str, Any]], query: Query) -> tuple[list[dict[str, Any]], list[str]]:
    """The records that match every key, the page asked for, and the warnings for the response."""
    warnings = list(query.warnings)
    known = set().union(*records) if records else set()
    active = []
    ignored = []
    for tag, (label, vr, values) in query.keys.items():
        if all(v in ("", "*") for v in values):
            continue
        if vr not in _MATCHABLE_VRS or (records and tag not in known) or tag == "00081190":
            ignored.append(label)
            continue
        active.append((tag, vr, values))
    if ignored:
        warnings.append(f"Not supported as matching keys here, ignored: {', '.join(sorted(ignored))}")
    found = [r for r in records if all(matches(r, tag, vr, values) for tag, vr, values in active)]
    end = None if query.limit is None else query.offset + query.limit
    page = found[query.offset : end]
    if end is not None and end < len(found):
        warnings.append("There are additional results that can be requested.")
    return page, warnings


def _search(
    request: HttpRequest,
    share: Share,
    level: str,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> HttpResponse:
    if not accepts_json(request.headers.get("accept", "")):
        return _error(406, f"only {DICOM_JSON} is offered")
    try:
        query = parse_query(request.GET)
    except QueryError as exc:
        return _error(400, str(exc))
    if study_uid is not None:
        study = _share_study(share, study_uid)
        uids = (study_uid,) if series_uid is None else (study_uid, series_uid)
        if study is None or (
            series_uid is not None
            and not (_is_uid(series_uid) and study.series.filter(series_instance_uid=series_uid).exists())
        ):
            return _refused(request, share, QUERY, level, uids)
        studies = [study]
    else:
        studies = downloads.share_studies(share)
    records = _records(request, studies, level, series_uid)
    page, warnings = run_query(records, query)
    found_studies = sorted({r["0020000D"]["Value"][0] for r in page})
    _audit(
        request,
        share,
        QUERY,
        found_studies,
        Outcome.SUCCESS,
        level=level,
        keys=sorted(label for label, _, _ in query.keys.values()),
        results=len(page),
    )
    return _json(page, warnings)


@dicomweb_view
def search_studies(request: HttpRequest, share: Share) -> HttpResponse:
    return _search(request, share, Level.STUDY)


@dicomweb_view
def search_series(request: HttpRequest, share: Share, study: str | None = None) -> HttpResponse:
    return _search(request, share, Level.SERIES, study)


@dicomweb_view
def search_instances(
    request: HttpRequest, share: Share, study: str | None = None, series: str | None = None
) -> HttpResponse:
    return _search(request, share, Level.INSTANCE, study, series)


# --- WADO-RS: metadata ----------------------------------------------------------------------------------------


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
    located = _locate(request, share, METADATA, level, uids)
    if isinstance(located, HttpResponse):
        return located
    study, instances = located
    if not accepts_json(request.headers.get("accept", "")):
        return _error(406, f"only {DICOM_JSON} is offered")
    storage = get_storage()
    try:
        data = [instance_metadata(storage, instance_key(i.storage_key)) for i in instances]
    except (OSError, InvalidDicomError, ValueError, TypeError, KeyError, AttributeError):
        logger.error("share %s: a stored file of a DICOMweb metadata request could not be read", share.pk)
        return _error(500, "a stored file could not be read")
    if level != Level.INSTANCE:  # one entry per study or series, not per instance (A16)
        _audit(
            request,
            share,
            METADATA,
            [study.study_instance_uid],
            Outcome.SUCCESS,
            level=level,
            instances=len(data),
        )
    return _json(data)


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
            DownloadDay.objects.get_or_create(share=share, day=day)
            # One decision at a time per share and day: the row lock on PostgreSQL; SQLite transactions are
            # IMMEDIATE, so writers queue already. Without it two first requests for a study could both count.
            list(DownloadDay.objects.select_for_update().filter(share=share, day=day).values_list("pk"))
            if not whole and _entry_today(share, uid, day, Outcome.SUCCESS):
                return True  # this study counted today already
            if not downloads.count_download(share):
                if whole or not _entry_today(share, uid, day, Outcome.DENIED):
                    _audit(request, share, RETRIEVE, [uid], Outcome.DENIED, **detail, reason="daily limit")
                return False
            mark_downloaded(share)
            _audit(
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

    return downloads._retry_locked(write)


# --- WADO-RS: instances ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Part:
    key: str
    size: int
    syntax: str


class MultipartReader:
    """``multipart/related; type="application/dicom"`` of stored files, read in pieces of about CHUNK bytes from a
    worker thread; one file open at a time."""

    def __init__(self, storage: Storage, parts: list[_Part], boundary: str) -> None:
        self.storage = storage
        self.parts = parts
        self.boundary = boundary
        self._pieces = self._generate()
        self._open: BinaryIO | None = None

    def header(self, part: _Part) -> bytes:
        return (
            f"--{self.boundary}\r\nContent-Type: application/dicom; transfer-syntax={part.syntax}\r\n"
            f"Content-Length: {part.size}\r\n\r\n"
        ).encode("ascii")

    @property
    def closing(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode("ascii")

    @property
    def length(self) -> int:
        return sum(len(self.header(p)) + p.size + 2 for p in self.parts) + len(self.closing)

    def _generate(self) -> Iterator[bytes]:
        for part in self.parts:
            yield self.header(part)
            with self.storage.open(part.key) as handle:
                self._open = handle
                left = part.size
                while left:
                    data = handle.read(min(CHUNK, left))
                    if not data:
                        raise OSError("a stored file ended early")
                    left -= len(data)
                    yield data
            self._open = None
            yield b"\r\n"
        yield self.closing

    def read(self) -> bytes:
        """The next piece: about CHUNK bytes (small files together, so a thread hop carries a useful amount);
        b"" at the end."""
        out = bytearray()
        for piece in self._pieces:
            out += piece
            if len(out) >= CHUNK:
                break
        return bytes(out)

    def close(self) -> None:
        if self._open is not None:
            self._open.close()


@dataclass
class _Retrieve:
    share: Share
    reader: MultipartReader


def _prepare_retrieve(
    request: HttpRequest, level: str, uids: tuple[str, ...]
) -> HttpResponseBase | _Retrieve:
    """Everything before the first byte, in one thread with the database: the answer when it is not the files."""
    gate = _gate(request)
    if isinstance(gate, HttpResponse):
        return gate
    share = gate
    located = _locate(request, share, RETRIEVE, level, uids)
    if isinstance(located, HttpResponse):
        return located
    study, instances = located
    stored = {i.transfer_syntax_uid for i in instances}
    if not accepts_multipart(request.headers.get("accept", ""), "application/dicom", stored, native=True):
        return _error(
            406, 'offered: multipart/related; type="application/dicom" (transfer-syntax=* or as stored)'
        )
    storage = get_storage()
    try:
        parts = [
            _Part(key, storage.size(key), i.transfer_syntax_uid)
            for i in instances
            for key in [instance_key(i.storage_key)]
        ]
    except OSError:
        logger.error("share %s: a stored file of a DICOMweb retrieve is missing", share.pk)
        _audit(
            request,
            share,
            RETRIEVE,
            [study.study_instance_uid],
            Outcome.FAILURE,
            level=level,
            reason="file missing",
        )
        return _error(500, "a stored file could not be read")
    if not count_retrieve(request, share, study, level, len(parts), sum(p.size for p in parts)):
        return _error(429, "daily download limit reached", Retry_After=str(_seconds_to_midnight()))
    return _Retrieve(share, MultipartReader(storage, parts, f"radshare-{secrets.token_hex(16)}"))


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
    return _headers(response)


async def retrieve_study(request: HttpRequest, study: str) -> HttpResponseBase:
    return await _retrieve(request, Level.STUDY, (study,))


async def retrieve_series(request: HttpRequest, study: str, series: str) -> HttpResponseBase:
    return await _retrieve(request, Level.SERIES, (study, series))


async def retrieve_instance(request: HttpRequest, study: str, series: str, sop: str) -> HttpResponseBase:
    return await _retrieve(request, Level.INSTANCE, (study, series, sop))


# --- WADO-RS: frames ------------------------------------------------------------------------------------------


class FrameError(Exception):
    """The stored pixel data cannot be cut into frames here."""


def _frame_length(ds: Dataset) -> int:
    bits = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * int(ds.BitsAllocated)
    if bits % 8:
        raise FrameError("frames of this pixel data are not byte aligned")
    return bits // 8


def _cut(
    ds: Dataset, buffer: bytes | BinaryIO, encapsulated: bool, count: int, wanted: list[int], start: int
) -> list[bytes]:
    if encapsulated:
        offsets = None
        if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
            offsets = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
        return [get_frame(buffer, n - 1, number_of_frames=count, extended_offsets=offsets) for n in wanted]
    length = _frame_length(ds)
    frames = []
    for n in wanted:
        if isinstance(buffer, bytes):
            data = buffer[(n - 1) * length : n * length]
        else:
            buffer.seek(start + (n - 1) * length)
            data = buffer.read(length)
        if len(data) != length:
            raise FrameError("the pixel data is shorter than its frames")
        frames.append(data)
    return frames


def read_frames(storage: Storage, key: str, count: int, wanted: list[int]) -> tuple[str, list[bytes]]:
    """The wanted frames (1-based) as stored, and the transfer syntax they are in. Only the header and those frames
    are read for little-endian files; others (deflated, big endian) are read whole."""
    with storage.open(key) as handle:
        ds = dcmread(handle, stop_before_pixels=True)
        syntax = UID(ds.file_meta.TransferSyntaxUID)
        if syntax.is_little_endian and not syntax.is_deflated:
            start = handle.tell()
            head = handle.read(12)
            group, element = struct.unpack("<HH", head[:4]) if len(head) == 12 else (0, 0)
            if (group << 16) | element != _PIXEL_DATA:
                raise FrameError("no pixel data")
            if syntax.is_implicit_VR:
                (length,) = struct.unpack("<I", head[4:8])
                value = start + 8
            else:
                (length,) = struct.unpack("<I", head[8:12])
                value = start + 12
            handle.seek(value)
            encapsulated = length == 0xFFFFFFFF
            return str(syntax), _cut(ds, handle, encapsulated, count, wanted, value)
        handle.seek(0)
        full = dcmread(handle)
    if "PixelData" not in full:
        raise FrameError("no pixel data")
    pixels = full.PixelData
    encapsulated = syntax.is_encapsulated
    if syntax.is_deflated:
        syntax = ExplicitVRLittleEndian  # inflated, the pixel data is plain little endian
    return str(syntax), _cut(full, pixels, encapsulated, count, wanted, 0)


def _frame_numbers(text: str) -> list[int] | None:
    if not re.fullmatch(r"\d{1,9}(,\d{1,9})*", text):
        return None
    return [int(n) for n in text.split(",")]


def _prepare_frames(request: HttpRequest, uids: tuple[str, ...], frame_list: str) -> HttpResponse:
    gate = _gate(request)
    if isinstance(gate, HttpResponse):
        return gate
    share = gate
    located = _locate(request, share, RETRIEVE, Level.FRAMES, uids)
    if isinstance(located, HttpResponse):
        return located
    study, (instance,) = located
    wanted = _frame_numbers(frame_list)
    if wanted is None or not all(1 <= n <= instance.number_of_frames for n in wanted):
        return _not_found()
    syntax = UID(instance.transfer_syntax_uid)
    native = not syntax.is_encapsulated and (syntax.is_little_endian or syntax.is_deflated)
    if not accepts_multipart(
        request.headers.get("accept", ""), "application/octet-stream", {str(syntax)}, native
    ):
        return _error(
            406,
            'offered: multipart/related; type="application/octet-stream" (transfer-syntax=* or as stored)',
        )
    try:
        sent_syntax, frames = read_frames(
            get_storage(), instance_key(instance.storage_key), instance.number_of_frames, wanted
        )
    except (OSError, InvalidDicomError, FrameError, ValueError, TypeError, KeyError, AttributeError) as exc:
        logger.error("share %s: frames of a stored file could not be read: %s", share.pk, type(exc).__name__)
        return _error(500, "the frames could not be read")
    if not count_retrieve(request, share, study, Level.FRAMES, 1, sum(len(f) for f in frames)):
        return _error(429, "daily download limit reached", Retry_After=str(_seconds_to_midnight()))
    boundary = f"radshare-{secrets.token_hex(16)}"
    body = b"".join(
        f"--{boundary}\r\nContent-Type: application/octet-stream; transfer-syntax={sent_syntax}\r\n"
        f"Content-Length: {len(frame)}\r\n\r\n".encode("ascii")
        + frame
        + b"\r\n"
        for frame in frames
    ) + f"--{boundary}--\r\n".encode("ascii")
    response = HttpResponse(
        body, content_type=f'multipart/related; type="application/octet-stream"; boundary={boundary}'
    )
    _headers(response)
    return response


def retrieve_frames(request: HttpRequest, study: str, series: str, sop: str, frames: str) -> HttpResponseBase:
    return _prepare_frames(request, (study, series, sop), frames)


# --- anything else under /r/dicomweb/ ---------------------------------------------------------------------------


def unknown(request: HttpRequest, rest: str = "") -> HttpResponseBase:
    gate = _gate(request)
    return gate if isinstance(gate, HttpResponse) else _not_found()


_S = "r/dicomweb/studies/<str:study>"
_SE = f"{_S}/series/<str:series>"
_I = f"{_SE}/instances/<str:sop>"

urlpatterns = [
    path("r/dicomweb/studies", search_studies, name="dicomweb_studies"),
    path("r/dicomweb/series", search_series, name="dicomweb_series"),
    path("r/dicomweb/instances", search_instances, name="dicomweb_instances"),
    path(_S, retrieve_study, name="dicomweb_study"),
    path(f"{_S}/metadata", study_metadata, name="dicomweb_study_metadata"),
    path(f"{_S}/series", search_series, name="dicomweb_study_series"),
    path(f"{_S}/instances", search_instances, name="dicomweb_study_instances"),
    path(_SE, retrieve_series, name="dicomweb_series_retrieve"),
    path(f"{_SE}/metadata", series_metadata, name="dicomweb_series_metadata"),
    path(f"{_SE}/instances", search_instances, name="dicomweb_series_instances"),
    path(_I, retrieve_instance, name="dicomweb_instance"),
    path(f"{_I}/metadata", instance_metadata_view, name="dicomweb_instance_metadata"),
    path(f"{_I}/frames/<str:frames>", retrieve_frames, name="dicomweb_frames"),
    re_path(r"^r/dicomweb(?:/(?P<rest>.*))?$", unknown, name="dicomweb_unknown"),
]
