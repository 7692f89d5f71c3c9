"""Streamed responses whose pieces are made by sync code (database reads included).

Under ASGI, Django reads a plain iterator given to ``StreamingHttpResponse`` whole before it sends a byte
(docs/architecture.md "Gotchas"). ``pulled`` hands the pieces over as an async generator instead, which pulls
each piece in the request's own sync thread, so each leaves as soon as it is made and nothing is held whole.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Generator, Iterator

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler, ASGIRequest
from django.http import HttpRequest
from uvicorn.protocols.http.h11_impl import H11Protocol

# What a connection's transport holds before the response waits for the client (asyncio's default: 64 KiB): two
# pieces of a download, so the socket never runs dry between them.
WRITE_BUFFER = 2 << 20


class LargeMessageASGIHandler(ASGIHandler):
    """Django's ASGI handler, passing each streamed piece of up to 2 MiB on to the server as one message.

    Django cuts every piece into messages of ``chunk_size`` (64 KiB), each a copy of its part, and each a write of
    its own in uvicorn: a ZIP download spent more time there than reading its files (docs/architecture.md
    "Performance budget"). A piece no larger than this goes out as the very object it was made as. It is also the
    block size of a ``FileResponse``."""

    chunk_size = 2 << 20


class LargeBufferH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol (``radshare web``), with a write buffer of ``WRITE_BUFFER`` and Nagle's algorithm
    off on every connection.

    With asyncio's 64 KiB, every piece of a download paused the response until the socket had nearly emptied, and
    the socket then ran dry while the next piece was handed over: measured on a 1,600-image DICOM ZIP, 0.70 s with
    64 KiB, 0.56 s with 1 or 2 MiB (docs/architecture.md "Performance budget")."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        transport.set_write_buffer_limits(high=WRITE_BUFFER)
        no_delay(transport)


def no_delay(transport: asyncio.BaseTransport) -> None:
    """``TCP_NODELAY`` on a connection's socket, as asyncio sets it on the TCP sockets it makes itself. With several
    workers, uvicorn binds the listening socket with protocol number 0 and hands it to them, and asyncio then takes
    the connections for something other than TCP and leaves Nagle's algorithm on: a response's headers and body go
    out as two writes, the second waits for the client's delayed ACK, and every request on a kept-alive connection
    after the first took 40 ms more (docs/architecture.md "Performance budget")."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


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
