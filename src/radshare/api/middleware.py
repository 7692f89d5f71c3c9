"""Every API answer in the API's error shape, also the 405 that django-ninja's router writes as plain text."""

from __future__ import annotations

import json
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase


class ApiMethodNotAllowedMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if response.status_code != 405 or not request.path.startswith("/api/"):
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        allowed = response.get("Allow", "")
        body = {"code": "method_not_allowed", "message": f"Method not allowed here; allowed: {allowed}."}
        replaced = HttpResponse(json.dumps(body), status=405, content_type="application/json")
        if allowed:
            replaced["Allow"] = allowed
        return replaced
