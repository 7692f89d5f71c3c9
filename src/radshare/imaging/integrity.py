"""Do the render rows agree with the storage? The renders' half of ``radshare storage check``, built on
``studies.integrity`` (the same judgements, guard and streaming; read its text first).

A done render has, for each of its ``frames``, ``NNNN-full.jpg``, ``NNNN-preview.jpg``, ``NNNN-thumb.jpg`` and one
``NNNN-<preset>.jpg`` per CT window preset in ``presets`` (``imaging.render``), in its instance's folder
(``layout.render_folder``), and ``0000-video.mp4`` when ``video_size`` says it has a video (``imaging.video``);
``jpeg_sizes`` holds each full-size JPEG's size.

1. The ``renders/`` area is walked in key order; the files of one instance's folder come together, and folders are
   looked up ``CHUNK`` at a time. A file outside any instance's folder, in the folder of an instance that is gone,
   beside a render that has no files (failed, not an image), or that a done render does not name is an *orphan*.
   A done render lacking a file is *missing*; a full-size JPEG of another size than recorded is *changed*.
   Pending and rendering rows are in flux and not judged, nor the preset files of a render whose second pass is
   due (``presets_due``: being made).
2. The done rows are read in id order; one whose folder the walk did not meet at all is *missing*.

``--repair`` deletes orphans older than ``RECENT`` and puts a damaged render back to pending, so that a worker
renders it again. Only when its instance is marked broken is the render marked failed ("the stored file could not
be read") instead: it is not drawn again from a file that is gone or no longer what was received.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from itertools import batched

from django.db.models import Q

from radshare.core.storage import Storage, StoredObject
from radshare.core.storage.layout import RENDERS, render_folder, render_key, video_key
from radshare.imaging.models import KEPT_AS_FIELDS, InstanceRender, preview_is_full
from radshare.imaging.render import CT_PRESETS
from radshare.imaging.services import request_render
from radshare.studies.integrity import (
    CHUNK,
    PAGE,
    AreaCheck,
    AreaReport,
    CheckOptions,
    IdSet,
    Kind,
    Repairs,
)
from radshare.studies.models import Instance

Status = InstanceRender.Status
KINDS = (
    "full",
    "preview",
    "thumb",
)  # every frame has these (the preview unless kept as full); CT adds its presets
FOLDER_FILES = 20_000  # files held at most while their folders wait to be looked up
VIDEO = "video"  # the kind of the MP4 (0000-video.mp4)
_KEY = re.compile(rf"{RENDERS}/(\d{{3}})/([1-9]\d*)/(\d{{4}})-([a-z]+)\.(jpg|mp4)")

Found = list[tuple[int, str, StoredObject]]  # one folder's files: (frame, kind, the file)
Row = tuple[str, int, list[str], bool, list[int], int, datetime | None, datetime | None, int, int, int, int]


def expected(
    frames: int, presets: list[str], video: bool = False, preview: bool = True
) -> list[tuple[int, str]]:
    """The (frame, kind) of every file a done render has, in key order; ``preview``: a preview file of its own
    (not one kept as the full-size JPEG, ``InstanceRender.kept_as``)."""
    kinds = [kind for kind in KINDS if preview or kind != "preview"]
    files = [(frame, kind) for frame in range(frames) for kind in (*kinds, *presets)]
    return sorted([*files, (0, VIDEO)] if video else files)


def file_key(pk: int, frame: int, kind: str) -> str:
    return video_key(pk) if kind == VIDEO else render_key(pk, frame, kind)


class RenderCheck(AreaCheck):
    def __init__(self, storage: Storage, options: CheckOptions) -> None:
        super().__init__(storage, RENDERS, options)
        top = Instance.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        self.seen = IdSet(top)  # folders of rows met by the walk
        self.reset = Repairs[int](self._reset, force=options.force)

    def run(self) -> AreaReport:
        for batch in self._folders():
            self._judge(batch)
        for page in self._pages():
            self._rows(page)
        self.settle(self.orphans, self.report.objects, "deleted")
        self.settle(self.reset, self.report.rows, "rendered again", empty=self.report.objects == 0)
        return self.report

    # --- the storage's files, folder by folder ------------------------------------------------------------

    def _folders(self) -> Iterator[dict[int, Found]]:
        """The walk's files grouped by instance folder, in batches; files outside any folder are judged here."""
        batch: dict[int, Found] = {}
        held = 0
        for obj in self.storage.scan(RENDERS):
            self.report.objects += 1
            match = _KEY.fullmatch(obj.key)
            pk = int(match[2]) if match else 0
            if (
                match is None
                or render_folder(pk) != f"{RENDERS}/{match[1]}/{match[2]}"
                or (match[5] == "mp4") != (match[4] == VIDEO)
                or (match[4] == VIDEO and match[3] != "0000")
            ):
                self.unknown(obj)
                continue
            if pk not in batch and (len(batch) >= CHUNK or held >= FOLDER_FILES):
                yield batch
                batch, held = {}, 0
            batch.setdefault(pk, []).append((int(match[3]), match[4], obj))
            held += 1
        if batch:
            yield batch

    def _judge(self, batch: dict[int, Found]) -> None:
        rows = {
            row[0]: row[1:]
            for row in InstanceRender.objects.filter(instance_id__in=list(batch))
            .order_by()
            .values_list(
                "instance_id",
                "status",
                "frames",
                "presets",
                "presets_due",
                "jpeg_sizes",
                "video_size",
                "instance__broken_at",
                "instance__series__study__destroy_started_at",
                *KEPT_AS_FIELDS,
            )
        }
        for pk, found in batch.items():
            row = rows.get(pk)
            if row is None:
                for _, _, obj in found:
                    self.unknown(obj)  # its instance is gone
                continue
            self.seen.add(pk)
            self._folder(pk, found, row)

    def _folder(self, pk: int, found: Found, row: Row) -> None:
        status, frames, presets, presets_due, jpeg_sizes, video_size, _, destroying, *dimensions = row
        if destroying is not None:
            self.report.tally(Kind.SKIPPED).add(f"instance {pk}: {render_folder(pk)}/")
            return
        if status in (Status.PENDING, Status.RENDERING):
            return  # being made (again): its files come and go
        separate = not preview_is_full(*dimensions)
        wanted = set(expected(frames, presets, video_size > 0, separate)) if status == Status.DONE else set()
        present: dict[tuple[int, str], StoredObject] = {}
        for frame, kind, obj in found:
            if (frame, kind) in wanted:
                present[frame, kind] = obj
            elif presets_due and kind in CT_PRESETS:
                continue  # the second pass is making them
            elif kind == "preview" and not separate and status == Status.DONE:
                continue  # a copy of the full-size JPEG, as renders made before it was kept once have
            else:
                self.unknown(obj)  # a render without files, or one that names no such file
        if status != Status.DONE:
            return
        self.report.rows += 1
        # Looked at once more: a render that finished while the walk passed its folder is no false alarm.
        missing = [
            file_key(pk, *item)
            for item in sorted(wanted - present.keys())
            if not self.storage.exists(file_key(pk, *item))
        ]
        if missing:
            self._damaged(Kind.MISSING, pk, f"{missing[0]}{_more(len(missing))}")
            return
        sizes = [((frame, "full"), size) for frame, size in enumerate(jpeg_sizes)]
        for item, size in [*sizes, ((0, VIDEO), video_size)] if video_size else sizes:
            full = present.get(item)
            if full is not None and full.size != size and self._size(full.key) not in (size, None):
                self._damaged(Kind.CHANGED, pk, f"{full.key} ({full.size} bytes, recorded {size})")
                return

    def _size(self, key: str) -> int | None:
        try:
            return self.storage.stat(key).size
        except FileNotFoundError:
            return None

    def _damaged(self, kind: str, pk: int, example: str) -> None:
        self.report.tally(kind).add(f"instance {pk}: {example}")
        if self.options.repair:
            self.reset.add(pk)

    # --- done rows whose folder the walk did not meet -------------------------------------------------------

    def _pages(self) -> Iterator[list[tuple[int, int, int, list[str], datetime | None]]]:
        last = 0
        while True:
            page = list(
                InstanceRender.objects.filter(status=Status.DONE, pk__gt=last, instance_id__lte=self.seen.top)
                .order_by("pk")
                .values_list(
                    "pk", "instance_id", "frames", "presets", "instance__series__study__destroy_started_at"
                )[:PAGE]
            )
            if not page:
                return
            yield page
            last = page[-1][0]

    def _rows(self, page: list[tuple[int, int, int, list[str], datetime | None]]) -> None:
        for _, pk, frames, presets, destroying in page:
            if pk in self.seen:
                continue
            if destroying is not None:
                self.report.tally(Kind.SKIPPED).add(f"instance {pk}: {render_folder(pk)}/")
                continue
            self.report.rows += 1
            files = expected(frames, presets)
            if files and not self.storage.exists(render_key(pk, *files[0])):
                self._damaged(Kind.MISSING, pk, f"{render_folder(pk)}/ (all {len(files)} files)")

    # --- repairs -----------------------------------------------------------------------------------------------

    def _reset(self, pks: list[int]) -> int:
        """Back to pending, to be rendered again; failed instead when the instance itself is broken."""
        changed = again = 0
        broken = Q(instance__broken_at__isnull=False)
        for part in batched(pks, CHUNK):
            done = InstanceRender.objects.filter(instance_id__in=part, status=Status.DONE)
            changed += done.filter(broken).update(
                status=Status.FAILED, reason=InstanceRender.Reason.FILE_MISSING, jpeg_size=0
            )
            again += done.filter(~broken).update(
                status=Status.PENDING, claimed_at=None, claimed_by="", attempts=0, retry_after=None
            )
        if again:
            request_render()
        return changed + again


def _more(count: int) -> str:
    return f" and {count - 1} more" if count > 1 else ""


def check_renders(storage: Storage, options: CheckOptions) -> AreaReport:
    """Compare the ``renders/`` area with the render rows both ways; repair when asked (see the module's text).
    Run it after ``studies.integrity.check_instances``, so that instances found broken are known here."""
    return RenderCheck(storage, options).run()
