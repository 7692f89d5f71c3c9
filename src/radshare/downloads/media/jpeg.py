"""The JPEG download (docs/requirements.md S4.6, B6.5): one full-size JPEG per frame in folders named after study
and series, a run of frames' MP4 beside its frames (docs/architecture.md "Renders"), the reports beside them (a PDF
as it is, an SR as text). Names inside the ZIP are ASCII and every system accepts them.
"""

from __future__ import annotations

import re
import unicodedata

from django.utils import translation
from django.utils.translation import gettext as _

from radshare.core.storage import Storage, get_storage, render_key, video_key
from radshare.downloads.media.archive import (
    JPEG,
    Entry,
    Layout,
    complete,
    data_entry,
    file_entry,
    readme,
    recorded_render,
    zip_date_time,
)
from radshare.downloads.media.contents import StudyContent, share_contents
from radshare.shares.models import Share
from radshare.studies.models import Study

_UNSAFE = re.compile(r"[^A-Za-z0-9 ._()+,-]+")
_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{n}" for p in ("COM", "LPT") for n in range(1, 10)}


def safe_name(text: str, limit: int = 60) -> str:
    """``text`` as a file or folder name every system accepts: ASCII letters, digits and a few marks."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    name = " ".join(_UNSAFE.sub(" ", ascii_text).split())[:limit].strip(" .")
    if name.split(".")[0].upper() in _RESERVED:
        name = f"_{name}"
    return name


def unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate.lower() in taken:
        n += 1
        candidate = f"{name} ({n})"
    taken.add(candidate.lower())
    return candidate


def _study_entries(storage: Storage, item: StudyContent, study_names: set[str]) -> list[Entry]:
    """A study's folder: "<date> <study>/<series>/image-0001.jpg" for every rendered frame, a run's video named after
    its first frame ("image-0001.mp4") after its last, then the study's reports."""
    date = item.study.study_date
    folder = safe_name(f"{date:%Y-%m-%d} {item.title}" if date else item.title) or "Study"
    folder = unique(folder, study_names)
    entries = []
    series_names: set[str] = set()
    for group in item.series:
        frames = list(group.frames())
        if not frames:
            continue
        sub = unique(safe_name(group.label) or "Series", series_names)
        first = 1
        for n, (instance, frame) in enumerate(frames, 1):
            render = group.renders[instance.pk]
            first = n if frame == 0 else first
            key = render_key(instance.pk, frame, "full")
            recorded = recorded_render(render, "full", frame)
            entries.append(file_entry(storage, f"{folder}/{sub}/image-{n:04d}.jpg", key, recorded))
            if frame == render.frames - 1 and render.has_video:
                video = (render.video_size, render.video_crc32)
                entries.append(
                    file_entry(
                        storage, f"{folder}/{sub}/image-{first:04d}.mp4", video_key(instance.pk), video
                    )
                )
    for n, report in enumerate(item.reports, 1):
        name = f"{folder}/{safe_name(_('Report')) or 'Report'} {n}"
        if report.pdf is not None:
            entries.append(data_entry(f"{name}.pdf", report.pdf))
        elif report.document is not None:
            entries.append(data_entry(f"{name}.txt", report.document.as_text().encode()))
    return entries


def jpeg_layout(share: Share, studies: list[Study], language: str) -> Layout:
    """One full-size JPEG per frame under "<date> <study>/<series>/image-0001.jpg", the reports beside them."""
    with translation.override(language):
        storage = get_storage()
        contents = share_contents(studies)
        left_out = sum(item.left_out for item in contents)
        entries = []
        study_names: set[str] = set()
        for item in contents:
            entries += _study_entries(storage, item, study_names)
        videos = sum(1 for entry in entries if entry.name.endswith(".mp4"))
        entries.insert(
            0, readme("README.txt", "downloads/media/jpeg_readme.txt", share, left_out, videos=videos)
        )
    return Layout(
        JPEG, complete(storage, entries), zip_date_time(share), [s.study_instance_uid for s in studies]
    )
