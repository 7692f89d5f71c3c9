"""Query/retrieve by DICOMweb (dicomweb-client): QIDO-RS to search, WADO-RS to fetch (PS3.18).

Instances are asked for in the transfer syntax the PACS holds them in (``transfer-syntax=*``): no transcoding, and
radshare stores each part of the multipart answer byte for byte (see ``_part10``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from io import BytesIO
from typing import Any
from urllib.parse import urlsplit

import requests
from dicomweb_client import DICOMwebClient
from django.db import DatabaseError, close_old_connections
from pydicom.dataset import Dataset, FileDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import generate_uid

from radshare.organisations.models import PacsNode
from radshare.pacs.base import (
    STUDY_RETURN_KEYS,
    Failure,
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
from radshare.studies.errors import IngestError, OutOfResourcesError
from radshare.studies.services import StoreOutcome, store_instance

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
ECHO_TIMEOUT = 10.0
FIND_TIMEOUT = 60.0
ORIGINAL = (("application/dicom", "*"),)  # any transfer syntax: the one the PACS stored


class _Session(requests.Session):
    """Sends the QIDO-RS wildcards ``*`` and ``?`` and the UID list separator ``,`` as themselves.

    dicomweb-client percent-encodes every query value (``*`` -> ``%2A``). Both spellings mean the same to a server
    that decodes its query string; Orthanc 1.10's DICOMweb plugin does not decode it, and then matches nothing.
    All three characters are allowed unencoded in a URI query (RFC 3986 3.4). (Other encoded characters, such as
    non-ASCII letters in a name, stay encoded as they must: Orthanc 1.10 will not match those by QIDO-RS.)
    """

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if request.url and "?" in request.url:
            path, _, query = request.url.partition("?")
            for encoded, plain in (
                ("%2A", "*"),
                ("%2a", "*"),
                ("%3F", "?"),
                ("%3f", "?"),
                ("%2C", ","),
                ("%2c", ","),
            ):
                query = query.replace(encoded, plain)
            request.url = f"{path}?{query}"
        return super().send(request, **kwargs)


def _client(node: PacsNode, timeout: float) -> DICOMwebClient:
    session = _Session()
    if node.dicomweb_auth == "basic":
        session.auth = (node.dicomweb_username, node.get_dicomweb_secret())
    elif node.dicomweb_auth == "bearer":
        session.headers["Authorization"] = f"Bearer {node.get_dicomweb_secret()}"
    client = DICOMwebClient(
        url=node.dicomweb_url.rstrip("/"), session=session, timeout=(CONNECT_TIMEOUT, timeout)
    )
    # No silent retries with back-off inside one call: the caller retries a temporary failure as a whole.
    client.set_http_retry_params(retry=False)
    return client


def _where(node: PacsNode) -> str:
    parts = urlsplit(node.dicomweb_url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


@contextmanager
def _http_errors(node: PacsNode, timeout: float, *, what: str = "answer") -> Iterator[None]:
    """Translate requests' exceptions into PacsError (no URL in the reason: a query URL holds patient data)."""
    try:
        yield
    except requests.exceptions.ConnectTimeout:
        raise PacsError(
            f"the PACS could not be reached at {_where(node)} (no connection within {CONNECT_TIMEOUT:g} s)",
            code=Failure.UNREACHABLE,
            temporary=True,
        ) from None
    except requests.exceptions.ReadTimeout:
        raise PacsError(
            f"no answer from the PACS within {timeout:g} s", code=Failure.TIMEOUT, temporary=True
        ) from None
    except requests.exceptions.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status in (401, 403):
            raise PacsError(
                f"the PACS refused radshare's DICOMweb credentials (HTTP {status})",
                code=Failure.CREDENTIALS_REFUSED,
                temporary=False,
            ) from None
        if status == 404 and what == "transfer":
            raise PacsError(
                "the PACS has no images of this study (HTTP 404)", code=Failure.NO_IMAGES, temporary=False
            ) from None
        temporary = status in (408, 429) or status >= 500
        raise PacsError(
            f"the PACS answered HTTP {status}", code=Failure.HTTP_ERROR, temporary=temporary
        ) from None
    except requests.exceptions.SSLError:
        raise PacsError(
            f"the TLS certificate of {_where(node)} could not be verified",
            code=Failure.TLS_UNVERIFIED,
            temporary=False,
        ) from None
    except requests.exceptions.ConnectionError as exc:
        if what == "transfer":
            # Streaming: a read timeout or a dropped connection mid-answer also arrives as ConnectionError.
            raise PacsError(
                f"the PACS broke off the transfer (or sent nothing for {timeout:g} s)",
                code=Failure.BROKEN_OFF,
                temporary=True,
            ) from exc
        raise PacsError(
            f"the PACS could not be reached at {_where(node)} (connection refused or dropped)",
            code=Failure.UNREACHABLE,
            temporary=True,
        ) from None
    except requests.exceptions.RequestException:
        raise PacsError(
            "the DICOMweb request to the PACS failed", code=Failure.REQUEST_FAILED, temporary=True
        ) from None
    except (ValueError, KeyError, EOFError, InvalidDicomError) as exc:
        # dicomweb-client/pydicom could not read the answer (not JSON, not multipart, not DICOM).
        raise PacsError(
            f"the PACS sent an answer radshare cannot read ({type(exc).__name__})",
            code=Failure.UNREADABLE_ANSWER,
            temporary=False,
        ) from None


def echo(node: PacsNode) -> str:
    """A QIDO-RS query that matches nothing (a fresh UID): proves address, DICOMweb root and credentials without
    reading any patient's data."""
    started = time.monotonic()
    client = _client(node, ECHO_TIMEOUT)
    with _http_errors(node, ECHO_TIMEOUT):
        client.search_for_studies(search_filters={"StudyInstanceUID": generate_uid()}, limit=1)
    return f"QIDO-RS ok ({(time.monotonic() - started) * 1000:.0f} ms)"


def _datasets(answers: list[dict[str, Any]]) -> list[Dataset]:
    datasets = []
    for answer in answers:
        try:
            datasets.append(Dataset.from_json(answer))
        except (ValueError, KeyError, TypeError, AttributeError):
            logger.warning("QIDO-RS: an unreadable answer item was skipped")
    return datasets


def find_studies(node: PacsNode, keys: dict[str, str], uids: list[str], limit: int) -> list[PacsStudy]:
    client = _client(node, FIND_TIMEOUT)
    modality = keys.get("ModalitiesInStudy", "")
    filters: dict[str, Any] = dict(keys)
    if uids:
        filters["StudyInstanceUID"] = ",".join(uids)  # UID list matching (PS3.18 8.3.4.1)
    fields = [k for k in STUDY_RETURN_KEYS if k not in filters]
    with _http_errors(node, FIND_TIMEOUT):
        try:
            answers = client.search_for_studies(search_filters=filters, fields=fields, limit=limit)
        except requests.exceptions.HTTPError as exc:
            if not modality or exc.response is None or exc.response.status_code != 400:
                raise
            # A server that refuses ModalitiesInStudy as a matching key: ask without it, filter here.
            del filters["ModalitiesInStudy"]
            answers = client.search_for_studies(search_filters=filters, fields=fields, limit=limit)
        studies = [s for s in (study_from_dataset(d) for d in _datasets(answers)) if s is not None]
        completed = []
        for study in studies:
            if not study.modalities:
                series = _datasets(client.search_for_series(study.study_instance_uid, fields=["Modality"]))
                found: dict[str, None] = {}
                for ds in series:
                    found.update(dict.fromkeys(modalities_of(ds, "Modality")))
                study = replace(study, modalities=tuple(found))
            completed.append(study)
    if modality:
        completed = [s for s in completed if modality in s.modalities]
    return completed


def list_instances(node: PacsNode, study_uid: str, timeout: float) -> list[RemoteInstance] | None:
    """Every instance of the study on the PACS, or None when the server cannot list them."""
    client = _client(node, min(timeout, FIND_TIMEOUT))
    with _http_errors(node, timeout):
        try:
            answers = client.search_for_instances(
                study_instance_uid=study_uid,
                fields=["SOPClassUID", "SeriesInstanceUID", "SOPInstanceUID"],
                get_remaining=True,
            )
        except requests.exceptions.HTTPError as exc:
            if exc.response is not None and exc.response.status_code in (400, 404, 501):
                return None
            raise
    instances = [i for i in (instance_from_dataset(d) for d in _datasets(answers)) if i is not None]
    return list({i.sop_instance_uid: i for i in instances}.values())


def _part10(ds: Dataset) -> bytes:
    """The bytes of one WADO-RS part, as the PACS sent them.

    dicomweb-client hands over each part read by pydicom from an in-memory buffer, which pydicom keeps
    (``FileDataset.buffer``): those are the received bytes. Were it ever otherwise, or a part lacked the Part 10
    header, pydicom writes the data set back (byte for byte the same for every file the tests use).
    """
    buffer = getattr(ds, "buffer", None) if isinstance(ds, FileDataset) else None
    if isinstance(buffer, BytesIO):
        data = buffer.getvalue()
        if data[128:132] == b"DICM":
            return data
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@dataclass
class _Receiver:
    node: PacsNode
    stored: set[str] = field(default_factory=set)
    duplicate: set[str] = field(default_factory=set)
    refused: int = 0
    temporary_refusals: int = 0

    def store(self, ds: Dataset) -> None:
        try:
            data = _part10(ds)
        except (ValueError, TypeError, AttributeError, KeyError, OSError):
            self.refused += 1
            logger.warning("WADO-RS: a part could not be written as a DICOM file and was refused")
            return
        try:
            result = store_instance(self.node.organisation, data, source="pacs", node=self.node)
        except OutOfResourcesError as exc:
            self.refused += 1
            self.temporary_refusals += 1
            logger.error("WADO-RS: an image could not be stored: %s", exc.reason)
            return
        except IngestError as exc:
            self.refused += 1
            logger.info("WADO-RS: an image was refused (0x%04X): %s", exc.status, exc.reason)
            return
        except DatabaseError:
            self.refused += 1
            self.temporary_refusals += 1
            logger.exception("WADO-RS: an image could not be indexed (database)")
            close_old_connections()
            return
        uid = str(ds.get("SOPInstanceUID", ""))
        (self.stored if result.outcome == StoreOutcome.STORED else self.duplicate).add(uid)


def _request(
    client: DICOMwebClient,
    study_uid: str,
    remote: list[RemoteInstance] | None,
    missing: list[RemoteInstance] | None,
    receive: Callable[[Iterable[Dataset]], None],
) -> None:
    """The whole study in one request when nothing of it is here, else each series of which nothing is here, and
    the rest instance by instance."""
    if remote is None or missing is None or len(missing) == len(remote):
        receive(client.iter_study(study_uid, media_types=ORIGINAL))
        return
    per_series: dict[str, int] = {}
    for instance in remote:
        per_series[instance.series_uid] = per_series.get(instance.series_uid, 0) + 1
    wanted: dict[str, list[str]] = {}
    for instance in missing:
        wanted.setdefault(instance.series_uid, []).append(instance.sop_instance_uid)
    for series_uid, sop_uids in wanted.items():
        if len(sop_uids) == per_series[series_uid]:
            receive(client.iter_series(study_uid, series_uid, media_types=ORIGINAL))
            continue
        for sop_uid in sop_uids:
            receive([client.retrieve_instance(study_uid, series_uid, sop_uid, media_types=ORIGINAL)])


def _result(
    receiver: _Receiver, missing: list[RemoteInstance] | None, expected: int | None, already_here: int
) -> RetrieveResult:
    """The counts of a transfer the PACS finished; raises the partial error when images did not arrive."""
    received = len(receiver.stored)
    if missing is not None:
        asked = len(missing)
        have = stored_uids(receiver.node.organisation_id, [m.sop_instance_uid for m in missing])
        failed = asked - len(have)
        result = RetrieveResult(expected, received, already_here + len(receiver.duplicate), failed)
        if failed:
            error = partial_error(failed, asked, result)
            error.temporary = receiver.refused == 0 or receiver.temporary_refusals > 0
            raise error
        return result
    result = RetrieveResult(None, received, already_here + len(receiver.duplicate), receiver.refused)
    if receiver.refused:
        raise partial_error(receiver.refused, receiver.refused + received + len(receiver.duplicate), result)
    return result


def retrieve(
    node: PacsNode,
    study_uid: str,
    remote: list[RemoteInstance] | None,
    missing: list[RemoteInstance] | None,
    *,
    already_here: int,
    on_progress: ProgressCallback | None,
    timeout: float,
) -> RetrieveResult:
    """WADO-RS: the whole study in one request when nothing of it is here, else each missing series (or instance)."""
    client = _client(node, timeout)
    expected = len(remote) if remote is not None else None
    receiver = _Receiver(node)

    def receive(datasets: Iterable[Dataset]) -> None:
        for ds in datasets:
            receiver.store(ds)
            if on_progress is not None:
                done = already_here + len(receiver.stored) + len(receiver.duplicate) + receiver.refused
                on_progress(done, expected)

    try:
        with _http_errors(node, timeout, what="transfer"):
            _request(client, study_uid, remote, missing, receive)
    except PacsError as exc:
        # Broken off part-way: what arrived is stored (a retry fetches only the rest).
        unfinished = (
            len(missing) - len(receiver.stored) - len(receiver.duplicate) if missing is not None else 0
        )
        exc.result = RetrieveResult(
            expected, len(receiver.stored), already_here + len(receiver.duplicate), max(unfinished, 0)
        )
        raise
    return _result(receiver, missing, expected, already_here)
