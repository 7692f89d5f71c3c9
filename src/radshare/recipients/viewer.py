"""The image viewer (SPEC S4.5). Placeholder until written."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse


def study_view(request: HttpRequest, pk: int) -> HttpResponse:
    raise Http404


def image(request: HttpRequest, render_pk: int, frame: int, kind: str) -> HttpResponse:
    raise Http404
