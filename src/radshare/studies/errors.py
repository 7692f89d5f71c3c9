"""Why ingest refuses an instance: each error carries the C-STORE failure status it is answered with (PS3.4 Annex
B.2.3). Raised by ``header.py`` (reading) and ``services.py`` (storing and indexing); every ingest path catches
``IngestError``."""

from __future__ import annotations

BEING_DESTROYED = "the study is being removed; send it again later"


class IngestError(Exception):
    """The data cannot be stored. ``status`` is the DICOM C-STORE failure status (PS3.4 Annex B.2.3)."""

    status = 0xC000

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotDicomError(IngestError):
    status = 0xC000  # Error: cannot understand


class TruncatedError(NotDicomError):
    """The data ends before a value, a sequence or the pixel data does, or holds fewer pixel bytes than its
    image attributes call for (PS3.5 sections 7.5 and 8.1.1, Annex A.4).

    0xC000 "cannot understand" (PS3.4 Annex B.2.3), not 0xA900 "does not match SOP class", for pixel data too:
    the usual cause is a transfer or copy cut off, which is 0xC000 wherever the cut falls (in the header it
    leaves bytes no reader understands), and the defect lies in the encoding (PS3.5), not in the attributes
    the IOD requires (PS3.3), which is what radshare answers 0xA900 for.
    """

    status = 0xC000


class MissingAttributeError(IngestError):
    status = 0xA900  # Error: data set does not match SOP class


class ConflictError(IngestError):
    status = 0xA900


class OutOfResourcesError(IngestError):
    status = 0xA700  # Refused: out of resources


class StudyBeingDestroyedError(OutOfResourcesError):
    """An instance of a study whose destruction has started: refused for now (0xA700), so the sender tries again
    and the study is then simply new (docs/architecture.md "Destruction"). Acknowledging it would lose it."""


class StaleIdsError(Exception):
    """A cached id no longer holds (the study moved to another patient): forget the cache and index afresh. Never
    leaves ingest (``services.store_instance`` retries)."""
