"""Query/retrieve by DIMSE (pynetdicom as SCU): C-ECHO, C-FIND, C-MOVE and C-GET, Study Root (PS3.4 Annex C).

Every association calls with radshare's own AE title (``RADSHARE_DICOM_AE_TITLE``), sets ``TCP_NODELAY`` (without
it each small message waits ~40 ms for a delayed ACK) and bounds every wait: connecting, association negotiation
and each DIMSE response.

The parts: ``association`` opens the associations, knows the status codes and answers C-ECHO; ``query`` runs the
C-FINDs (studies, and the instances of a study); ``retrieve`` plans and runs a retrieve and judges its result, for
``move`` (C-MOVE to radshare's storage SCP) and ``get`` (C-GET, stored by ``receiver`` as the images arrive).
"""

from __future__ import annotations

from radshare.pacs.dimse.association import (
    ACSE_TIMEOUT,
    CANCEL,
    CONNECT_TIMEOUT,
    ECHO_TIMEOUT,
    NO_SERVICE,
    OUT_OF_RESOURCES,
    PENDING,
    SUCCESS,
    WARNING,
    echo,
)
from radshare.pacs.dimse.get import (
    CLASSES_PER_GET,
    FALLBACK_GET_CLASSES,
    GET_TRANSFER_SYNTAXES,
    MAX_CONTEXTS,
    get,
)
from radshare.pacs.dimse.move import move
from radshare.pacs.dimse.query import FIND_TIMEOUT, find_studies, list_instances
from radshare.pacs.dimse.retrieve import MOVE_SETUP, UIDS_PER_REQUEST

__all__ = [
    "ACSE_TIMEOUT",
    "CANCEL",
    "CLASSES_PER_GET",
    "CONNECT_TIMEOUT",
    "ECHO_TIMEOUT",
    "FALLBACK_GET_CLASSES",
    "FIND_TIMEOUT",
    "GET_TRANSFER_SYNTAXES",
    "MAX_CONTEXTS",
    "MOVE_SETUP",
    "NO_SERVICE",
    "OUT_OF_RESOURCES",
    "PENDING",
    "SUCCESS",
    "UIDS_PER_REQUEST",
    "WARNING",
    "echo",
    "find_studies",
    "get",
    "list_instances",
    "move",
]
