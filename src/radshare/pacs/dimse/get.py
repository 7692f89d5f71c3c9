"""Retrieve by C-GET: the PACS sends the images back on the same association; each is stored as it arrives.

A C-GET association must offer a presentation context for every SOP class the PACS will send. With the classes
known, each gets one context per transfer syntax, so the PACS can send every instance as it holds it (original
bytes, docs/architecture.md); too many classes for one association are fetched over several.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

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
from pynetdicom import evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet  # type: ignore[attr-defined]

from radshare.organisations.models import PacsNode
from radshare.pacs.base import PacsError, ProgressCallback, RemoteInstance, RetrieveResult
from radshare.pacs.dimse.association import Association
from radshare.pacs.dimse.receiver import Receiver
from radshare.pacs.dimse.retrieve import Tally, image_requests, outcome, plan, run_retrieve

MAX_CONTEXTS = 128  # presentation contexts per association (odd ids 1..255, PS3.8 9.3.2.2)


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


def _contexts(classes: list[str], *, per_syntax: bool) -> list[tuple[str, Sequence[str] | None]]:
    """The presentation contexts of one C-GET association: the query model first, then each class's (one
    context per transfer syntax, or one listing them all)."""
    contexts: list[tuple[str, Sequence[str] | None]]
    if per_syntax:
        contexts = [(uid, [ts]) for uid in classes for ts in GET_TRANSFER_SYNTAXES]
    else:
        contexts = [(uid, list(GET_TRANSFER_SYNTAXES)) for uid in classes]
    contexts.insert(0, (StudyRootQueryRetrieveInformationModelGet, None))
    return contexts


def _arrived(
    receiver: Receiver, missing: list[RemoteInstance] | None, *, expected: int | None, already_here: int
) -> RetrieveResult:
    """What a C-GET broken off part-way stored, and how much of what was missing is still missing."""
    unfinished = len(missing) - len(receiver.stored) - len(receiver.duplicate) if missing is not None else 0
    return RetrieveResult(
        expected, len(receiver.stored), already_here + len(receiver.duplicate), max(unfinished, 0)
    )


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
    receiver = Receiver(node)
    tally = Tally(base=already_here)
    for classes, subset, per_syntax in _get_groups(missing):
        # Only some classes on these associations: ask for exactly their images.
        requests = plan(remote, missing) if subset is None else image_requests(subset)
        try:
            run_retrieve(
                partial(
                    Association,
                    node,
                    _contexts(classes, per_syntax=per_syntax),
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
            exc.result = _arrived(receiver, missing, expected=expected, already_here=already_here)
            raise
        if tally.refusal is not None:
            break
    return outcome(
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
