"""What is in a share's download (docs/requirements.md S4.6): its studies' series, instances and renders in a
stable order, and their reports as the offline copies show them (an SR rendered, a PDF taken out of its file).

Instances marked broken (``Instance.broken_at``, set by ``radshare storage check --repair`` when a stored file is
missing or changed) are left out and counted, so that the layout, built before the first byte, holds only files
that can be read (an exact Content-Length), and the ZIP says what is missing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from django.db.models import F
from django.utils.translation import gettext as _

from radshare.imaging import reports
from radshare.imaging.models import InstanceRender
from radshare.imaging.reports.study import REPORT_READ_ERRORS
from radshare.studies.models import Instance, Series, Study


@dataclass
class SeriesContent:
    """A series with its instances (in instance order) and their renders."""

    series: Series
    instances: list[Instance] = field(default_factory=list)
    renders: dict[int, InstanceRender] = field(default_factory=dict)  # by instance pk

    @property
    def label(self) -> str:
        number = self.series.series_number
        name = _("Series %(n)s") % {"n": number} if number is not None else _("Series")
        description = self.series.series_description
        return f"{name} - {description}" if description else name

    def frames(self) -> Iterator[tuple[Instance, int]]:
        """Every rendered frame of the series' images, in instance order."""
        for instance in self.instances:
            render = self.renders.get(instance.pk)
            if render is not None and render.status == InstanceRender.Status.DONE:
                for frame in range(render.frames):
                    yield instance, frame


@dataclass
class ReportContent:
    """A readable report: an SR as its rendered document, a PDF as its bytes."""

    instance: Instance
    title: str
    document: reports.SrDocument | None = None
    pdf: bytes | None = None


@dataclass
class StudyContent:
    """A study with the series that hold instances and its readable reports."""

    study: Study
    series: list[SeriesContent]
    reports: list[ReportContent]
    left_out: int = 0  # instances marked broken, not in the download

    @property
    def title(self) -> str:
        return self.study.study_description or ", ".join(self.study.modalities) or _("Study")


def share_contents(studies: list[Study]) -> list[StudyContent]:
    """The studies' series, instances (in a stable order) and renders in three queries; their reports read."""
    by_study: dict[int, list[SeriesContent]] = {s.pk: [] for s in studies}
    by_pk: dict[int, SeriesContent] = {}
    for series in Series.objects.filter(study__in=studies).order_by(
        F("series_number").asc(nulls_last=True), "pk"
    ):
        by_pk[series.pk] = SeriesContent(series)
        by_study[series.study_id].append(by_pk[series.pk])
    of_instance: dict[int, SeriesContent] = {}
    left_out = dict.fromkeys(by_study, 0)
    for instance in Instance.objects.filter(series__study__in=studies).order_by(
        F("instance_number").asc(nulls_last=True), "pk"
    ):
        group = by_pk[instance.series_id]
        if instance.broken_at is not None:
            left_out[group.series.study_id] += 1
            continue
        group.instances.append(instance)
        of_instance[instance.pk] = group
    for render in InstanceRender.objects.filter(
        instance__series__study__in=studies, instance__broken_at__isnull=True
    ):
        of_instance[render.instance_id].renders[render.instance_id] = render
    return [
        StudyContent(
            study, [s for s in by_study[study.pk] if s.instances], study_reports(study), left_out[study.pk]
        )
        for study in studies
    ]


def study_reports(study: Study) -> list[ReportContent]:
    """The study's reports, oldest first: an SR rendered, a PDF taken out of its instance; unreadable ones are
    left out of the offline copies (their DICOM files are in the DICOM ZIP all the same)."""
    found = []
    for instance in reports.study_report_instances(study):
        if instance.broken_at is not None:
            continue  # its file is missing or not what was received
        try:
            if reports.is_pdf(instance.sop_class_uid):
                ds = reports.read_instance(instance)
                title = reports.summarise(ds, instance.pk).title or _("Report")
                found.append(ReportContent(instance, title, pdf=reports.pdf_bytes(ds)))
            else:
                document = reports.read_sr(instance)
                found.append(ReportContent(instance, document.title, document=document))
        except REPORT_READ_ERRORS:
            continue
    return found
