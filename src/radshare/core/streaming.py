"""Streamed responses whose pieces are made by sync code (database reads included).

Under ASGI, Django reads a plain iterator given to ``StreamingHttpResponse`` whole before it sends a byte
(docs/architecture.md "Gotchas"). ``pulled`` hands the pieces over as an async generator instead, which pulls
each piece in the request's own sync thread, so each leaves as soon as it is made and nothing is held whole.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest


def pulled(request: HttpRequest, pieces: Generator[bytes]) -> Iterator[bytes] | AsyncIterator[bytes]:
    """``pieces`` as the response's content: pulled one at a time under ASGI, as they are under WSGI. The
    generator is closed (its ``finally`` runs) when the response ends, also when the client goes away."""
    if not isinstance(request, ASGIRequest):
        return pieces

    def step() -> bytes | None:
        return next(pieces, None)

    async def pull() -> AsyncIterator[bytes]:
        try:
            while (piece := await sync_to_async(step, thread_sensitive=True)()) is not None:
                yield piece
        finally:
            await sync_to_async(pieces.close, thread_sensitive=True)()

    return pull()
