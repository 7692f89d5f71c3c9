"""QIDO-RS of the share-scoped DICOMweb (docs/requirements.md B6.4; PS3.18 10.6; docs/security.md A10, A16).

``studies``, ``series``, ``instances`` at the root, ``studies/{study}/series``, ``studies/{study}/instances`` and
``studies/{study}/series/{series}/instances``, answered from the index with ``application/dicom+json``. Matching
follows PS3.4 C.2.2.2 (single value, list of UIDs, wildcards, date ranges, universal); ``limit``, ``offset``,
``includefield`` (everything the index holds is always returned) and ``fuzzymatching`` (not supported: a 299
warning) are understood. A known attribute the index cannot match on is ignored with a 299 warning; a parameter
that is no attribute at all is a 400. One ``recipient.dicomweb.query`` audit entry per request, with the keys and
never their values; a query never counts as a download.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest, HttpResponse, QueryDict
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from radshare.audit.services import Outcome
from radshare.recipients.services import share_studies
from radshare.shares.models import Share
from radshare.studies.models import Instance, Series, Study
from radshare.viewer.dicomweb.common import (
    DICOM_JSON,
    QUERY,
    Level,
    audit,
    dicomweb_view,
    error,
    is_uid,
    json_response,
    refused,
    share_study,
)
from radshare.viewer.dicomweb.negotiation import accepts_json

_DATE = re.compile(r"\d{8}")
_HEX_TAG = re.compile(r"[0-9A-Fa-f]{8}")
_CONTROL = ("limit", "offset", "includefield", "fuzzymatching")
_MATCHABLE_VRS = {"UI", "DA", "PN", "CS", "LO", "SH", "IS", "US"}


# --- records from the index ---------------------------------------------------------------------------------


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


def _study_record(study: Study, urls: _Urls, broken: int = 0) -> dict[str, Any]:
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
        "00201208": _element("IS", study.number_of_instances - broken),
    }


def _series_record(
    series: Series, study_record: dict[str, Any], study_uid: str, urls: _Urls, broken: int = 0
) -> dict[str, Any]:
    return {
        **study_record,
        "00080060": _element("CS", series.modality),
        "0008103E": _element("LO", series.series_description),
        "00081190": _element("UR", urls.series(study_uid, series.series_instance_uid)),
        "00180015": _element("CS", series.body_part_examined),
        "0020000E": _element("UI", series.series_instance_uid),
        "00200011": _element("IS", series.series_number),
        "00201209": _element("IS", series.number_of_instances - broken),
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
    # Instances marked broken (their file missing or changed) are neither listed nor counted.
    broken = Counter(
        Instance.objects.filter(series__study__in=studies, broken_at__isnull=False).values_list(
            "series__study_id", "series_id"
        )
    )
    in_study = Counter[int]()
    for (study_pk, _), n in broken.items():
        in_study[study_pk] += n
    study_records = {s.pk: _study_record(s, urls, in_study[s.pk]) for s in studies}
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
        s.pk: _series_record(s, study_records[s.study_id], uid_of[s.study_id], urls, broken[s.study_id, s.pk])
        for s in ordered
    }
    if level == Level.SERIES:
        return [series_records[s.pk] for s in ordered]
    series_of = {s.pk: s for s in ordered}
    series_place = {s.pk: n for n, s in enumerate(ordered)}
    instances = sorted(
        Instance.objects.filter(series__in=ordered, broken_at__isnull=True).only(
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


# --- matching (PS3.4 C.2.2.2) -------------------------------------------------------------------------------


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


# --- the searches ------------------------------------------------------------------------------------------


def _search(
    request: HttpRequest,
    share: Share,
    level: str,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> HttpResponse:
    if not accepts_json(request.headers.get("accept", "")):
        return error(406, f"only {DICOM_JSON} is offered")
    try:
        query = parse_query(request.GET)
    except QueryError as exc:
        return error(400, str(exc))
    if study_uid is not None:
        study = share_study(share, study_uid)
        uids = (study_uid,) if series_uid is None else (study_uid, series_uid)
        if study is None or (
            series_uid is not None
            and not (is_uid(series_uid) and study.series.filter(series_instance_uid=series_uid).exists())
        ):
            return refused(request, share, QUERY, level, uids)
        studies = [study]
    else:
        studies = share_studies(share)
    records = _records(request, studies, level, series_uid)
    page, warnings = run_query(records, query)
    found_studies = sorted({r["0020000D"]["Value"][0] for r in page})
    audit(
        request,
        share,
        QUERY,
        found_studies,
        Outcome.SUCCESS,
        level=level,
        keys=sorted(label for label, _, _ in query.keys.values()),
        results=len(page),
    )
    return json_response(page, warnings)


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
