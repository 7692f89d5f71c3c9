"""Health endpoints, the start page and our error pages (never a stack trace, docs/security.md A15)."""

from __future__ import annotations

import logging
import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from radshare.core import health

logger = logging.getLogger(__name__)


@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers."""
    return JsonResponse({"status": "ok"})


@require_safe
def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness, for monitoring: 503 naming the failing parts, 200 when every part works (core/health.py).

    The body holds the parts' names and ok/failing only; why a part fails goes to the log (once per change) and
    to ``radshare status``."""
    readiness = health.check_readiness()
    health.log_change(readiness)
    return JsonResponse(readiness.as_json(), status=200 if readiness.ok else 503)


def _error(request: HttpRequest, status: int) -> HttpResponse:
    return render(request, "core/error.html", {"status": status}, status=status)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(request, 400)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(request, 403)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(request, 404)


# Seconds a client is asked to wait when the database is away or all its connections are busy.
RETRY_AFTER_SECONDS = 5


def server_error(request: HttpRequest) -> HttpResponse:
    """An unhandled exception (Django calls this inside its ``except``, so the exception is at hand).

    The database away or every pooled connection busy (docs/security.md R7) is a 503 with Retry-After, not a
    500: the request may simply be repeated. Under /api/ the answer is JSON in the API's error shape.
    """
    unavailable = isinstance(sys.exception(), OperationalError | InterfaceError)
    status = 503 if unavailable else 500
    if request.path.startswith("/api/"):
        body = {
            "code": "unavailable" if unavailable else "server_error",
            "message": "The service is busy or its database is away; try again shortly."
            if unavailable
            else "An error occurred on our side. Nothing was changed.",
        }
        response: HttpResponse = JsonResponse(body, status=status)
    else:
        response = _error(request, status)
    if unavailable:
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
