"""What was rendered of each instance: previews, thumbnails, CT window presets and full-size JPEGs per frame.

One ``InstanceRender`` row per instance, created (pending) in the same transaction as the instance itself, so
"are all renders of this study done?" is one indexed query. The files live under the storage root in
``renders/``, at paths made from internal ids only.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from radshare.studies.models import Instance

# What a reader of a render file needs to know which file holds a kind (``kept_as``).
KEPT_AS_FIELDS = ("rows", "columns", "preview_rows", "preview_columns")


def preview_is_full(rows: int, columns: int, preview_rows: int, preview_columns: int) -> bool:
    """The preview of an image no larger than the preview size is its full-size JPEG: kept once, as ``full``
    (docs/architecture.md "Renders")."""
    return (preview_rows, preview_columns) == (rows, columns)


def kept_as(kind: str, rows: int, columns: int, preview_rows: int, preview_columns: int) -> str:
    """The kind of the file that holds a render of ``kind``: every reader of a render file asks this."""
    return (
        "full"
        if kind == "preview" and preview_is_full(rows, columns, preview_rows, preview_columns)
        else kind
    )


class InstanceRender(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("waiting")
        RENDERING = "rendering", _("being rendered")
        DONE = "done", _("rendered")
        UNRENDERABLE = "unrenderable", _("not an image")
        FAILED = "failed", _("could not be rendered")

    class Reason(models.TextChoices):
        NONE = "", ""
        NO_PIXEL_DATA = (
            "no_pixel_data",
            _("This object holds no image (for example a report or a treatment plan)."),
        )
        UNSUPPORTED = "unsupported", _("The image is stored in a form that cannot be shown in the browser.")
        BROKEN = "broken", _("The image data is damaged and cannot be shown.")
        FILE_MISSING = "file_missing", _("The stored file could not be read.")

    instance = models.OneToOneField(Instance, on_delete=models.CASCADE, related_name="render")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(max_length=16, choices=Reason.choices, blank=True, default=Reason.NONE)
    frames = models.PositiveIntegerField(default=0)  # frames rendered
    rows = models.PositiveIntegerField(default=0)  # full-size JPEG height
    columns = models.PositiveIntegerField(default=0)
    preview_rows = models.PositiveIntegerField(default=0)
    preview_columns = models.PositiveIntegerField(default=0)
    presets = models.JSONField(default=list, blank=True)  # CT window presets rendered, e.g. ["soft", "lung"]
    # A CT image whose window presets the second pass has yet to make (after the share is ready: docs/architecture.md
    # "Renders"); its claim uses claimed_at/claimed_by while the status stays "done".
    presets_due = models.BooleanField(default=False)
    jpeg_sizes = models.JSONField(default=list, blank=True)  # bytes of each frame's full-size JPEG
    jpeg_size = models.BigIntegerField(default=0)  # their sum and the video's: what the JPEG download holds
    # {"full": [[size, crc32], ...], "preview": [...]}, per frame, as the ZIP downloads record them
    # (docs/architecture.md "Downloads"); {} for renders made before it was kept: computed once with a layout.
    checksums = models.JSONField(default=dict, blank=True)
    # The H.264 MP4 of a run of frames with a frame time (imaging/video.py; docs/architecture.md "Renders"): its
    # bytes and CRC-32 for the JPEG download, and its frames per second for the viewer; size 0: no video.
    video_size = models.BigIntegerField(default=0)
    video_crc32 = models.BigIntegerField(default=0)
    video_frame_rate = models.FloatField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=64, blank=True, default="")  # the worker's id (core.Worker)
    # A fault of the machine (a full disk, storage away) puts the render back with a growing delay (R8).
    attempts = models.PositiveSmallIntegerField(default=0)
    retry_after = models.DateTimeField(null=True, blank=True)
    rendered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "id"], name="render_status"),
            models.Index(fields=["id"], condition=models.Q(presets_due=True), name="render_presets_due"),
        ]

    def __str__(self) -> str:
        return f"render of instance {self.instance_id}: {self.status}"

    @property
    def is_image(self) -> bool:
        return self.status == self.Status.DONE

    def kept_as(self, kind: str) -> str:
        """The kind of the file that holds this render's ``kind`` (``kept_as``)."""
        return kept_as(kind, self.rows, self.columns, self.preview_rows, self.preview_columns)

    @property
    def has_video(self) -> bool:
        return self.status == self.Status.DONE and self.video_size > 0
