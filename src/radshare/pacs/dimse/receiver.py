"""Storing the images a C-GET delivers on its own association, as radshare's storage SCP stores what it receives.

Each C-STORE is answered with the status an SCP would give: success (stored, or already here), a refusal for bad
data, or out of resources when the disk or the database fails. The counts tell the retrieve what arrived.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, close_old_connections, connection

from radshare.dicom import received_file
from radshare.organisations.models import PacsNode
from radshare.pacs.dimse.association import OUT_OF_RESOURCES, SUCCESS
from radshare.studies.errors import IngestError, OutOfResourcesError
from radshare.studies.services import StoreOutcome, store_instance

# The package's logger: every DIMSE log line keeps the one name, radshare.pacs.dimse.
logger = logging.getLogger("radshare.pacs.dimse")


@dataclass
class Receiver:
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
                # pynetdicom's association thread took this request (see ``query.c_find``): its database connection
                # would outlive the association.
                connection.close()

    def _store(self, event: Any) -> int:
        try:
            data = received_file(event)
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
