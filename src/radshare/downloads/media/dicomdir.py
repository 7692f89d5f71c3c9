"""The DICOMDIR of the DICOM media (docs/requirements.md B6.3; docs/architecture.md "DICOM media ZIP"; PS3.10 8,
PS3.3 Annex F): a directory of exactly the files in the ZIP under their file ids, PATIENT -> STUDY -> SERIES ->
one record per file, written without copying the files into a folder.

Its records are read from each series' first file header (and from every object that is not a plain image); the
keys a file lacks are filled from the index, so no file is left out. Explicit VR Little Endian, defined lengths.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.fileset import DIRECTORY_RECORDERS
from pydicom.fileset import _four_level_record_type as four_level_record_type  # the choice FileSet.add makes
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, MediaStorageDirectoryStorage

from radshare.core.storage import get_storage, instance_key
from radshare.dicom import IMPLEMENTATION_UID, IMPLEMENTATION_VERSION
from radshare.downloads.media.archive import MissingFileError
from radshare.imaging.reports.study import REPORT_READ_ERRORS
from radshare.studies.models import Instance, Series, Study

# A file of the ZIP: its file id, its instance, series and study, and their places in the ZIP (study, series,
# instance; 1-based).
Source = tuple[str, Instance, Series, Study, tuple[int, int, int]]

# Tags as written in Explicit VR Little Endian: (FFFE,E000) Item, (0004,1220) Directory Record Sequence,
# (0004,1400) and (0004,1420) the two offsets in each record.
_ITEM_TAG = b"\xfe\xff\x00\xe0"
_SEQUENCE_TAG = b"\x04\x00\x20\x12"
_NEXT_TAG = b"\x04\x00\x00\x14"
_LOWER_TAG = b"\x04\x00\x20\x14"
_REPORT_CONCEPT = ("18748-4", "LN", "Diagnostic Imaging Report")


@dataclass
class _Record:
    record: Dataset
    children: dict[str, _Record] = field(default_factory=dict)  # by key (patient id, study/series UID)
    leaves: list[_Record] = field(default_factory=list)

    def nodes(self) -> list[_Record]:
        return [*self.children.values(), *self.leaves]


def _empty(ds: Dataset, keyword: str) -> bool:
    if keyword not in ds:
        return True
    element = ds.get_item(keyword)  # not converted: cheaper than ds[keyword]
    return element.length == 0 if isinstance(element, RawDataElement) else element.VM == 0


def _fill(ds: Dataset, keyword: str, value: Any) -> None:
    """Derive a DICOMDIR record key the file lacks (docs/architecture.md: FileSet refuses datasets missing them)."""
    if _empty(ds, keyword):
        setattr(ds, keyword, value)


def _code(value: str, scheme: str, meaning: str) -> Sequence:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return Sequence([item])


def _record(record_type: str, ds: Dataset) -> Dataset:
    record = DIRECTORY_RECORDERS[record_type](ds)
    record.OffsetOfTheNextDirectoryRecord = 0
    record.RecordInUseFlag = 0xFFFF
    record.OffsetOfReferencedLowerLevelDirectoryEntity = 0
    record.DirectoryRecordType = record_type
    if "SpecificCharacterSet" in ds:
        record.SpecificCharacterSet = ds.SpecificCharacterSet
    if "ContentSequence" in record:
        # Only the concept modifiers of the document title belong in the record (PS3.3 F.5.20, F.5.21), not
        # the report itself (pydicom copies the whole tree).
        modifiers = [i for i in record.ContentSequence if i.get("RelationshipType") == "HAS CONCEPT MOD"]
        if modifiers:
            record.ContentSequence = Sequence(modifiers)
        else:
            del record.ContentSequence
    return record


def _leaf_record(ds: Dataset) -> Dataset:
    """The instance's own record (IMAGE, SR DOCUMENT, ENCAP DOC, ...), its required keys derived when absent."""
    record_type = four_level_record_type(ds)
    date = str(ds.get("InstanceCreationDate") or ds.get("StudyDate") or "")
    time = str(ds.get("InstanceCreationTime") or ds.get("StudyTime") or "")
    _fill(ds, "ContentDate", date)
    _fill(ds, "ContentTime", time)
    if record_type in ("SR DOCUMENT", "KEY OBJECT DOC"):
        _fill(ds, "CompletionFlag", "PARTIAL")
        _fill(ds, "VerificationFlag", "UNVERIFIED")
        _fill(ds, "ConceptNameCodeSequence", _code(*_REPORT_CONCEPT))
    elif record_type == "ENCAP DOC":
        _fill(ds, "MIMETypeOfEncapsulatedDocument", "application/pdf")
    elif record_type == "PRESENTATION":
        _fill(ds, "PresentationCreationDate", date)
        _fill(ds, "PresentationCreationTime", time)
    try:
        return _record(record_type, ds)
    except ValueError:
        # A rarer object without its record's Type 1 keys: listed as an IMAGE record (only an Instance Number
        # is needed) rather than left out of the DICOMDIR.
        return _record("IMAGE", ds)


def _header(instance: Instance, series: Series, study: Study, numbers: tuple[int, int, int]) -> Dataset:
    """The file's header (no pixel data), with the keys the DICOMDIR needs filled from the index if missing;
    ``numbers``: the study's, series' and instance's positions in the ZIP, for what the index lacks too."""
    study_number, series_number, instance_number = numbers
    key = instance_key(instance.storage_key)
    try:
        # A value past 64 KiB (a PDF's document) is left unread; pydicom opens the file again by its name if one
        # is used. An object-storage backend must return a file that stays readable for that, or none is deferred.
        with get_storage().open(key) as stored:
            ds = dcmread(stored, stop_before_pixels=True, defer_size=64 * 1024)
    except REPORT_READ_ERRORS as exc:
        raise MissingFileError(key.rsplit("/", 1)[-1]) from exc
    received = timezone.localtime(instance.received_at)
    _fill(ds, "PatientID", study.patient.patient_id or "UNKNOWN")
    _fill(ds, "StudyInstanceUID", study.study_instance_uid)
    _fill(ds, "StudyDate", (study.study_date or received.date()).strftime("%Y%m%d"))
    _fill(ds, "StudyTime", study.study_time or "000000")
    _fill(ds, "StudyID", str(study_number))
    _fill(ds, "SeriesInstanceUID", series.series_instance_uid)
    _fill(ds, "Modality", series.modality or "OT")
    _fill(ds, "SeriesNumber", series.series_number if series.series_number is not None else series_number)
    _fill(
        ds,
        "InstanceNumber",
        instance.instance_number if instance.instance_number is not None else instance_number,
    )
    _fill(ds, "SOPClassUID", instance.sop_class_uid)
    _fill(ds, "SOPInstanceUID", instance.sop_instance_uid)
    return ds


def _references(
    leaf: Dataset, file_id: str, sop_class: str, sop_instance: str, transfer_syntax: str
) -> Dataset:
    """The keys that point a leaf record at its file (PS3.3 F.3.2.2): the file id as its components."""
    leaf.add_new(0x00041500, "CS", file_id.split("/"))  # Referenced File ID
    leaf.add_new(0x00041510, "UI", sop_class)  # ... SOP Class UID in File
    leaf.add_new(0x00041511, "UI", sop_instance)  # ... SOP Instance UID in File
    leaf.add_new(0x00041512, "UI", transfer_syntax)  # ... Transfer Syntax UID in File
    return leaf


def _image_record(parent: Dataset, instance: Instance, file_id: str, position: int) -> Dataset:
    """An IMAGE record from the index (it holds only the Instance Number, PS3.3 F.5.18), in the character set of
    its series' first file; built with add_new: a few hundred thousand setattr calls cost seconds."""
    record = Dataset()
    record.add_new(0x00041400, "UL", 0)  # Offset of the Next Directory Record
    record.add_new(0x00041410, "US", 0xFFFF)  # Record In-use Flag
    record.add_new(0x00041420, "UL", 0)  # Offset of Referenced Lower-Level Directory Entity
    record.add_new(0x00041430, "CS", "IMAGE")  # Directory Record Type
    if "SpecificCharacterSet" in parent:
        record.add_new(0x00080005, "CS", parent.SpecificCharacterSet)
    number = instance.instance_number if instance.instance_number is not None else position
    record.add_new(0x00200013, "IS", number)  # Instance Number
    return _references(
        record, file_id, instance.sop_class_uid, instance.sop_instance_uid, instance.transfer_syntax_uid
    )


def _is_plain_image(instance: Instance, series: Series) -> bool:
    """An image whose record is IMAGE (it has rows; its SOP class is none of the other record types)."""
    probe = Dataset()
    probe.SOPClassUID, probe.Modality = instance.sop_class_uid, series.modality
    return instance.rows is not None and four_level_record_type(probe) == "IMAGE"


def directory_entries(sources: Iterable[Source]) -> Iterator[tuple[Dataset, Dataset]]:
    """What the DICOMDIR is written from: per file, the header that gives its patient, study and series keys and
    its own record. Headers are read of each series' first file and of every object that is not a plain image;
    the IMAGE records come from the index (measured on a 600-image CT, the whole DICOM layout: 1.1 s with every
    header read, 0.4 s like this)."""
    first: dict[int, Dataset] = {}
    for file_id, instance, series, study, numbers in sources:
        parent = first.get(series.pk)
        if parent is not None and _is_plain_image(instance, series):
            yield parent, _image_record(parent, instance, file_id, numbers[2])
            continue
        ds = _header(instance, series, study, numbers)
        first.setdefault(series.pk, ds)
        leaf = _leaf_record(ds)
        yield (
            ds,
            _references(leaf, file_id, ds.SOPClassUID, ds.SOPInstanceUID, ds.file_meta.TransferSyntaxUID),
        )


# --- writing ------------------------------------------------------------------------------------------------


def _tree(files: Iterable[tuple[Dataset, Dataset]]) -> _Record:
    """PATIENT -> STUDY -> SERIES records made by pydicom's own record creators (``FileSet``'s), each file's own
    record below its series; taken one file at a time (only the records are kept)."""
    root = _Record(Dataset())

    def child(parent: _Record, key: str, record_type: str, ds: Dataset) -> _Record:
        if key not in parent.children:
            parent.children[key] = _Record(_record(record_type, ds))
        return parent.children[key]

    for ds, leaf in files:
        patient = child(root, str(ds.PatientID), "PATIENT", ds)
        study = child(patient, str(ds.StudyInstanceUID), "STUDY", ds)
        series = child(study, str(ds.SeriesInstanceUID), "SERIES", ds)
        series.leaves.append(_Record(leaf))
    return root


def _depth_first(node: _Record) -> list[_Record]:
    """The records below ``node``, each followed by the records below it."""
    order: list[_Record] = []
    for below in node.nodes():
        order.append(below)
        order += _depth_first(below)
    return order


def _file_set(uid: str) -> tuple[FileMetaDataset, Dataset]:
    """The DICOMDIR's file meta and its elements before the Directory Record Sequence (root offsets still 0)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MediaStorageDirectoryStorage
    meta.MediaStorageSOPInstanceUID = UID(uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(IMPLEMENTATION_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds = Dataset()
    ds.FileSetID = "RADSHARE"
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.FileSetConsistencyFlag = 0
    return meta, ds


def _head(meta: FileMetaDataset, ds: Dataset) -> bytes:
    """Preamble, file meta and the elements before the Directory Record Sequence."""
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    out.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=True)
    write_dataset(out, ds)
    return out.getvalue()


def _encode(record: Dataset) -> bytearray:
    """A record's bytes. Records sort by tag, so each starts with (0004,1400) Offset of the Next Directory Record
    (UL, value at bytes 8-11), (0004,1410) Record In-use Flag (US), (0004,1420) Offset of Referenced Lower-Level
    Directory Entity (UL, value at bytes 30-33): patched in place once the offsets are known."""
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    write_dataset(out, record)
    data = bytearray(out.getvalue())
    if data[0:4] != _NEXT_TAG or data[22:26] != _LOWER_TAG:
        raise RuntimeError("unexpected directory record layout")
    return data


def _link(node: _Record, offsets: dict[int, int], encoded: dict[int, bytearray]) -> None:
    """Patch into each record below ``node`` the offsets of the record after it and of the first one below it."""
    nodes = node.nodes()
    for i, below in enumerate(nodes):
        data = encoded[id(below)]
        following = offsets[id(nodes[i + 1])] if i + 1 < len(nodes) else 0
        lower = offsets[id(below.nodes()[0])] if below.nodes() else 0
        struct.pack_into("<L", data, 8, following)
        struct.pack_into("<L", data, 30, lower)
        _link(below, offsets, encoded)


def dicomdir(files: Iterable[tuple[Dataset, Dataset]], uid: str) -> bytes:
    """A DICOMDIR (PS3.10 8, PS3.3 F) for ``files``: (a header with the file's patient, study and series keys, its
    own record), in their order.

    The byte offsets between records are computed here, as ``FileSet.write`` does, because the files keep our names
    and are not copied into a folder. Each record is encoded once and its two offsets patched into the bytes.
    """
    root = _tree(files)
    order = _depth_first(root)
    meta, ds = _file_set(uid)
    encoded = {id(node): _encode(node.record) for node in order}
    offsets: dict[int, int] = {}
    offset = len(_head(meta, ds)) + 12  # after the sequence's own header: tag, VR, 2 reserved bytes, length
    for node in order:
        offsets[id(node)] = offset
        offset += 8 + len(encoded[id(node)])  # item tag and length, then the record
    _link(root, offsets, encoded)
    top = root.nodes()
    if top:
        ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = offsets[id(top[0])]
        ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = offsets[id(top[-1])]
    records = [encoded[id(node)] for node in order]
    length = sum(8 + len(data) for data in records)
    parts = [_head(meta, ds), _SEQUENCE_TAG, b"SQ\x00\x00", struct.pack("<L", length)]
    for data in records:
        parts += [_ITEM_TAG, struct.pack("<L", len(data)), bytes(data)]
    return b"".join(parts)
