"""Query/retrieve by DIMSE (pynetdicom as SCU): C-ECHO, C-FIND, C-MOVE and C-GET, Study Root (PS3.4 Annex C).

Every association calls with radshare's own AE title (``RADSHARE_DICOM_AE_TITLE``), sets ``TCP_NODELAY`` (without
it each small message waits ~40 ms for a delayed ACK) and bounds every wait: connecting, association negotiation
and each DIMSE response.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from types import TracebackType
from typing import Any

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    MPEG4HP41,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, build_role, evt
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from radshare.organisations.models import PacsNode
from radshare.pacs.base import (
    STUDY_RETURN_KEYS,
    PacsError,
    PacsStudy,
    ProgressCallback,
    RemoteInstance,
    RetrieveResult,
    instance_from_dataset,
    modalities_of,
    partial_error,
    stored_uids,
    study_from_dataset,
)
from radshare.studies.services import IngestError, OutOfResourcesError, StoreOutcome, store_instance

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0  # seconds to open the TCP connection
ACSE_TIMEOUT = 30.0  # seconds for the answer to A-ASSOCIATE-RQ and A-RELEASE-RQ
ECHO_TIMEOUT = 10.0
FIND_TIMEOUT = 60.0
MAX_CONTEXTS = 128  # presentation contexts per association (odd ids 1..255, PS3.8 9.3.2.2)
UIDS_PER_REQUEST = 100  # SOP Instance UIDs in one IMAGE-level C-MOVE/C-GET identifier

PENDING = (0xFF00, 0xFF01)
SUCCESS = 0x0000
CANCEL = 0xFE00
WARNING = 0xB000  # sub-operations complete, one or more failures or warnings (C-MOVE/C-GET)
OUT_OF_RESOURCES = 0xA700

# Transfer syntaxes offered for each SOP class in a C-GET, one presentation context each, so that the PACS can
# send every instance in the transfer syntax it holds it in instead of transcoding (docs/architecture.md:
# original bytes).
GET_TRANSFER_SYNTAXES: tuple[UID, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
    DeflatedExplicitVRLittleEndian,
    MPEG4HP41,
    ExplicitVRBigEndian,
)
CLASSES_PER_GET = (MAX_CONTEXTS - 1) // len(GET_TRANSFER_SYNTAXES)

# SOP classes offered in a C-GET when the PACS cannot list a study's instances (one context each, every transfer
# syntax in it: the PACS may then transcode). The usual content of a radiology study.
FALLBACK_GET_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.4",  # MR Image
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image
    "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.2",  # Digital Mammography X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.3",  # Digital Intra-Oral X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image
    "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame Image
    "1.2.840.10008.5.1.4.1.1.12.1",  # X-Ray Angiographic Image
    "1.2.840.10008.5.1.4.1.1.12.2",  # X-Ray Radiofluoroscopic Image
    "1.2.840.10008.5.1.4.1.1.20",  # Nuclear Medicine Image
    "1.2.840.10008.5.1.4.1.1.128",  # Positron Emission Tomography Image
    "1.2.840.10008.5.1.4.1.1.13.1.3",  # Breast Tomosynthesis Image
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.59",  # Key Object Selection Document
    "1.2.840.10008.5.1.4.1.1.11.1",  # Grayscale Softcopy Presentation State
    "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
)

# A-ASSOCIATE-RJ (PS3.8 Table 9-21): (source, diagnostic) -> why, in the words an operator acts on.
_REJECT_REASONS = {
    (1, 2): "application context not supported",
    (1, 3): "calling AE title not known to it",
    (1, 7): "called AE title not known to it: check the node's AE title",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "too many associations",
}


def _status_text(status: int) -> str:
    if status == OUT_OF_RESOURCES or 0xA700 <= status <= 0xA7FF:
        return "out of resources"
    if status == 0xA900:
        return "identifier does not match the SOP class"
    if 0xC000 <= status <= 0xCFFF:
        return "unable to process"
    if status == CANCEL:
        return "cancelled"
    return "failed"


class _UnsupportedError(Exception):
    """The PACS answered a request with a failure status (the caller may try another way)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"status 0x{status:04X}")
        self.status = status


def _set_nodelay(event: Any) -> None:
    with contextlib.suppress(AttributeError, OSError):  # the socket may have closed at once
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Association:
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
                f"the PACS refused the association ({why})", temporary=result == 2 or source == 3
            )
        if not self.connected:
            return PacsError(
                f"the PACS could not be reached at {self.node.host}:{self.node.port} (connection refused or timed "
                "out)",
                temporary=True,
            )
        if self.assoc.rejected_contexts and not self.assoc.accepted_contexts:
            return PacsError(NO_SERVICE, temporary=False)
        acse_timeout = float(self.ae.acse_timeout or ACSE_TIMEOUT)
        if elapsed >= acse_timeout - 0.5:
            return PacsError(f"no answer from the PACS within {acse_timeout:g} s", temporary=True)
        return PacsError("the PACS broke off the association", temporary=True)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.assoc is None or not self.assoc.is_established:
            return
        if exc_type is None:
            self.assoc.release()
        else:
            self.assoc.abort()


def _responses(
    assoc: Any, responses: Iterator[tuple[Dataset, Dataset | None]], timeout: float
) -> Iterator[tuple[int, Dataset, Dataset | None]]:
    """(status, status data set, identifier) of each response; PacsError when the association breaks."""
    last = time.monotonic()
    for status, identifier in responses:
        if "Status" not in status:  # pynetdicom yields an empty status on timeout, abort or a broken message
            if time.monotonic() - last >= timeout - 0.5:
                raise PacsError(f"no answer from the PACS within {timeout:g} s", temporary=True)
            raise PacsError("the PACS broke off the association", temporary=True)
        last = time.monotonic()
        yield int(status.Status), status, identifier


def echo(node: PacsNode) -> str:
    started = time.monotonic()
    with _Association(node, [(Verification, None)], timeout=ECHO_TIMEOUT) as assoc:
        status = assoc.send_c_echo()
        if "Status" not in status:
            raise PacsError(f"no answer to C-ECHO within {ECHO_TIMEOUT:g} s", temporary=True)
        if int(status.Status) != SUCCESS:
            raise PacsError(
                f"the PACS answered C-ECHO with status 0x{int(status.Status):04X}", temporary=False
            )
    return f"C-ECHO ok ({(time.monotonic() - started) * 1000:.0f} ms)"


# --- C-FIND -------------------------------------------------------------------------------------------------------


def _find(
    node: PacsNode, identifier: Dataset, *, limit: int | None = None, timeout: float = FIND_TIMEOUT
) -> list[Dataset]:
    """One C-FIND on its own association: the identifiers of the matches (at most ``limit``: then the rest is
    cancelled, PS3.4 C.4.1.2.3). Raises ``_UnsupportedError`` for a failure status.

    One request per association, always: pynetdicom's association thread may take the first answer to a second
    request on the same association for itself ("Received unexpected C-FIND service message") when the peer answers
    within microseconds, and that answer is lost (seen here with Orthanc on loopback).
    """
    found: list[Dataset] = []
    cancelled = False
    msg_id = 1
    with _Association(node, [(StudyRootQueryRetrieveInformationModelFind, None)], timeout=timeout) as assoc:
        for status, _, ident in _responses(
            assoc,
            assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind, msg_id=msg_id),
            timeout,
        ):
            if status in PENDING:
                if ident is not None and not cancelled:
                    found.append(ident)
                    if limit is not None and len(found) >= limit:
                        assoc.send_c_cancel(msg_id, query_model=StudyRootQueryRetrieveInformationModelFind)
                        cancelled = True
                continue
            if status == SUCCESS or (status == CANCEL and cancelled):
                return found
            raise _UnsupportedError(status)
    raise PacsError("the PACS broke off the query", temporary=True)  # pragma: no cover - a final always comes


def _study_identifier(keys: dict[str, str], uids: list[str], *, modality: bool) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for keyword in STUDY_RETURN_KEYS:
        setattr(ds, keyword, "")
    for keyword, value in keys.items():
        if keyword == "ModalitiesInStudy" and not modality:
            continue
        setattr(ds, keyword, value)
    if uids:
        ds.StudyInstanceUID = uids if len(uids) > 1 else uids[0]
    if any(not v.isascii() for v in keys.values()):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def _series_modalities(node: PacsNode, study_uid: str) -> tuple[str, ...]:
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = ""
    ds.Modality = ""
    try:
        answers = _find(node, ds)
    except _UnsupportedError:
        return ()
    seen: dict[str, None] = {}
    for answer in answers:
        seen.update(dict.fromkeys(modalities_of(answer, "Modality")))
    return tuple(seen)


def _query_error(status: int) -> PacsError:
    return PacsError(
        f"the PACS could not run the query ({_status_text(status)})", temporary=status == OUT_OF_RESOURCES
    )


def find_studies(node: PacsNode, keys: dict[str, str], uids: list[str], limit: int) -> list[PacsStudy]:
    modality = keys.get("ModalitiesInStudy", "")
    try:
        answers = _find(node, _study_identifier(keys, uids, modality=True), limit=limit)
    except _UnsupportedError as exc:
        if not modality:
            raise _query_error(exc.status) from None
        # Some PACS refuse ModalitiesInStudy as a matching key: ask without it and filter here.
        try:
            answers = _find(node, _study_identifier(keys, uids, modality=False), limit=limit)
        except _UnsupportedError as again:
            raise _query_error(again.status) from None
    studies: list[PacsStudy] = []
    for study in (s for s in (study_from_dataset(a) for a in answers) if s is not None):
        if not study.modalities:  # not returned: ask the series (needed to filter, and useful to show)
            study = replace(study, modalities=_series_modalities(node, study.study_instance_uid))
        studies.append(study)
    if modality:
        # A PACS that ignores the key returns every study; one that does not return ModalitiesInStudy was asked
        # per study above. Either way, keep what really has the modality.
        studies = [s for s in studies if modality in s.modalities]
    return studies


NO_SERVICE = "the PACS does not offer the requested DICOM service"


def _images(
    node: PacsNode, study_uid: str, series_uid: str | None, *, with_class: bool, timeout: float
) -> list[RemoteInstance]:
    image = Dataset()
    image.QueryRetrieveLevel = "IMAGE"
    image.StudyInstanceUID = study_uid
    image.SeriesInstanceUID = series_uid or ""
    image.SOPInstanceUID = ""
    if with_class:
        image.SOPClassUID = ""
    answers = _find(node, image, timeout=timeout)
    return [i for i in (instance_from_dataset(a) for a in answers) if i is not None]


def _images_of_series(
    node: PacsNode, study_uid: str, series_uid: str | None, *, with_classes: bool, timeout: float
) -> list[RemoteInstance]:
    """The images of one series (None: of the whole study); their classes if asked and the PACS can tell."""
    if with_classes:
        try:
            return _images(node, study_uid, series_uid, with_class=True, timeout=timeout)
        except _UnsupportedError:
            pass
    return _images(node, study_uid, series_uid, with_class=False, timeout=timeout)


def list_instances(
    node: PacsNode, study_uid: str, timeout: float, *, with_classes: bool
) -> list[RemoteInstance] | None:
    """Every instance of the study on the PACS, or None when the PACS cannot list them.

    First one IMAGE-level query for the whole study (most PACS answer it); a PACS that insists on the hierarchical
    model (PS3.4 C.4.1.3.1) is asked for the series, then for the images of each. ``with_classes`` also asks each
    SOP Class UID (a C-GET must offer a context for it); not every PACS can answer that from its index (Orthanc
    1.10 reads every file for it, and fails the whole query on a file it cannot read): then the instances come
    without their classes.
    """
    timeout = min(timeout, FIND_TIMEOUT)
    instances: list[RemoteInstance] = []
    try:
        try:
            instances = _images_of_series(node, study_uid, None, with_classes=with_classes, timeout=timeout)
        except _UnsupportedError:
            series = Dataset()
            series.QueryRetrieveLevel = "SERIES"
            series.StudyInstanceUID = study_uid
            series.SeriesInstanceUID = ""
            series_uids = [
                str(a.get("SeriesInstanceUID", "")).strip() for a in _find(node, series, timeout=timeout)
            ]
            for series_uid in dict.fromkeys(u for u in series_uids if u):
                instances.extend(
                    _images_of_series(node, study_uid, series_uid, with_classes=with_classes, timeout=timeout)
                )
    except _UnsupportedError:
        return None
    except PacsError as exc:
        if exc.reason == NO_SERVICE:
            return None
        raise
    return list({i.sop_instance_uid: i for i in instances}.values())


# --- C-MOVE and C-GET ---------------------------------------------------------------------------------------------


@dataclass
class _Request:
    level: str  # STUDY, SERIES or IMAGE
    series_uid: str = ""
    sop_uids: list[str] = field(default_factory=list)

    def identifier(self, study_uid: str) -> Dataset:
        ds = Dataset()
        ds.QueryRetrieveLevel = self.level
        ds.StudyInstanceUID = study_uid
        if self.level in ("SERIES", "IMAGE"):
            ds.SeriesInstanceUID = self.series_uid
        if self.level == "IMAGE":
            ds.SOPInstanceUID = self.sop_uids if len(self.sop_uids) > 1 else self.sop_uids[0]
        return ds


def _plan(remote: list[RemoteInstance] | None, missing: list[RemoteInstance] | None) -> list[_Request]:
    """The fewest requests that fetch exactly the missing instances: the study, whole series, or lists of images."""
    if remote is None or missing is None or len(missing) == len(remote):
        return [_Request("STUDY")]
    per_series: dict[str, int] = {}
    for instance in remote:
        per_series[instance.series_uid] = per_series.get(instance.series_uid, 0) + 1
    wanted: dict[str, list[str]] = {}
    for instance in missing:
        wanted.setdefault(instance.series_uid, []).append(instance.sop_instance_uid)
    requests: list[_Request] = []
    for series_uid, sop_uids in wanted.items():
        if len(sop_uids) == per_series[series_uid]:
            requests.append(_Request("SERIES", series_uid))
        else:
            for start in range(0, len(sop_uids), UIDS_PER_REQUEST):
                requests.append(_Request("IMAGE", series_uid, sop_uids[start : start + UIDS_PER_REQUEST]))
    return requests


@dataclass
class _Tally:
    """Sub-operation counts across the requests of one retrieve."""

    completed: int = 0
    failed: int = 0
    warning: int = 0
    base: int = 0  # already_here, counted as done for progress
    refusal: int | None = None  # the failure status that ended the retrieve

    def done(self, status: Dataset) -> int:
        return sum(
            int(status.get(k) or 0)
            for k in (
                "NumberOfCompletedSuboperations",
                "NumberOfFailedSuboperations",
                "NumberOfWarningSuboperations",
            )
        )

    def add_final(self, status: Dataset) -> None:
        self.completed += int(status.get("NumberOfCompletedSuboperations") or 0)
        self.failed += int(status.get("NumberOfFailedSuboperations") or 0)
        self.warning += int(status.get("NumberOfWarningSuboperations") or 0)


def _run_retrieve(
    association: Callable[[], _Association],
    requests: list[_Request],
    study_uid: str,
    *,
    move_destination: str | None,
    tally: _Tally,
    expected: int | None,
    on_progress: ProgressCallback | None,
    timeout: float,
) -> None:
    """Send each C-MOVE (to ``move_destination``) or C-GET request, each on its own association (see ``_find``),
    and add up the sub-operations.

    A request the PACS ends with a failure status stops the retrieve; the status is kept in ``tally.refusal``
    for the caller, who counts what arrived (a PACS may fail half-way, e.g. on an unreadable file).
    """
    for request in requests:
        identifier = request.identifier(study_uid)
        before = tally.base + tally.completed + tally.failed + tally.warning
        with association() as assoc:
            if move_destination is not None:
                responses = assoc.send_c_move(
                    identifier, move_destination, StudyRootQueryRetrieveInformationModelMove
                )
            else:
                responses = assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet)
            for status, status_ds, _ in _responses(assoc, responses, timeout):
                if status in PENDING:
                    if on_progress is not None:
                        on_progress(before + tally.done(status_ds), expected)
                    continue
                tally.add_final(status_ds)
                if status == 0xA801:
                    raise PacsError(
                        f"the PACS does not know radshare's AE title {move_destination!r} as a C-MOVE destination",
                        temporary=False,
                    )
                if status not in (SUCCESS, WARNING):
                    tally.refusal = status
                break
        if on_progress is not None:
            on_progress(tally.base + tally.completed + tally.failed + tally.warning, expected)
        if tally.refusal is not None:
            return


MOVE_SETUP = (
    "check that the PACS knows radshare's AE title with the address of radshare's storage SCP, and that the SCP "
    "admits the PACS (this node's AE title and host)"
)


def _refusal_error(status: int, *, moved: bool) -> PacsError:
    """Why nothing arrived, from the status that ended the retrieve."""
    if 0xA700 <= status <= 0xA7FF:
        return PacsError("the PACS is out of resources for this retrieve", temporary=True)
    if status == CANCEL:
        return PacsError("the PACS cancelled the retrieve", temporary=True)
    why = f"status 0x{status:04X}, {_status_text(status)}"
    if moved:
        # Most often the PACS could not open its association to radshare's SCP (refused, down, unknown to it);
        # radshare's audit trail shows a rejected association if the SCP turned it away.
        return PacsError(
            f"the PACS could not send the images to radshare ({why}): {MOVE_SETUP}", temporary=True
        )
    return PacsError(f"the PACS could not run the retrieve ({why})", temporary=False)


def _outcome(
    node: PacsNode,
    missing: list[RemoteInstance] | None,
    tally: _Tally,
    *,
    expected: int | None,
    already_here: int,
    received: int,
    duplicates: int = 0,
    refused: int = 0,
    temporary_refusals: int = 0,
    moved: bool = False,
) -> RetrieveResult:
    """The result, or PacsError when anything asked for is not here now (counted in the index, not believed).

    ``received``: what the transport counted as stored; used only when the PACS could not list the study.
    """
    if missing is not None:
        asked = len(missing)
        have = len(stored_uids(node.organisation_id, [m.sop_instance_uid for m in missing]))
        failed = asked - have
        received = have - duplicates  # stored by this retrieve (a duplicate arrived from elsewhere meanwhile)
    else:  # the PACS could not list the study: trust its counts
        have = received + duplicates
        failed = max(tally.failed, refused)
        asked = failed + have
    result = RetrieveResult(expected, received, already_here + duplicates, failed)
    if tally.refusal is not None and have == 0:
        raise _refusal_error(tally.refusal, moved=moved)
    if failed or tally.refusal is not None:
        hint = ""
        if tally.refusal is not None:
            hint = f"the PACS ended with status 0x{tally.refusal:04X}, {_status_text(tally.refusal)}"
        elif moved and tally.failed == 0:
            # The PACS reports every image sent, yet some are not in this organisation: filed elsewhere.
            hint = "the PACS reports them sent, but they were not stored in this organisation: " + MOVE_SETUP
        error = partial_error(max(failed, 1), asked, result, hint)
        # Our own refusals for bad data will not heal by retrying; everything else may.
        error.temporary = (
            refused == 0 or temporary_refusals > 0 or tally.failed > 0 or tally.refusal is not None
        )
        raise error
    return result


def move(
    node: PacsNode,
    study_uid: str,
    remote: list[RemoteInstance] | None,
    missing: list[RemoteInstance] | None,
    *,
    already_here: int,
    on_progress: ProgressCallback | None,
    timeout: float,
) -> RetrieveResult:
    """C-MOVE to radshare's own AE title; radshare's storage SCP (any process) receives and stores the images.

    What has to be configured for this to work:

    * the PACS knows radshare's AE title (``RADSHARE_DICOM_AE_TITLE``) as a C-MOVE destination, with the address
      and port (``RADSHARE_DICOM_PORT``) of a running radshare storage SCP it can reach;
    * the PACS accepts radshare's AE title as a caller (C-FIND and C-MOVE) from radshare's address;
    * radshare's SCP admits the PACS's storage association: the PACS must call with this node's AE title from this
      node's host (a PACS that sends under another AE title needs a node for that title too, in the same
      organisation, or the images land elsewhere and this retrieve reports them as not arrived).
    """
    destination = settings.RADSHARE.dicom_ae_title
    expected = len(remote) if remote is not None else None
    tally = _Tally(base=already_here)
    try:
        _run_retrieve(
            lambda: _Association(node, [(StudyRootQueryRetrieveInformationModelMove, None)], timeout=timeout),
            _plan(remote, missing),
            study_uid,
            move_destination=destination,
            tally=tally,
            expected=expected,
            on_progress=on_progress,
            timeout=timeout,
        )
    except PacsError as exc:
        # Broken off part-way: count what arrived (a retry fetches only the rest).
        if missing is not None:
            have = len(stored_uids(node.organisation_id, [m.sop_instance_uid for m in missing]))
            exc.result = RetrieveResult(expected, have, already_here, len(missing) - have)
        raise
    return _outcome(
        node,
        missing,
        tally,
        expected=expected,
        already_here=already_here,
        # What the PACS sent and radshare's SCP acknowledged (the SCP commits before it acknowledges).
        received=tally.completed + tally.warning,
        moved=True,
    )


@dataclass
class _Receiver:
    """Stores each image a C-GET delivers, as the storage SCP does (scp.py: the received bytes, file meta added)."""

    node: PacsNode
    stored: set[str] = field(default_factory=set)
    duplicate: set[str] = field(default_factory=set)
    refused: int = 0
    temporary_refusals: int = 0
    thread: int = field(default_factory=threading.get_ident)

    def on_store(self, event: Any) -> int:
        try:
            return self._store(event)
        finally:
            if threading.get_ident() != self.thread:
                # pynetdicom's association thread took this request (see ``_find``): its database connection
                # would outlive the association.
                connection.close()

    def _store(self, event: Any) -> int:
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception:  # noqa: BLE001 - pynetdicom raises assorted errors for broken P-DATA
            self.refused += 1
            logger.warning("C-GET: an image with unreadable data was refused")
            return 0xC000
        try:
            result = store_instance(self.node.organisation, data, source="pacs", node=self.node)
        except OutOfResourcesError as exc:
            self.refused += 1
            self.temporary_refusals += 1
            logger.error("C-GET: an image could not be stored: %s", exc.reason)
            return exc.status
        except IngestError as exc:
            self.refused += 1
            logger.info("C-GET: an image was refused (0x%04X): %s", exc.status, exc.reason)
            return exc.status
        except DatabaseError:
            self.refused += 1
            self.temporary_refusals += 1
            logger.exception("C-GET: an image could not be indexed (database)")
            close_old_connections()
            return OUT_OF_RESOURCES
        uid = str(event.request.AffectedSOPInstanceUID)
        if result.outcome == StoreOutcome.STORED:
            self.stored.add(uid)
        else:
            self.duplicate.add(uid)
        return SUCCESS


def _get_groups(
    missing: list[RemoteInstance] | None,
) -> list[tuple[list[str], list[RemoteInstance] | None, bool]]:
    """(SOP classes, the instances to fetch, one context per transfer syntax?) for each C-GET association.

    With the classes known, each gets one presentation context per transfer syntax, so that the PACS can send every
    instance as it holds it (more classes than fit in one association: several associations, each fetching the
    instances of its classes). Unknown classes: the usual ones, each with one context listing every transfer
    syntax (the PACS then picks one per class, and may transcode).
    """
    if missing is None or any(not m.sop_class_uid for m in missing):
        known = [m.sop_class_uid for m in missing or [] if m.sop_class_uid]
        classes = list(dict.fromkeys([*known, *FALLBACK_GET_CLASSES]))[: MAX_CONTEXTS - 1]
        return [(classes, None, False)]
    classes = list(dict.fromkeys(m.sop_class_uid for m in missing))
    if len(classes) <= CLASSES_PER_GET:
        return [(classes, None, True)]
    groups: list[tuple[list[str], list[RemoteInstance] | None, bool]] = []
    for start in range(0, len(classes), CLASSES_PER_GET):
        chunk = classes[start : start + CLASSES_PER_GET]
        groups.append((chunk, [m for m in missing if m.sop_class_uid in chunk], True))
    return groups


def get(
    node: PacsNode,
    study_uid: str,
    remote: list[RemoteInstance] | None,
    missing: list[RemoteInstance] | None,
    *,
    already_here: int,
    on_progress: ProgressCallback | None,
    timeout: float,
) -> RetrieveResult:
    """C-GET: the PACS sends the images back on the same association; each is stored here as it arrives."""
    expected = len(remote) if remote is not None else None
    receiver = _Receiver(node)
    tally = _Tally(base=already_here)
    for classes, subset, per_syntax in _get_groups(missing):
        contexts: list[tuple[str, Sequence[str] | None]]
        if per_syntax:
            contexts = [(uid, [ts]) for uid in classes for ts in GET_TRANSFER_SYNTAXES]
        else:
            contexts = [(uid, list(GET_TRANSFER_SYNTAXES)) for uid in classes]
        contexts.insert(0, (StudyRootQueryRetrieveInformationModelGet, None))
        # Only some classes on these associations: ask for exactly their images.
        requests = _plan(remote, missing) if subset is None else _image_requests(subset)
        try:
            _run_retrieve(
                partial(
                    _Association,
                    node,
                    contexts,
                    timeout=timeout,
                    roles=classes,
                    handlers=[(evt.EVT_C_STORE, receiver.on_store)],
                ),
                requests,
                study_uid,
                move_destination=None,
                tally=tally,
                expected=expected,
                on_progress=on_progress,
                timeout=timeout,
            )
        except PacsError as exc:
            # Broken off part-way: what arrived is stored (a retry fetches only the rest).
            unfinished = (
                len(missing) - len(receiver.stored) - len(receiver.duplicate) if missing is not None else 0
            )
            exc.result = RetrieveResult(
                expected, len(receiver.stored), already_here + len(receiver.duplicate), max(unfinished, 0)
            )
            raise
        if tally.refusal is not None:
            break
    return _outcome(
        node,
        missing,
        tally,
        expected=expected,
        already_here=already_here,
        received=len(receiver.stored),
        duplicates=len(receiver.duplicate),
        refused=receiver.refused,
        temporary_refusals=receiver.temporary_refusals,
    )


def _image_requests(instances: list[RemoteInstance]) -> list[_Request]:
    per_series: dict[str, list[str]] = {}
    for instance in instances:
        per_series.setdefault(instance.series_uid, []).append(instance.sop_instance_uid)
    requests: list[_Request] = []
    for series_uid, sop_uids in per_series.items():
        for start in range(0, len(sop_uids), UIDS_PER_REQUEST):
            requests.append(_Request("IMAGE", series_uid, sop_uids[start : start + UIDS_PER_REQUEST]))
    return requests
