"""Downloads (SPEC S4.6-S4.8). Placeholder until written."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse


def choose(request: HttpRequest) -> HttpResponse:
    raise Http404


def download_all(request: HttpRequest, kind: str) -> HttpResponse:
    raise Http404


def download_study(request: HttpRequest, pk: int, kind: str) -> HttpResponse:
    raise Http404
