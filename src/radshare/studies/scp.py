"""radshare's DICOM storage SCP (pynetdicom): C-ECHO and C-STORE (PS3.4 Annex A and B).

* Associations are admitted by calling AE title (and host, where the PacsNode names one); anyone else gets
  A-ASSOCIATE-RJ "calling AE title not recognised" (PS3.8 Section 9.3.4) and an audit entry.
* C-STORE only persists and acknowledges: the received bytes are written as they came (compressed transfer
  syntaxes are never transcoded), fsynced, renamed into place, indexed and committed; then 0x0000.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom import _config as pynetdicom_config
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from radshare.audit.actions import Action
from radshare.audit.services import ActorType, Outcome, record
from radshare.dicom import received_file
from radshare.organisations.models import Organisation, PacsNode
from radshare.studies import journal
from radshare.studies.errors import IngestError
from radshare.studies.header import Header, read_header
from radshare.studies.indexer import JournalMode, Tally, record_association
from radshare.studies.models import Study
from radshare.studies.services import StoreOutcome, store_instance
from radshare.studies.signals import announce_arrivals

logger = logging.getLogger(__name__)

DEMO_ORGANISATION_SLUG = "demo"

# C-STORE statuses (PS3.4 Annex B.2.3 and PS3.7 Annex C).
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
PROCESSING_FAILURE = 0x0110
RENDER_REQUEST_EVERY = 50
# The upper layer's state "transport connection open, awaiting A-ASSOCIATE-RQ PDU" (PS3.8 Table 9-10).
AWAITING_ASSOCIATE_RQ = "Sta2"


@dataclass
class Admission:
    """An admitted association: where it files, and what it did (audited once, when it ends)."""

    organisation: Organisation
    node: PacsNode | None
    calling_ae_title: str = ""
    address: str = ""
    stored: int = 0
    duplicate: int = 0
    refused: int = 0
    study_uids: set[str] = field(default_factory=set)
    patients: set[int] = field(default_factory=set)
    key: str = ""  # journal mode: the association's name in the journal
    journaled: int = 0  # journal mode: acknowledged from the journal (filed by the indexer)

    def tally(self) -> Tally:
        return Tally(self.stored, self.duplicate, self.refused, 0, set(self.study_uids), set(self.patients))

    def journal_meta(self) -> dict[str, Any]:
        """What each of its journal records says of the association (``indexer.py`` reads it)."""
        node = self.node.pk if self.node is not None else None
        return {
            "a": self.key,
            "o": self.organisation.pk,
            "n": node,
            "ae": self.calling_ae_title,
            "ip": self.address,
        }


def admit(calling_ae_title: str, address: str) -> Admission | None:
    """The organisation an association files into, or None to reject it.

    A node with a host matches only that address; a node without a host matches any address. In demo mode
    (``RADSHARE_DICOM_ACCEPT_ANY``) an unknown caller is let into the demo organisation.
    """
    title = calling_ae_title.strip()
    nodes = list(
        PacsNode.objects.filter(ae_title=title, is_active=True, organisation__is_active=True).select_related(
            "organisation"
        )
    )
    exact = [n for n in nodes if n.host and n.host == address]
    anywhere = [n for n in nodes if not n.host]
    match = exact or anywhere
    if len(match) == 1:
        return Admission(match[0].organisation, match[0])
    if len(match) > 1:
        logger.warning("calling AE title matches %d PACS nodes without a host; rejected", len(match))
        return None
    if settings.RADSHARE.dicom_accept_any:
        demo = Organisation.objects.filter(slug=DEMO_ORGANISATION_SLUG, is_active=True).first()
        if demo is not None:
            return Admission(demo, None)
    return None


class StudyGate:
    """Journal mode: whether an instance may be acknowledged from the journal, checked before it is. Its study must
    not be filed under another patient, nor be being destroyed (docs/architecture.md "C-STORE ingest"). What the
    database says of a study is looked up at most once a second; a study not filed yet belongs to the first
    patient this process acknowledged it for. An instance the gate stops takes the synchronous path, which
    refuses it (0xA900, 0xA700) or files it, exactly."""

    FRESH = 1.0  # seconds a look-up stands

    def __init__(self) -> None:
        self._seen: dict[tuple[int, str], tuple[tuple[str, str], bool, float]] = {}
        self._lock = threading.Lock()

    def admits(self, organisation: Organisation, header: Header) -> bool:
        key = (organisation.pk, header.study_uid)
        patient = (header.issuer, header.patient_id)
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(key)
        if seen is None or now - seen[2] > self.FRESH:
            row = (
                Study.objects.filter(organisation=organisation, study_instance_uid=key[1])
                .values_list("patient__issuer_of_patient_id", "patient__patient_id", "destroy_started_at")
                .first()
            )
            if row is not None:
                seen = ((row[0], row[1]), row[2] is not None, now)
            else:  # not filed yet: the first patient acknowledged here, or this one
                seen = (seen[0] if seen else patient, False, now)
            with self._lock:
                if len(self._seen) > 4096:
                    self._seen.clear()
                self._seen[key] = seen
        return seen[0] == patient and not seen[1]

    def forget(self, organisation: Organisation, header: Header) -> None:
        with self._lock:
            self._seen.pop((organisation.pk, header.study_uid), None)


def _reject(assoc: Any, result: int, source: int, diagnostic: int) -> None:
    """Send A-ASSOCIATE-RJ and wait until it has left (as pynetdicom's own ACSE does), or the socket
    closes before the peer reads why. No EVT_RELEASED/EVT_ABORTED follows, so close this thread's database
    connection here (else it lingers, on PostgreSQL as a server session, until garbage collection)."""
    connection.close()
    assoc.acse.send_reject(result, source, diagnostic)
    assoc.kill()


class StorageSCP:
    """The AE and its handlers. ``start(block=False)`` returns the running server (for tests)."""

    def __init__(
        self, *, ae_title: str | None = None, bind: str | None = None, port: int | None = None
    ) -> None:
        cfg = settings.RADSHARE
        self.ae_title = ae_title or cfg.dicom_ae_title
        self.address = (bind or cfg.dicom_bind, cfg.dicom_port if port is None else port)
        self._admissions: dict[int, Admission] = {}
        self._lock = threading.Lock()
        self.ae = AE(ae_title=self.ae_title)
        self.ae.maximum_associations = cfg.dicom_max_associations
        self.ae.maximum_pdu_size = 0  # no limit on what we receive: fewer, bigger PDUs
        self.ae.network_timeout = 60
        self.ae.acse_timeout = 30
        self.ae.dimse_timeout = 60
        self.ae.add_supported_context(Verification)
        self.server: Any = None
        self.journal: JournalMode | None = None
        self.gate = StudyGate()

    def handlers(self) -> list[Any]:
        return [
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_C_ECHO, self.on_echo),
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_RELEASED, self.on_closed),
            (evt.EVT_ABORTED, self.on_closed),
            (evt.EVT_CONN_CLOSE, self.on_connection_closed),
        ]

    def start(self, *, block: bool = True) -> Any:
        # Accept every storage SOP class (private ones too: PACS send them) in every transfer syntax;
        # the data is stored as received.
        pynetdicom_config.UNRESTRICTED_STORAGE_SERVICE = True
        for cx in self.ae.supported_contexts:
            cx.transfer_syntax = list(ALL_TRANSFER_SYNTAXES)
        if settings.RADSHARE.ingest_journal and self.journal is None:
            self.journal = JournalMode(Path(settings.RADSHARE.data_dir) / "journal")
        self.server = self.ae.start_server(self.address, block=block, evt_handlers=self.handlers())
        return self.server

    def shutdown(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    # --- handlers (each runs in the association's own thread) ------------------------------------

    def on_requested(self, event: Any) -> None:
        close_old_connections()
        primitive = event.assoc.requestor.primitive
        calling = str(primitive.calling_ae_title).strip()
        address = str(event.assoc.requestor.address)
        try:
            admission = admit(calling, address)
        except DatabaseError:
            logger.exception("cannot look up PACS nodes; association rejected (transient)")
            # Rejected-transient, service provider (ACSE), no reason given (PS3.8 Table 9-21).
            _reject(event.assoc, 0x02, 0x02, 0x01)
            return
        if admission is None:
            try:
                record(
                    Action.DICOM_ASSOCIATION_REJECTED,
                    outcome=Outcome.DENIED,
                    actor_type=ActorType.DICOM_NODE,
                    actor_label=calling,
                    client=address,
                    detail={"reason": "calling AE title not recognised"},
                )
            except DatabaseError:
                logger.exception("cannot audit a rejected association; rejecting it all the same")
            logger.info("association rejected: unknown calling AE title from %s", address)
            # Rejected-permanent, service user, calling AE title not recognised.
            _reject(event.assoc, 0x01, 0x01, 0x03)
            return
        admission.calling_ae_title = calling
        admission.address = address
        if self.journal is not None:
            admission.key = self.journal.association_key()
        with self._lock:
            self._admissions[id(event.assoc)] = admission

    def on_closed(self, event: Any) -> None:
        with self._lock:
            admission = self._admissions.pop(id(event.assoc), None)
        if admission is not None and admission.stored:
            announce_arrivals()
        try:
            if admission is None:
                pass
            elif admission.journaled and self.journal is not None:
                # The indexer writes the entry once it has filed the association's instances (indexer.py).
                end = admission.journal_meta() | admission.tally().as_json()
                self.journal.writer.append(journal.ASSOCIATION_END, end)
                self.journal.nudge.set()  # the study is complete: filed now, not once more has gathered
            else:
                # One entry per association, not per image (docs/architecture.md "Audit granularity").
                record_association(
                    admission.organisation,
                    admission.node,
                    admission.calling_ae_title,
                    admission.address,
                    admission.tally(),
                )
        except DatabaseError:
            logger.exception("cannot write the audit entry for a finished association")
        except OSError as exc:
            logger.error("cannot write the end of an association to the journal: %s", exc.strerror)
        finally:
            connection.close()

    def on_connection_closed(self, event: Any) -> None:
        """A peer that closes the connection before asking for an association (a readiness check of the port, a
        load balancer's probe, a port scan) would leave pynetdicom's association thread waiting for the request
        until the ACSE timeout, 30 s, holding one of ``maximum_associations`` all that time: a few such probes
        would get real senders rejected. Wake that thread at once; it then ends as on a timeout (no association,
        no audit entry)."""
        dul = event.assoc.dul
        if dul.state_machine.current_state == AWAITING_ASSOCIATE_RQ:
            dul.to_user_queue.put(None)

    def on_echo(self, event: Any) -> int:
        return SUCCESS

    def on_store(self, event: Any) -> int | tuple[int, Any]:
        admission = self._admissions.get(id(event.assoc))
        if admission is None:  # cannot happen: admission precedes negotiation
            return PROCESSING_FAILURE
        try:
            data = received_file(event)
        except Exception:  # noqa: BLE001 - pynetdicom raises assorted errors for broken P-DATA
            admission.refused += 1
            logger.warning("C-STORE with unreadable data set refused")
            return 0xC000
        if self.journal is not None:
            return self._journal_store(self.journal, admission, data)
        return self._store_now(admission, data)

    def _journal_store(self, mode: JournalMode, admission: Admission, data: bytes) -> int:
        """Journal mode: check what can be checked before acknowledging, append to the journal (durable), answer;
        the indexer files it (indexer.py). What the gate stops waits for the journal to be filed, then takes the
        synchronous path."""
        mode.check_indexer()
        try:
            header = read_header(data)
            if not self.gate.admits(admission.organisation, header):
                self.gate.forget(admission.organisation, header)
                if not mode.drain():
                    admission.refused += 1
                    logger.warning("C-STORE refused (0xA700): the journal is not filed yet")
                    return OUT_OF_RESOURCES
                return self._store_now(admission, data, header)
            # The header as read goes with the bytes: the indexer files the record without parsing it again.
            mode.writer.append_instance({**admission.journal_meta(), "h": header.as_json()}, data)
        except IngestError as exc:
            return self._refused(admission, exc)
        except DatabaseError:
            admission.refused += 1
            logger.exception("C-STORE failed on the database; the sender may retry")
            close_old_connections()
            return OUT_OF_RESOURCES
        except OSError as exc:
            admission.refused += 1
            logger.error("C-STORE refused (0xA700): cannot write to the journal: %s", exc.strerror)
            return OUT_OF_RESOURCES
        admission.journaled += 1
        return SUCCESS

    def _refused(self, admission: Admission, exc: IngestError) -> int:
        admission.refused += 1
        # One line, no traceback; the reason names tags and sizes, never values (docs/security.md A21).
        # The association's audit entry counts it (on_closed).
        logger.warning(
            "C-STORE from %s refused (0x%04X): %s", admission.calling_ae_title, exc.status, exc.reason
        )
        return exc.status

    def _store_now(self, admission: Admission, data: bytes, header: Header | None = None) -> int:
        try:
            result = store_instance(
                admission.organisation, data, source="scp", node=admission.node, header=header
            )
        except IngestError as exc:
            return self._refused(admission, exc)
        except DatabaseError:
            admission.refused += 1
            logger.exception("C-STORE failed on the database; the sender may retry")
            close_old_connections()
            return OUT_OF_RESOURCES
        if result.outcome == StoreOutcome.STORED:
            admission.stored += 1
            if admission.stored % RENDER_REQUEST_EVERY == 0:
                announce_arrivals()  # long associations: start rendering while the rest arrives
        else:
            admission.duplicate += 1
        admission.study_uids.add(result.study_instance_uid)
        admission.patients.add(result.patient_pk)
        return SUCCESS
