"""Request plumbing: request bodies capped before they are read, an access log without query strings, URL-group
zoning by role, no-store caching."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware import csrf
from django.shortcuts import render
from django.urls import Resolver404, resolve

from radshare.core.metrics import count_request
from radshare.core.net import is_trusted_proxy

logger = logging.getLogger("radshare.access")

# URL groups for RADSHARE_ROLE (docs/architecture.md "URLs and zoning").
INTERNAL_PREFIXES = ("/portal/", "/api/", "/admin/", "/dev/")
ALWAYS = ("/healthz", "/readyz", "/metrics", "/static/", "/i18n/")


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
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        logger.info(
            "%s %s %s %.1fms",
            request.method,
            request.path,
            response.status_code,
            duration_ms,
            # Fields of their own in JSON logs (core/logs.py).
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": duration_ms,
            },
        )
        match = getattr(request, "resolver_match", None)
        route = (
            match.view_name
            if match is not None
            else ("static" if request.path.startswith("/static/") else "")
        )
        count_request(route, request.method or "", response.status_code)
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


# --- request bodies ------------------------------------------------------------------------------------

MB = 1024 * 1024
# Above Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2 MB), so that Django's own check still answers what it answers; no
# page but the two below takes more than a form's worth of data.
BODY_LIMIT = 4 * MB
# The views that take files, by URL name: RADSHARE_UPLOAD_MAX_MB of files plus the multipart framing around them
# (the allowance studies/upload.py makes too). tests/security/test_edges.py checks that these names exist.
UPLOAD_VIEWS = frozenset({"portal:upload", "imaging:report_attach"})
UPLOAD_FRAMING = 16 * MB
REFUSED = "radshare.body_refused"  # in the ASGI scope: the limit, in bytes, that the body went past

Scope = dict[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def body_limit(path: str) -> int:
    """The largest request body, in bytes, that ``path`` takes."""
    try:
        view_name = resolve(path).view_name
    except Resolver404:
        return BODY_LIMIT
    if view_name in UPLOAD_VIEWS:
        return settings.RADSHARE.upload_max_mb * MB + UPLOAD_FRAMING
    return BODY_LIMIT


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimit:
    """ASGI: a request body past its limit (``body_limit``) is never read, so it is never spooled.

    Django's ASGI handler reads the whole body into a temporary file before any middleware or view runs: without
    this, a 2 GB POST to any URL would first be written to disk. A declared ``Content-Length`` past the limit is
    refused before a byte of the body is read (nor is ``100 Continue`` sent); a body without one (chunked) is
    read up to the limit and then no further. Either way Django gets an empty body and the request is marked
    (``REFUSED``), and ``BodyLimitMiddleware`` answers 413 through the middleware, with the headers every answer
    carries. The answer closes the connection, so the rest of the body is not read either.
    """

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = dict(scope)
        declared = _content_length(scope)
        if declared is not None and declared > BODY_LIMIT and declared > (limit := body_limit(scope["path"])):
            scope[REFUSED] = limit
            await self.app(scope, _no_body(), _closing(scope, send))
            return
        await self.app(scope, _capped(scope, receive), _closing(scope, send))


def _no_body() -> Receive:
    """An empty body, then silence: the body stays unread (Django's listener is cancelled after the answer)."""
    ended = False

    async def receive() -> Message:
        nonlocal ended
        if not ended:
            ended = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")  # pragma: no cover

    return receive


def _capped(scope: Scope, receive: Receive) -> Receive:
    """``receive``, until the body passes its limit: then the body ends there and the request is marked."""
    received = 0
    limit: int | None = None  # looked up only for a body that gets past BODY_LIMIT
    refused: Receive | None = None

    async def capped() -> Message:
        nonlocal received, limit, refused
        if refused is not None:
            return await refused()
        message = await receive()
        if message["type"] != "http.request":
            return message
        received += len(message.get("body", b""))
        if received > BODY_LIMIT and limit is None:
            limit = body_limit(scope["path"])
        if limit is not None and received > limit:
            scope[REFUSED] = limit
            refused = _no_body()
            return await refused()
        return message

    return capped


def _closing(scope: Scope, send: Send) -> Send:
    """``send``, with ``Connection: close`` on the answer to a refused request: its unread body ends there."""

    async def closing(message: Message) -> None:
        if message["type"] == "http.response.start" and REFUSED in scope:
            message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
        await send(message)

    return closing


class BodyLimitMiddleware:
    """The 413 for a request whose body ``BodyLimit`` refused. Last in the list: nothing has read the (empty)
    body yet, and the answer passes every other middleware on its way out, like any page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = getattr(request, "scope", {}).get(REFUSED)
        if limit is None:
            return self.get_response(request)
        if request.path.startswith("/api/"):
            message = f"The request body is larger than {limit // MB} MB."
            return JsonResponse({"code": "too_large", "message": message}, status=413)
        return render(request, "core/error.html", {"status": 413}, status=413)
