"""API authentication: ``Authorization: Bearer <organisation API key>`` (docs/security.md A11)."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from ninja.security import HttpBearer

from radshare.audit.actions import Action
from radshare.audit.services import ActorType, Outcome, record
from radshare.organisations.models import ApiKey
from radshare.organisations.services import authenticate_api_key


class ApiKeyBearer(HttpBearer):
    """An organisation API key as a bearer token. Every refusal is audited, without any of the key.

    Bearer tokens are not sent by browsers on their own, so no CSRF check is needed (``csrf`` stays False);
    a session cookie that comes along carries no authority here.
    """

    def __call__(self, request: HttpRequest) -> ApiKey | None:
        request.user = AnonymousUser()
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
        record(
            Action.API_AUTH_FAILED,
            outcome=Outcome.DENIED,
            request=request,
            actor_type=ActorType.ANONYMOUS,
            detail={"reason": reason},
        )
        return None

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        return authenticate_api_key(token)
