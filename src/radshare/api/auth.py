"""API authentication: ``Authorization: Bearer <organisation API key>`` (docs/security.md A11)."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from ninja.errors import Throttled
from ninja.security import HttpBearer

from radshare.api import throttle
from radshare.core.net import client_address
from radshare.organisations.models import ApiKey
from radshare.organisations.services import authenticate_api_key


class ApiKeyBearer(HttpBearer):
    """An organisation API key as a bearer token. Every refusal is counted per client address and reaches the
    audit trail, without any of the key, as one entry per address and minute (``api/throttle.py``). An address
    with too many refusals is answered 429 before its key is looked at.

    Bearer tokens are not sent by browsers on their own, so no CSRF check is needed (``csrf`` stays False);
    a session cookie that comes along carries no authority here.
    """

    def __call__(self, request: HttpRequest) -> ApiKey | None:
        request.user = AnonymousUser()
        wait = throttle.retry_after(client_address(request))
        if wait is not None:
            throttle.count_throttled(request)
            raise Throttled(wait)
        scheme, _, token = request.headers.get(self.header, "").partition(" ")
        token = token.strip()
        if not scheme:
            reason = "no key"
        elif scheme.lower() != self.openapi_scheme or not token:
            reason = "not a bearer token"
        else:
            key = self.authenticate(request, token)
            if key is not None:
                return key
            reason = "unknown, malformed or revoked key"
        throttle.count_failure(request, reason)
        return None

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        return authenticate_api_key(token)
