"""A study's reports: listing them, reading them from storage, attaching a PDF (the parts that touch the
database and the instance store)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from django.conf import settings
from django.utils.translation import get_language
from pydicom import dcmread
from pydicom.dataset import Dataset

from radshare.core.storage import get_storage, instance_key
from radshare.dicom import encode
from radshare.imaging.reports.pdf import PATIENT_STUDY_KEYWORDS, encapsulate_pdf, pdf_bytes
from radshare.imaging.reports.sr import (
    SrDocument,
    document_datetime,
    observer_names,
    render_sr,
    sr_status,
    sr_title,
    verifiers,
)
from radshare.imaging.reports.values import (
    READ_ERRORS,
    REPORT_SOP_CLASSES,
    ReportError,
    as_str,
    code_meaning,
    is_pdf,
)
from radshare.organisations.models import Organisation
from radshare.studies.models import Instance, Series, Study
from radshare.studies.services import StoreResult, store_instance

logger = logging.getLogger(__name__)

REPORT_READ_ERRORS: tuple[type[Exception], ...] = (ReportError, *READ_ERRORS)


SUMMARY_TAGS = [
    "SOPClassUID",
    "ConceptNameCodeSequence",
    "DocumentTitle",
    "SeriesDescription",
    "CompletionFlag",
    "VerificationFlag",
    "ContentDate",
    "ContentTime",
    "InstanceCreationDate",
    "InstanceCreationTime",
    "ObservationDateTime",
    "AuthorObserverSequence",
    "VerifyingObserverSequence",
]


@dataclass(frozen=True)
class ReportSummary:
    """One line of a study's report list, read from the file's header (never its content tree or document)."""

    instance_pk: int
    kind: str  # "sr" | "pdf"
    title: str = ""
    date: dt.datetime | dt.date | None = None
    author: str = ""
    status: str = ""
    readable: bool = True


def read_instance(instance: Instance, *, specific_tags: list[str] | None = None) -> Dataset:
    """The stored file of ``instance``; ``ReportError`` when it cannot be read."""
    try:
        with get_storage().open(instance_key(instance.storage_key)) as stored:
            return dcmread(stored, specific_tags=specific_tags)
    except READ_ERRORS as exc:
        logger.warning("report instance %s unreadable: %s", instance.pk, type(exc).__name__)
        raise ReportError("the stored file cannot be read") from exc


def summarise(ds: Dataset, instance_pk: int) -> ReportSummary:
    """A report's title, date, author and status from its header (SR: PS3.3 C.17.2; PDF: C.24.2)."""
    sop_class = as_str(ds.get("SOPClassUID"))
    if is_pdf(sop_class):
        title = as_str(ds.get("DocumentTitle")) or code_meaning(ds, "ConceptNameCodeSequence")
        return ReportSummary(
            instance_pk=instance_pk,
            kind="pdf",
            title=title or as_str(ds.get("SeriesDescription")),
            date=document_datetime(ds),
        )
    return ReportSummary(
        instance_pk=instance_pk,
        kind="sr",
        title=sr_title(ds),
        date=document_datetime(ds),
        author="; ".join(observer_names(ds, []) or [v.name for v in verifiers(ds) if v.name]),
        status=sr_status(
            as_str(ds.get("CompletionFlag")).upper(), as_str(ds.get("VerificationFlag")).upper()
        ),
    )


def study_report_instances(study: Study) -> list[Instance]:
    """The study's SR documents and encapsulated PDFs, oldest first. Ingest counts them on the study and its series
    (``number_of_reports``): a study without any costs no query, and one with reports reads the instances of the
    series that hold them only, by the series index; the few rows are put in order here, not by the database."""
    if not study.number_of_reports:
        return []
    holding = Series.objects.filter(study=study, number_of_reports__gt=0).values("pk")
    found = Instance.objects.filter(series__in=holding, sop_class_uid__in=REPORT_SOP_CLASSES).order_by()
    return sorted(found, key=lambda instance: (instance.received_at, instance.pk))


def study_reports(study: Study) -> list[ReportSummary]:
    """One summary per report of ``study``; a file that cannot be read gets a placeholder line."""
    return [read_report(instance)[0] for instance in study_report_instances(study)]


# A report's stored file never changes, so what the pages show of it is read once per process and language and kept
# for a few minutes (the newest REPORTS_KEPT): a study list or study page with a report no longer reads and parses
# it from storage on every request (about a fifth of the viewer page's time). Callers list a study's report instances
# first (``study_report_instances``), so a kept report is shown only where its study is; and none outlives its
# study's destruction by more than KEEP_SECONDS in a process's memory.
REPORTS_KEPT = 256
KEEP_SECONDS = 300.0
_kept: OrderedDict[tuple[int, str, str], tuple[tuple[ReportSummary, SrDocument | None], float]] = (
    OrderedDict()
)
_kept_lock = threading.Lock()


def read_report(instance: Instance) -> tuple[ReportSummary, SrDocument | None]:
    """A report's summary and, for an SR, its document rendered for a page (a PDF is read by its header only). A
    file that cannot be read gets a placeholder summary, and is not kept: it is tried again next time."""
    key = (instance.pk, instance.storage_key, get_language() or "")
    now = time.monotonic()
    with _kept_lock:
        kept = _kept.get(key)
        if kept is not None and now - kept[1] <= KEEP_SECONDS:
            return kept[0]
    pdf = is_pdf(instance.sop_class_uid)
    try:
        ds = read_instance(instance, specific_tags=SUMMARY_TAGS if pdf else None)
        report = (summarise(ds, instance.pk), None if pdf else render_sr(ds))
    except REPORT_READ_ERRORS:
        return ReportSummary(instance_pk=instance.pk, kind="pdf" if pdf else "sr", readable=False), None
    with _kept_lock:
        _kept[key] = (report, now)
        _kept.move_to_end(key)
        while len(_kept) > REPORTS_KEPT:
            _kept.popitem(last=False)
    return report


@dataclass(frozen=True)
class AttachedReport:
    result: StoreResult
    size: int


def attach_pdf_report(study: Study, pdf: bytes, *, title: str) -> AttachedReport:
    """Wrap ``pdf`` as an Encapsulated PDF instance of ``study`` and store it like any received instance
    (``store_instance``: durable, indexed, part of the study's DICOM downloads).

    Patient and study attributes come from one stored instance of the study. Raises ``ReportError`` when the
    study has no readable instance, ``IngestError`` (studies.services) when storing fails.
    """
    sources = Instance.objects.filter(organisation_id=study.organisation_id, series__study=study).order_by(
        "pk"
    )
    source = None
    for instance in sources[:5]:  # the first readable one; a damaged file must not block the report
        try:
            source = read_instance(instance, specific_tags=list(PATIENT_STUDY_KEYWORDS))
            break
        except ReportError:
            continue
    if source is None:
        raise ReportError("no readable instance of the study to take the patient and study from")
    numbers = [n for n in Series.objects.filter(study=study).values_list("series_number", flat=True) if n]
    series_number = max([0, *numbers]) + 1  # type 1 in the Encapsulated Document Series (C.24.1)
    organisation: Organisation = study.organisation
    ds = encapsulate_pdf(pdf, source, title=title, series_number=series_number, institution=organisation.name)
    result = store_instance(organisation, encode(ds), source=Instance.Source.UPLOAD)
    return AttachedReport(result=result, size=len(pdf))


def upload_limit_bytes() -> int:
    return settings.RADSHARE.upload_max_mb * 1024 * 1024


def read_pdf(instance: Instance) -> bytes:
    """The PDF of a stored Encapsulated PDF instance (``ReportError`` when there is none)."""
    ds = read_instance(instance)
    try:
        return pdf_bytes(ds)
    except READ_ERRORS as exc:
        logger.warning("report instance %s: document unreadable: %s", instance.pk, type(exc).__name__)
        raise ReportError("the encapsulated document cannot be read") from exc


def read_sr(instance: Instance) -> SrDocument:
    """A stored SR instance, rendered (``ReportError`` when the file cannot be read)."""
    ds = read_instance(instance)
    try:
        return render_sr(ds)
    except READ_ERRORS as exc:
        logger.warning("report instance %s: SR content unreadable: %s", instance.pk, type(exc).__name__)
        raise ReportError("the SR content cannot be read") from exc
