"""Share-scoped, read-only DICOMweb for the logged-in recipient (docs/requirements.md B6.4; docs/security.md A6, A10,
A13, A16, R5; docs/architecture.md "Downloads"), so that a standard viewer or dicomweb-client can open a share.

Under ``/r/dicomweb/`` (the recipient's URL space; the paths hold Study, Series and SOP Instance UIDs, as DICOMweb
requires, and nothing else), one module per concern:

* ``qido``: QIDO-RS searches (PS3.18 10.6), answered from the index; never counted.
* ``wado``: WADO-RS retrieves of studies, series and instances (the stored bytes, streamed), their metadata, and
  frames (read by ``frames``); retrieves count against the downloads' daily limit.
* ``negotiation``: the Accept header (DICOM JSON, ``multipart/related`` in the stored transfer syntax: radshare
  never transcodes) and the multipart bodies.
* ``common``: the gate, the look-ups through the share, the answers and the audit of refusals.
* ``urls``: the paths.

Everything is scoped to the session's share: a UID of another share, of another organisation, a malformed one and
an unknown one are the same 404 (A10), and the refusal is audited. Off (404 for every path) unless
``RADSHARE_RECIPIENT_DICOMWEB``; without a recipient session a 401 (clients are programs: no redirect).
"""

from __future__ import annotations

from radshare.viewer.dicomweb.common import METADATA, QUERY, RETRIEVE
from radshare.viewer.dicomweb.negotiation import MediaRange, accepts_multipart, media_ranges
from radshare.viewer.dicomweb.qido import wildcard_match
from radshare.viewer.dicomweb.urls import urlpatterns

__all__ = [
    "METADATA",
    "QUERY",
    "RETRIEVE",
    "MediaRange",
    "accepts_multipart",
    "media_ranges",
    "urlpatterns",
    "wildcard_match",
]
