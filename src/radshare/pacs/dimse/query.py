"""Queries by C-FIND (Study Root): the studies that match a search, and the instances of one study.

Each C-FIND runs on its own association (see ``c_find``). A PACS that refuses a query one way is asked another:
without ModalitiesInStudy as a matching key, or series by series when it insists on the hierarchical model.
"""

from __future__ import annotations

from dataclasses import replace

from pydicom.dataset import Dataset
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore[attr-defined]

from radshare.organisations.models import PacsNode
from radshare.pacs.base import (
    STUDY_RETURN_KEYS,
    Failure,
    PacsError,
    PacsStudy,
    RemoteInstance,
    instance_from_dataset,
    modalities_of,
    study_from_dataset,
)
from radshare.pacs.dimse.association import (
    CANCEL,
    OUT_OF_RESOURCES,
    PENDING,
    SUCCESS,
    Association,
    UnsupportedError,
    read_responses,
    status_text,
)

FIND_TIMEOUT = 60.0


def c_find(
    node: PacsNode, identifier: Dataset, *, limit: int | None = None, timeout: float = FIND_TIMEOUT
) -> list[Dataset]:
    """One C-FIND on its own association: the identifiers of the matches (at most ``limit``: then the rest is
    cancelled, PS3.4 C.4.1.2.3). Raises ``UnsupportedError`` for a failure status.

    One request per association, always: pynetdicom's association thread may take the first answer to a second
    request on the same association for itself ("Received unexpected C-FIND service message") when the peer answers
    within microseconds, and that answer is lost (seen here with Orthanc on loopback).
    """
    found: list[Dataset] = []
    cancelled = False
    msg_id = 1
    with Association(node, [(StudyRootQueryRetrieveInformationModelFind, None)], timeout=timeout) as assoc:
        for status, _, ident in read_responses(
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
            raise UnsupportedError(status)
    raise PacsError(  # pragma: no cover - a final always comes
        "the PACS broke off the query", code=Failure.BROKEN_OFF, temporary=True
    )


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
        answers = c_find(node, ds)
    except UnsupportedError:
        return ()
    seen: dict[str, None] = {}
    for answer in answers:
        seen.update(dict.fromkeys(modalities_of(answer, "Modality")))
    return tuple(seen)


def _query_error(status: int) -> PacsError:
    return PacsError(
        f"the PACS could not run the query ({status_text(status)})",
        code=Failure.QUERY_FAILED,
        temporary=status == OUT_OF_RESOURCES,
    )


def find_studies(node: PacsNode, keys: dict[str, str], uids: list[str], limit: int) -> list[PacsStudy]:
    modality = keys.get("ModalitiesInStudy", "")
    try:
        answers = c_find(node, _study_identifier(keys, uids, modality=True), limit=limit)
    except UnsupportedError as exc:
        if not modality:
            raise _query_error(exc.status) from None
        # Some PACS refuse ModalitiesInStudy as a matching key: ask without it and filter here.
        try:
            answers = c_find(node, _study_identifier(keys, uids, modality=False), limit=limit)
        except UnsupportedError as again:
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
    answers = c_find(node, image, timeout=timeout)
    return [i for i in (instance_from_dataset(a) for a in answers) if i is not None]


def _images_of_series(
    node: PacsNode, study_uid: str, series_uid: str | None, *, with_classes: bool, timeout: float
) -> list[RemoteInstance]:
    """The images of one series (None: of the whole study); their classes if asked and the PACS can tell."""
    if with_classes:
        try:
            return _images(node, study_uid, series_uid, with_class=True, timeout=timeout)
        except UnsupportedError:
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
        except UnsupportedError:
            series = Dataset()
            series.QueryRetrieveLevel = "SERIES"
            series.StudyInstanceUID = study_uid
            series.SeriesInstanceUID = ""
            series_uids = [
                str(a.get("SeriesInstanceUID", "")).strip() for a in c_find(node, series, timeout=timeout)
            ]
            for series_uid in dict.fromkeys(u for u in series_uids if u):
                instances.extend(
                    _images_of_series(node, study_uid, series_uid, with_classes=with_classes, timeout=timeout)
                )
    except UnsupportedError:
        return None
    except PacsError as exc:
        if exc.code == Failure.NO_SERVICE:
            return None
        raise
    return list({i.sop_instance_uid: i for i in instances}.values())
