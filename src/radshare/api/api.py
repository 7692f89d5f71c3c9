"""The REST API at /api/v1/ (django-ninja): OpenAPI at /api/v1/openapi.json, docs at /api/v1/docs.

Every error answers ``{"code": ..., "message": ...}``; bad input is a 4xx, never a 500.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.utils import translation
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, AuthorizationError, HttpError, Throttled, ValidationError

from radshare.api.auth import ApiKeyBearer
from radshare.api.views import router, shares_router
from radshare.shares.services import ShareConflictError, ShareError

api = NinjaAPI(
    title="radshare",
    version="1",
    description="Share radiology studies: the API for PACS integration. "
    "Authenticate with an organisation API key: `Authorization: Bearer <key>`.",
    urls_namespace="api",
    auth=ApiKeyBearer(),
)
api.add_router("", router)
api.add_router("", shares_router)

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    429: "too_many_requests",
    502: "pacs_unavailable",
}


def error(request: HttpRequest, status: int, code: str, message: str) -> HttpResponse:
    return api.create_response(request, {"code": code, "message": message}, status=status)


@api.exception_handler(AuthenticationError)
def unauthorized(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    # One answer for a missing, unknown, malformed or revoked key: nothing to learn from the difference.
    response = error(
        request, 401, "unauthorized", "A valid API key is required: Authorization: Bearer <key>."
    )
    response["WWW-Authenticate"] = 'Bearer realm="radshare"'
    return response


@api.exception_handler(Throttled)
def throttled(request: HttpRequest, exc: Throttled) -> HttpResponse:
    # Too many refused keys from this address (api/throttle.py): refused before any key is looked at.
    wait = exc.wait or 1
    response = error(
        request,
        429,
        "too_many_requests",
        f"Too many requests with a wrong API key from this address; try again in {wait} seconds.",
    )
    response["Retry-After"] = str(wait)
    return response


@api.exception_handler(AuthorizationError)
def forbidden(request: HttpRequest, exc: AuthorizationError) -> HttpResponse:
    return error(request, 403, "forbidden", "This key may not do that.")


@api.exception_handler(Http404)
def not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error(request, 404, "not_found", "Not found.")


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return error(request, exc.status_code, CODES.get(exc.status_code, "error"), str(exc.message))


@api.exception_handler(ShareError)
def share_refused(request: HttpRequest, exc: ShareError) -> HttpResponse:
    # The same rules as the share dialog, with their stable codes (mixed_patients, consent_required, ...).
    with translation.override("en"):
        return error(request, 409 if isinstance(exc, ShareConflictError) else 422, exc.code, str(exc.message))


def _field(loc: Any) -> str:
    # ("query", "patient_id") -> "patient_id"; the input itself is never echoed (it may be patient data).
    parts = [str(p) for p in loc if p not in ("query", "body", "path", "header", "cookie", "form", "file")]
    return ".".join(parts) or "request"


@api.exception_handler(ValidationError)
def invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    problems = "; ".join(f"{_field(e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors)
    return error(request, 422, "invalid_request", problems or "The request is not valid.")


def unknown_path(request: HttpRequest, path: str = "") -> HttpResponse:
    """Any other path under /api/: a 404 in the API's error shape, not the HTML error page."""
    return error(request, 404, "not_found", "No such API endpoint.")
