"""The DICOM download: portable media (docs/requirements.md B6.3; docs/architecture.md "DICOM media ZIP"; PS3.10,
PS3.12 Annex F, IHE PDI).

The original files as received under conformant file ids (``DICOM/ST0001/SE0001/IM000001``: uppercase,
components of at most 8 characters), a ``DICOMDIR`` that references exactly those names (``dicomdir``), and
``INDEX.HTM`` + ``IHE_PDI/``: the offline viewer, previews and reports as plain HTML with relative links only, no
script, so a patient can look without installing anything. The DICOMDIR's UID is derived from the share, so every
byte is the same on every request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.template.loader import render_to_string
from django.utils import translation
from pydicom.uid import generate_uid

from radshare.core.storage import Storage, get_storage, instance_key, render_key
from radshare.downloads.media.archive import (
    DICOM,
    Entry,
    Layout,
    MissingFileError,
    complete,
    data_entry,
    file_entry,
    readme,
    recorded_render,
    zip_date_time,
)
from radshare.downloads.media.contents import SeriesContent, StudyContent, share_contents
from radshare.downloads.media.dicomdir import Source, dicomdir, directory_entries
from radshare.imaging import reports
from radshare.shares.models import Share
from radshare.studies.models import Study


@dataclass
class _Media:
    """What the layout collects while it walks the share: the DICOM files, the sources of their DICOMDIR records,
    and the offline viewer's files (under IHE_PDI/), each in ZIP order."""

    storage: Storage
    files: list[Entry] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    viewer: list[Entry] = field(default_factory=list)

    def add_page(self, name: str, html: str) -> None:
        self.viewer.append(data_entry(f"IHE_PDI/{name}", html.encode()))


def _add_files(media: _Media, item: StudyContent, group: SeriesContent, si: int, sj: int) -> None:
    """The series' original files under DICOM/, and what their DICOMDIR records are made of."""
    for k, instance in enumerate(group.instances, 1):
        file_id = f"DICOM/ST{si:04d}/SE{sj:04d}/IM{k:06d}"
        key = instance_key(instance.storage_key)
        recorded = (
            instance.size,
            instance.crc32,
        )  # a CRC not recorded (None) is read once (archive.complete)
        media.files.append(file_entry(media.storage, file_id, key, recorded, sha256=instance.sha256))
        media.sources.append((file_id, instance, group.series, item.study, (si, sj, k)))


def _add_previews(
    media: _Media, study_dir: str, series_dir: str, group: SeriesContent
) -> list[dict[str, Any]]:
    """The series' previews under IHE_PDI/<study>/<series>/, for its page: their names and sizes."""
    images: list[dict[str, Any]] = []
    for instance, frame in group.frames():
        render = group.renders[instance.pk]
        name = f"{series_dir}/IM{len(images) + 1:06d}.JPG"
        kind = render.kept_as("preview")
        try:
            entry = file_entry(
                media.storage,
                f"IHE_PDI/{study_dir}/{name}",
                render_key(instance.pk, frame, kind),
                recorded_render(render, kind, frame),
            )
        except MissingFileError:
            continue  # a preview is a convenience; the DICOM file is what counts
        media.viewer.append(entry)
        images.append({"src": name, "w": render.preview_columns, "h": render.preview_rows})
    return images


def _series(
    media: _Media, item: StudyContent, group: SeriesContent, si: int, sj: int
) -> dict[str, Any] | None:
    """Add a series' files, previews and page; its link on the study's page (None: a report's own series, whose
    report is shown above the images)."""
    study_dir, series_dir = f"ST{si:04d}", f"SE{sj:04d}"
    _add_files(media, item, group, si, sj)
    images = _add_previews(media, study_dir, series_dir, group)
    page = f"{study_dir}/{series_dir}.HTM"
    if not images and all(reports.is_report(i.sop_class_uid) for i in group.instances):
        return None
    if images:
        context = {"study": item, "label": group.label, "images": images, "study_page": f"../{study_dir}.HTM"}
        media.add_page(page, render_to_string("downloads/media/series.html", context))
    return {
        "label": group.label,
        "count": len(images),
        "href": page if images else "",
        "thumb": f"{study_dir}/{images[0]['src']}" if images else "",
    }


def _study(media: _Media, item: StudyContent, si: int) -> dict[str, Any]:
    """Add a study's series, its PDF reports and its page; its entry on INDEX.HTM."""
    study_dir = f"ST{si:04d}"
    series_links = [
        link
        for sj, group in enumerate(item.series, 1)
        if (link := _series(media, item, group, si, sj)) is not None
    ]
    report_links = []
    for n, report in enumerate(item.reports, 1):
        link = {"title": report.title, "document": report.document, "href": ""}
        if report.pdf is not None:
            link["href"] = f"{study_dir}/REPORT{n:02d}.PDF"
            media.viewer.append(data_entry(f"IHE_PDI/{link['href']}", report.pdf))
        report_links.append(link)
    context = {"study": item, "series": series_links, "reports": report_links}
    media.add_page(f"{study_dir}.HTM", render_to_string("downloads/media/study.html", context))
    return {
        "study": item,
        "href": f"IHE_PDI/{study_dir}.HTM",
        "images": sum(link["count"] for link in series_links),
    }


def dicom_layout(share: Share, studies: list[Study], language: str) -> Layout:
    """Portable media: DICOMDIR, README.TXT, INDEX.HTM and IHE_PDI/ (the offline viewer), DICOM/ (the files)."""
    with translation.override(language):
        media = _Media(get_storage())
        contents = share_contents(studies)
        left_out = sum(item.left_out for item in contents)
        index_studies = [_study(media, item, si) for si, item in enumerate(contents, 1)]
        uids = [s.study_instance_uid for s in studies]
        directory = dicomdir(
            directory_entries(media.sources),
            generate_uid(entropy_srcs=["radshare DICOMDIR", str(share.pk), *uids]),
        )
        index = render_to_string(
            "downloads/media/index.html",
            {"organisation": share.organisation, "studies": index_studies, "left_out": left_out},
        )
        entries = [
            data_entry("DICOMDIR", directory),
            readme("README.TXT", "downloads/media/dicom_readme.txt", share, left_out),
            data_entry("INDEX.HTM", index.encode()),
            *media.viewer,
            *media.files,
        ]
    return Layout(DICOM, complete(media.storage, entries), zip_date_time(share), uids)
