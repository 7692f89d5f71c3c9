"""Renders in the sender portal: per-series thumbnails on the study page, and the render files themselves.

Every file is looked up through the sender's organisation (an instance id alone is never enough, docs/security.md
A10); its storage key is made from internal ids only.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.http import FileResponse, Http404, HttpRequest
from django.views.decorators.http import require_safe

from radshare.core.storage import get_storage, render_key
from radshare.imaging.models import KEPT_AS_FIELDS, InstanceRender
from radshare.imaging.render import CT_PRESETS
from radshare.imaging.services import series_render_state
from radshare.organisations.auth import sender_required
from radshare.organisations.models import Organisation
from radshare.studies.models import Series, Study

KINDS = frozenset({"full", "preview", "thumb", *CT_PRESETS})
Status = InstanceRender.Status


@dataclass(frozen=True)
class SeriesPreview:
    series: Series
    render: InstanceRender | None  # of the series' first instance
    done: int
    waiting: int
    not_images: int

    @property
    def reason_text(self) -> str:
        if self.render is None or self.render.status not in (Status.UNRENDERABLE, Status.FAILED):
            return ""
        return str(InstanceRender.Reason(self.render.reason).label) if self.render.reason else ""


def study_previews(study: Study) -> list[SeriesPreview]:
    """One entry per series: its first instance's render and how far rendering has come."""
    state = series_render_state(study)
    previews = []
    for series in study.series.all():
        first = (
            InstanceRender.objects.filter(instance__series=series)
            .select_related("instance")
            .order_by("instance__instance_number", "instance_id")
            .first()
        )
        counts = state.get(series.pk, {})
        previews.append(
            SeriesPreview(
                series=series,
                render=first,
                done=counts.get(Status.DONE, 0),
                waiting=counts.get(Status.PENDING, 0) + counts.get(Status.RENDERING, 0),
                not_images=counts.get(Status.UNRENDERABLE, 0) + counts.get(Status.FAILED, 0),
            )
        )
    return previews


@require_safe
@sender_required
def render_file(
    request: HttpRequest, organisation: Organisation, instance_pk: int, frame: int, kind: str
) -> FileResponse:
    """One rendered JPEG of an instance of the sender's organisation."""
    if kind not in KINDS:
        raise Http404
    render = (
        InstanceRender.objects.filter(
            instance_id=instance_pk, instance__organisation=organisation, status=Status.DONE
        )
        .only("frames", "presets", *KEPT_AS_FIELDS)
        .first()
    )
    if render is None or frame >= render.frames or (kind in CT_PRESETS and kind not in render.presets):
        raise Http404
    try:
        handle = get_storage().open(render_key(instance_pk, frame, render.kept_as(kind)))
    except FileNotFoundError:
        raise Http404 from None
    return FileResponse(handle, content_type="image/jpeg")
