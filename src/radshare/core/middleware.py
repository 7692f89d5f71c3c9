"""Request plumbing: an access log without query strings, URL-group zoning by role, no-store caching."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware import csrf

from radshare.core.net import is_trusted_proxy

logger = logging.getLogger("radshare.access")

# URL groups for RADSHARE_ROLE (docs/architecture.md "URLs and zoning").
INTERNAL_PREFIXES = ("/portal/", "/api/", "/admin/", "/dev/")
ALWAYS = ("/healthz", "/readyz", "/static/", "/i18n/")


HSTS = "max-age=31536000; includeSubDomains"  # one year (docs/security.md A13, A25)


class TrustedProxyMiddleware:
    """Behind the TLS proxy: ``X-Forwarded-Proto`` counts only when the peer is in ``RADSHARE_TRUSTED_PROXIES``
    (Django's ``SECURE_PROXY_SSL_HEADER`` believes it from anyone), so ``request.is_secure()`` and the absolute
    URLs built from requests say https; the client address is read the same way (``core.net``). Every response
    carries HSTS when the base URL is https, whoever asked (docs/security.md A25)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "HTTP_X_FORWARDED_PROTO" in request.META and not is_trusted_proxy(
            request.META.get("REMOTE_ADDR", "")
        ):
            del request.META["HTTP_X_FORWARDED_PROTO"]
        response = self.get_response(request)
        if settings.RADSHARE.base_url.startswith("https://"):
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        return response


class RequestLogMiddleware:
    """Logs method, path (never the query string: the share code travels in one), status and duration."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        logger.info(
            "%s %s %s %.1fms",
            request.method,
            request.path,
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        return response


class RoleMiddleware:
    """A ``public`` web process serves only recipient pages; an ``internal`` one only portal, API and admin."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        role = settings.RADSHARE.role
        path = request.path
        if role != "all" and not path.startswith(ALWAYS):
            internal = path.startswith(INTERNAL_PREFIXES)
            if (role == "public" and internal) or (role == "internal" and not internal):
                raise Http404
        return self.get_response(request)


class NoStoreMiddleware:
    """Pages behind a login hold patient data: never cached (docs/security.md A13)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not request.path.startswith("/static/") and "Cache-Control" not in response:
            response["Cache-Control"] = "no-store"
        return response


class CsrfViewMiddleware(csrf.CsrfViewMiddleware):
    """Django's CSRF protection, made to work with ``Referrer-Policy: no-referrer`` (docs/security.md A2, A13).

    Under that policy browsers send ``Origin: null`` on same-origin form posts (and no Referer), which Django's
    origin check refuses. For ``Origin: null`` we accept the request only when the browser itself vouches that it
    comes from our own origin (``Sec-Fetch-Site: same-origin``, a header pages cannot set); the CSRF token is
    checked as always.
    """

    def _origin_verified(self, request: HttpRequest) -> bool:
        if request.META.get("HTTP_ORIGIN") == "null":
            return request.META.get("HTTP_SEC_FETCH_SITE") == "same-origin"
        return bool(super()._origin_verified(request))  # type: ignore[misc]  # private in the stubs
