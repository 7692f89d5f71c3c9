"""Recipient login flow. Placeholder."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse


def start(request: HttpRequest) -> HttpResponse:
    raise Http404


def terms(request: HttpRequest) -> HttpResponse:
    raise Http404


def birth_date(request: HttpRequest) -> HttpResponse:
    raise Http404


def sms_code(request: HttpRequest) -> HttpResponse:
    raise Http404


def new_sms_code(request: HttpRequest) -> HttpResponse:
    raise Http404


def invalid(request: HttpRequest) -> HttpResponse:
    raise Http404


def locked(request: HttpRequest) -> HttpResponse:
    raise Http404


def preparing(request: HttpRequest) -> HttpResponse:
    raise Http404


def studies(request: HttpRequest) -> HttpResponse:
    raise Http404


def logout(request: HttpRequest) -> HttpResponse:
    raise Http404
