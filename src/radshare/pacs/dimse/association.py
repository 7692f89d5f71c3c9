"""Associations from radshare to a PACS node, the DIMSE status codes, and C-ECHO.

Every association calls with radshare's own AE title (``RADSHARE_DICOM_AE_TITLE``), sets ``TCP_NODELAY`` (without
it each small message waits ~40 ms for a delayed ACK) and bounds every wait: connecting, association negotiation
and each DIMSE response. A failure to associate becomes a ``PacsError`` that says why, in words an operator acts on.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any

from django.conf import settings
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from radshare.organisations.models import PacsNode
from radshare.pacs.base import Failure, PacsError

CONNECT_TIMEOUT = 10.0  # seconds to open the TCP connection
ACSE_TIMEOUT = 30.0  # seconds for the answer to A-ASSOCIATE-RQ and A-RELEASE-RQ
ECHO_TIMEOUT = 10.0

PENDING = (0xFF00, 0xFF01)
SUCCESS = 0x0000
CANCEL = 0xFE00
WARNING = 0xB000  # sub-operations complete, one or more failures or warnings (C-MOVE/C-GET)
OUT_OF_RESOURCES = 0xA700

NO_SERVICE = "the PACS does not offer the requested DICOM service"


# A-ASSOCIATE-RJ (PS3.8 Table 9-21): (source, diagnostic) -> why, in the words an operator acts on.
_REJECT_REASONS = {
    (1, 2): "application context not supported",
    (1, 3): "calling AE title not known to it",
    (1, 7): "called AE title not known to it: check the node's AE title",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "too many associations",
}


def status_text(status: int) -> str:
    if status == OUT_OF_RESOURCES or 0xA700 <= status <= 0xA7FF:
        return "out of resources"
    if status == 0xA900:
        return "identifier does not match the SOP class"
    if 0xC000 <= status <= 0xCFFF:
        return "unable to process"
    if status == CANCEL:
        return "cancelled"
    return "failed"


class UnsupportedError(Exception):
    """The PACS answered a request with a failure status (the caller may try another way)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"status 0x{status:04X}")
        self.status = status


def _set_nodelay(event: Any) -> None:
    with contextlib.suppress(AttributeError, OSError):  # the socket may have closed at once
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Association:
    """An association from radshare to ``node``; raises ``PacsError`` when it cannot be established."""

    def __init__(
        self,
        node: PacsNode,
        contexts: Sequence[tuple[str, Sequence[str] | None]],
        *,
        timeout: float,
        roles: Sequence[str] = (),
        handlers: Sequence[tuple[Any, Any]] = (),
    ) -> None:
        self.node = node
        self.timeout = timeout
        self.ae = AE(ae_title=settings.RADSHARE.dicom_ae_title)
        self.ae.connection_timeout = CONNECT_TIMEOUT
        self.ae.acse_timeout = min(ACSE_TIMEOUT, timeout)
        self.ae.dimse_timeout = timeout
        self.ae.network_timeout = timeout
        self.ae.maximum_pdu_size = 0  # no limit on what we receive: fewer, bigger PDUs
        for abstract_syntax, transfer_syntaxes in contexts:
            if transfer_syntaxes is None:
                self.ae.add_requested_context(abstract_syntax)
            else:
                self.ae.add_requested_context(abstract_syntax, list(transfer_syntaxes))
        self.roles: list[Any] = [build_role(uid, scp_role=True) for uid in roles]
        self.handlers = list(handlers)
        self.connected = False
        self.rejection: tuple[int, int, int] | None = None
        self.assoc: Any = None

    def _on_open(self, event: Any) -> None:
        self.connected = True
        _set_nodelay(event)

    def _on_acse(self, event: Any) -> None:
        primitive = event.primitive
        if isinstance(primitive, A_ASSOCIATE) and primitive.result in (1, 2):
            self.rejection = (
                int(primitive.result or 0),
                int(primitive.result_source or 0),
                int(primitive.diagnostic or 0),
            )

    def __enter__(self) -> Any:
        node = self.node
        started = time.monotonic()
        self.assoc = self.ae.associate(
            node.host,
            int(node.port or 0),
            ae_title=node.ae_title,
            ext_neg=self.roles or None,
            evt_handlers=[
                (evt.EVT_CONN_OPEN, self._on_open),
                (evt.EVT_ACSE_RECV, self._on_acse),
                *self.handlers,
            ],
        )
        if self.assoc.is_established:
            return self.assoc
        raise self._failure(time.monotonic() - started)

    def _failure(self, elapsed: float) -> PacsError:
        if self.rejection is not None:
            result, source, diagnostic = self.rejection
            why = _REJECT_REASONS.get((source, diagnostic), "no reason given")
            return PacsError(
                f"the PACS refused the association ({why})",
                code=Failure.ASSOCIATION_REJECTED,
                temporary=result == 2 or source == 3,
            )
        if not self.connected:
            return PacsError(
                f"the PACS could not be reached at {self.node.host}:{self.node.port} (connection refused or timed "
                "out)",
                code=Failure.UNREACHABLE,
                temporary=True,
            )
        if self.assoc.rejected_contexts and not self.assoc.accepted_contexts:
            return PacsError(NO_SERVICE, code=Failure.NO_SERVICE, temporary=False)
        acse_timeout = float(self.ae.acse_timeout or ACSE_TIMEOUT)
        if elapsed >= acse_timeout - 0.5:
            return PacsError(
                f"no answer from the PACS within {acse_timeout:g} s", code=Failure.TIMEOUT, temporary=True
            )
        return PacsError("the PACS broke off the association", code=Failure.BROKEN_OFF, temporary=True)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.assoc is None or not self.assoc.is_established:
            return
        if exc_type is None:
            self.assoc.release()
        else:
            self.assoc.abort()


def read_responses(
    assoc: Any, responses: Iterator[tuple[Dataset, Dataset | None]], timeout: float
) -> Iterator[tuple[int, Dataset, Dataset | None]]:
    """(status, status data set, identifier) of each response; PacsError when the association breaks."""
    last = time.monotonic()
    for status, identifier in responses:
        if "Status" not in status:  # pynetdicom yields an empty status on timeout, abort or a broken message
            if time.monotonic() - last >= timeout - 0.5:
                raise PacsError(
                    f"no answer from the PACS within {timeout:g} s", code=Failure.TIMEOUT, temporary=True
                )
            raise PacsError("the PACS broke off the association", code=Failure.BROKEN_OFF, temporary=True)
        last = time.monotonic()
        yield int(status.Status), status, identifier


def echo(node: PacsNode) -> str:
    started = time.monotonic()
    with Association(node, [(Verification, None)], timeout=ECHO_TIMEOUT) as assoc:
        status = assoc.send_c_echo()
        if "Status" not in status:
            raise PacsError(
                f"no answer to C-ECHO within {ECHO_TIMEOUT:g} s", code=Failure.TIMEOUT, temporary=True
            )
        if int(status.Status) != SUCCESS:
            raise PacsError(
                f"the PACS answered C-ECHO with status 0x{int(status.Status):04X}",
                code=Failure.ECHO_FAILED,
                temporary=False,
            )
    return f"C-ECHO ok ({(time.monotonic() - started) * 1000:.0f} ms)"
