"""A request's database connection goes back as soon as its response is built (docs/architecture.md "Performance
budget", "Recipient pages under load").

Django returns it when the request has finished: under ASGI that is after the response has been handed to the
event loop and sent, and after one more hop to a worker thread for the ``request_finished`` signal. With the
PostgreSQL pool (``RADSHARE_DATABASE_POOL_SIZE`` per process) a connection held that long is one that other
requests wait for: under 50 concurrent recipients most waiting threads sat in the pool's ``getconn``. Here the
connection is closed (handed back to the pool; on SQLite, simply closed) once the whole middleware stack has made
the response, which is what Django does a little later anyway (``CONN_MAX_AGE`` is 0).

A streamed response (a ZIP, a progress stream) may still read the database while it is sent: its connection stays
until the request has finished, as before. A connection inside a transaction is never closed here.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import connections
from django.http import HttpRequest
from django.http.response import HttpResponseBase


class ReleaseConnectionMiddleware:
    """The outermost middleware: every other one (the session's save included) has used the database by now."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if not response.streaming:
            for connection in connections.all(initialized_only=True):
                if not connection.in_atomic_block:
                    connection.close()
        return response
