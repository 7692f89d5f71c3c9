"""Upload in the sender portal (docs/requirements.md B1.4): DICOM files, ZIPs, and CD/DVD/USB exports with a DICOMDIR.

The request body is parsed into one unlinked temp file (``UploadSpool``): one descriptor and flat memory for a
DVD of thousands of files, and the size limit is enforced while reading, before anything is stored. Then every
file (and every ZIP member) is examined and stored through ``store_instance``, the same door as the storage SCP
(fsync + rename + commit, dedup per organisation by SOP Instance UID). A bad upload harms nothing already stored:
each good file is kept, each bad one reported, and a ZIP that is unreadable or too large is refused whole.
"""

from __future__ import annotations

import io
import logging
import os
import re
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from io import BytesIO
from typing import IO, Any, BinaryIO, cast

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.http import QueryDict
from django.http.multipartparser import FIELD, FILE, ChunkIter, LazyStream, Parser
from django.utils.datastructures import MultiValueDict
from django.utils.encoding import force_str
from pydicom import dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from radshare.core.storage import get_storage
from radshare.dicom import DICOM_READ_ERRORS, IMPLEMENTATION_UID
from radshare.organisations.models import Organisation
from radshare.studies.errors import (
    ConflictError,
    IngestError,
    MissingAttributeError,
    OutOfResourcesError,
    TruncatedError,
)
from radshare.studies.models import Instance, Study
from radshare.studies.services import StoreOutcome, store_instance
from radshare.studies.signals import announce_arrivals

logger = logging.getLogger(__name__)

MB = 1024 * 1024
FIELD_NAME = "files"
MAX_FILES = 50_000  # files in one request (a DVD holds a few thousand)
MAX_ENTRIES = 100_000  # files and ZIP members in one upload
# Multipart framing around each file (boundary, headers, path) on top of the files themselves.
CONTENT_LENGTH_SLACK = 16 * MB
MAX_FIELD_BYTES = 64 * 1024  # the form's plain fields: only the CSRF token
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage (PS3.10 section 8)
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic", ".ima")
_READ_ERRORS: tuple[type[Exception], ...] = DICOM_READ_ERRORS
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, NotImplementedError)


class Outcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"  # already present
    REFUSED = "refused"
    SKIPPED = "skipped"


class Reason(StrEnum):
    """Why a file was refused or skipped; the portal maps each to a text in the user's language."""

    UNREADABLE = "unreadable"  # looks like DICOM, cannot be read
    TRUNCATED = "truncated"
    MISSING_UIDS = "missing_uids"
    CONFLICT = "conflict"  # the study is filed under another patient
    STORAGE_FAILED = "storage_failed"
    ZIP_UNREADABLE = "zip_unreadable"
    ZIP_MEMBER_UNREADABLE = "zip_member_unreadable"
    ZIP_ENCRYPTED = "zip_encrypted"
    ZIP_TOO_LARGE = "zip_too_large"
    TOO_MANY_FILES = "too_many_files"
    MISSING_FROM_UPLOAD = "missing_from_upload"  # listed in a DICOMDIR, not uploaded
    NOT_DICOM = "not_dicom"
    EMPTY = "empty"
    NESTED_ARCHIVE = "nested_archive"
    DICOMDIR = "dicomdir"
    DICOMDIR_UNREADABLE = "dicomdir_unreadable"


@dataclass(frozen=True)
class FileResult:
    path: str  # as the user knows it: "DVD/DICOM/IM0001", or "scan.zip/DICOM/IM0001" for a ZIP member
    outcome: Outcome
    reason: Reason | None = None
    study_instance_uid: str = ""
    unlisted: bool = False  # beside a DICOMDIR that does not list it


@dataclass
class UploadReport:
    results: list[FileResult] = field(default_factory=list)
    counts: Counter[Outcome] = field(default_factory=Counter)
    study_uids: list[str] = field(
        default_factory=list
    )  # touched (stored or already present), first seen first
    patient_pks: set[int] = field(default_factory=set)
    archives: int = 0
    dicomdirs: int = 0

    def add(self, result: FileResult, patient_pk: int | None = None) -> None:
        self.results.append(result)
        self.counts[result.outcome] += 1
        if result.study_instance_uid and result.study_instance_uid not in self.study_uids:
            self.study_uids.append(result.study_instance_uid)
        if patient_pk is not None:
            self.patient_pks.add(patient_pk)


# --- the request body ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpooledFile:
    path: str
    offset: int
    size: int


class UploadSpool:
    """The uploaded files back to back in one anonymous file in the storage's temporary area (beside the data, not
    in /tmp, which may be memory). Nothing of it outlives ``close()`` or a crash."""

    def __init__(self, limit_bytes: int) -> None:
        self._file: BinaryIO = get_storage().temporary()  # closed by close()
        self.limit_bytes = limit_bytes
        self.files: list[SpooledFile] = []
        self.total = 0  # bytes of file content received, kept or not
        self.too_large = False
        self.too_many = False
        self.storage_failed = False  # the temporary area took no more (a full disk): nothing is stored

    def receive(self, path: str, chunks: Iterator[bytes]) -> None:
        """Append one file; past the limit, or once the disk is full, the rest of the body is counted and
        dropped, never stored."""
        if len(self.files) >= MAX_FILES:
            self.too_many = True
        offset, size = self._file.tell(), 0
        for chunk in chunks:
            size += len(chunk)
            self.total += len(chunk)
            if self.total > self.limit_bytes:
                self.too_large = True
            if not (self.too_large or self.too_many or self.storage_failed):
                self._write(chunk)
        if not (self.too_large or self.too_many or self.storage_failed):
            self._write(b"")  # flushed now: a full disk shows here, not while the files are examined
            self.files.append(SpooledFile(path, offset, size))

    def _write(self, chunk: bytes) -> None:
        try:
            self._file.write(chunk)
            if not chunk:
                self._file.flush()
        except OSError as exc:
            logger.error("cannot receive an upload into the temporary area: %s", exc.strerror)
            self.storage_failed = True

    def refuse_all(self) -> None:
        self.too_large = True

    def open(self, item: SpooledFile) -> BinaryIO:
        self._file.flush()
        return io.BufferedReader(_Segment(self._file.fileno(), item.offset, item.size))

    def read(self, item: SpooledFile) -> bytes:
        with self.open(item) as f:
            return f.read()

    def close(self) -> None:
        self._file.close()


class _Segment(io.RawIOBase):
    """A read-only, seekable window on the spool (``pread``: ZIPs and files read independently)."""

    def __init__(self, fd: int, start: int, size: int) -> None:
        self._fd, self._start, self._size, self._pos = fd, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(base + offset, 0)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        data = os.pread(self._fd, n, self._start + self._pos)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def clean_path(raw: str) -> str:
    """A relative path as the browser sent it (the folder picker sends ``folder/sub/file``), made harmless:
    ``/`` separators, no empty, ``.`` or ``..`` parts, printable characters only. It is only ever shown and
    compared, never used to open a file."""
    parts = []
    for part in re.split(r"[/\\]", raw):
        part = "".join(c for c in part if c.isprintable()).strip()[:255]
        if part and part not in {".", ".."}:
            parts.append(part)
    return "/".join(parts)[:1024] or "?"


class SpoolUploadHandler(FileUploadHandler):
    """Parses the multipart body itself (``handle_raw_input``), for three reasons Django's own parsing cannot
    meet: the relative paths of a folder upload are kept (Django keeps only the last part), files go to one
    spool (not one open temp file or one memory buffer each), and a DVD's thousands of files are not refused
    by ``DATA_UPLOAD_MAX_NUMBER_FILES``. Files of any field other than ``files`` are dropped."""

    def __init__(self, spool: UploadSpool) -> None:
        super().__init__()
        self.spool = spool

    def handle_raw_input(
        self,
        input_data: IO[bytes],
        META: dict[str, str],  # noqa: N803 - Django's name
        content_length: int,
        boundary: str | bytes,
        encoding: str | None = None,
    ) -> tuple[QueryDict, MultiValueDict[str, UploadedFile[Any]]]:
        encoding = encoding or settings.DEFAULT_CHARSET
        if content_length > self.spool.limit_bytes + CONTENT_LENGTH_SLACK:
            self.spool.refuse_all()  # still read the form fields, so the CSRF check can answer
        separator = boundary if isinstance(boundary, bytes) else boundary.encode("ascii")
        post = QueryDict(mutable=True)
        field_bytes = 0
        stream = LazyStream(ChunkIter(cast(Any, input_data), 64 * 1024))
        for item_type, meta_data, field_stream in Parser(stream, separator):
            try:
                disposition = meta_data["content-disposition"][1]
                name = force_str(disposition["name"], encoding, errors="replace").strip()
            except (KeyError, IndexError, AttributeError):
                _exhaust(field_stream)
                continue
            if item_type == FIELD:
                data = field_stream.read(MAX_FIELD_BYTES - field_bytes + 1)
                field_bytes += len(data) + len(name)
                if field_bytes > MAX_FIELD_BYTES:
                    raise RequestDataTooBig("form fields beyond the upload page's own")
                post.appendlist(name, force_str(data, encoding, errors="replace"))
            elif item_type == FILE and name == FIELD_NAME and disposition.get("filename"):
                path = clean_path(force_str(disposition["filename"], encoding, errors="replace"))
                self.spool.receive(path, iter(field_stream))
            else:
                _exhaust(field_stream)
        _exhaust(input_data)
        post._mutable = False  # as Django's own parser leaves it
        return post, MultiValueDict()

    # Never called: handle_raw_input does the whole parse.
    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:  # pragma: no cover
        return raw_data

    def file_complete(self, file_size: int) -> UploadedFile[Any] | None:  # pragma: no cover
        return None


def _exhaust(stream: Any) -> None:
    while stream.read(64 * 1024):
        pass


# --- recognising DICOM -------------------------------------------------------------------------------


def _key(path: str) -> str:
    """A path as ISO 9660 media compare it: upper case, without the ``;1`` version and a trailing dot."""
    return "/".join(re.sub(r";\d*$", "", part).rstrip(".").upper() for part in path.split("/"))


def _looks_like_dicom_name(path: str) -> bool:
    return path.lower().endswith(DICOM_SUFFIXES)


def _as_part10(data: bytes) -> bytes | None:
    """The data as a DICOM Part 10 file, or None when it does not look like DICOM at all.

    Tolerant on what comes in (a data set without file meta, e.g. from old media; file meta without preamble),
    strict on what goes out: what is stored is always a Part 10 file (PS3.10 section 7.1). Raises an
    ``IngestError`` when it looks like DICOM but cannot be made one.
    """
    if data[128:132] == b"DICM":
        return data
    if data[:2] == b"\x02\x00" and data[4:6] in (b"UL", b"OB"):  # file meta without the preamble
        return bytes(128) + b"DICM" + data
    if data[:2] in (b"\x08\x00", b"\x00\x08"):  # a bare data set, group 0008 first (LE / BE)
        return _wrap_data_set(data)
    return None


def _wrap_data_set(data: bytes) -> bytes:
    """Put a preamble and file meta (PS3.10 section 7.1) in front of a bare data set, keeping its bytes."""
    try:
        ds = dcmread(BytesIO(data), force=True, stop_before_pixels=True)
        sop_class = str(ds.get("SOPClassUID", "") or "").strip()
        sop_instance = str(ds.get("SOPInstanceUID", "") or "").strip()
        implicit, little = ds.original_encoding
    except _READ_ERRORS as exc:
        raise _UnreadableError from exc
    if not (sop_class and sop_instance) or implicit is None:
        raise MissingAttributeError("SOP Class or SOP Instance UID missing")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = (
        ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    )
    meta.ImplementationClassUID = UID(IMPLEMENTATION_UID)
    out = DicomBytesIO()
    out.write(bytes(128) + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=True)
    out.write(data)
    return out.getvalue()


class _UnreadableError(Exception):
    pass


def _read_dicomdir(data: bytes) -> list[list[str]]:
    """The Referenced File IDs (as path components) of every record of a DICOMDIR (PS3.3 F.3.2.2)."""
    ds = dcmread(BytesIO(data))
    if str(ds.file_meta.get("MediaStorageSOPClassUID", "")) != DICOMDIR_SOP_CLASS:
        raise InvalidDicomError("not a Media Storage Directory")
    references = []
    for record in ds.get("DirectoryRecordSequence", None) or []:
        value = record.get("ReferencedFileID")
        if not value:
            continue
        components = [str(value)] if isinstance(value, str) else [str(v) for v in value]
        parts = [p for c in components for p in re.split(r"[/\\]", c) if p.strip()]
        if parts:
            references.append(parts)
    return references


# --- the import --------------------------------------------------------------------------------------


@dataclass
class _Entry:
    path: str
    key: str  # within its container, for DICOMDIR look-ups
    container: int  # -1: the uploaded files; otherwise the index of the ZIP in the upload
    size: int
    read: Callable[[], bytes]
    referenced: bool = False
    unlisted: bool = False
    is_dicomdir: bool = False


class UploadImport:
    """One upload, examined and stored file by file. ``prepare()`` lists what will be examined (opens ZIPs,
    reads DICOMDIRs) and returns the number of steps; ``run()`` yields one ``FileResult`` per step."""

    RENDER_REQUEST_EVERY = 50

    def __init__(self, organisation: Organisation, spool: UploadSpool) -> None:
        self.organisation = organisation
        self.spool = spool
        self.report = UploadReport()
        self._early: list[FileResult] = []
        self._entries: list[_Entry] = []
        self._zips: list[zipfile.ZipFile] = []
        self._unpacked = 0  # bytes the upload amounts to once unpacked; capped at the limit

    def prepare(self) -> int:
        for item in self.spool.files:
            if item.size and (self._zip_magic(item) or item.path.lower().endswith(".zip")):
                self._add_zip(item)
            else:
                self._unpacked += item.size
                self._add(item.path, item.path, -1, item.size, self._reader(item))
        self._read_dicomdirs()
        return len(self._early) + sum(1 for e in self._entries if not e.is_dicomdir)

    def run(self) -> Generator[FileResult]:
        try:
            for result in self._early:
                self.report.add(result)
                yield result
            storage_failed = False
            for entry in self._entries:
                if entry.is_dicomdir:
                    continue
                if storage_failed:  # a full disk stays full: do not try the rest, say so
                    result, patient_pk = FileResult(entry.path, Outcome.REFUSED, Reason.STORAGE_FAILED), None
                else:
                    result, patient_pk = self._examine(entry)
                    storage_failed = result.reason == Reason.STORAGE_FAILED
                self.report.add(result, patient_pk)
                stored = self.report.counts[Outcome.STORED]
                if result.outcome == Outcome.STORED and stored % self.RENDER_REQUEST_EVERY == 0:
                    announce_arrivals()  # a DVD takes a while: start rendering what is in
                yield result
        finally:
            for zf in self._zips:
                zf.close()
            if self.report.counts[Outcome.STORED]:
                announce_arrivals()

    # --- listing

    def _zip_magic(self, item: SpooledFile) -> bool:
        with self.spool.open(item) as f:
            return f.read(4) in (b"PK\x03\x04", b"PK\x05\x06")

    def _reader(self, item: SpooledFile) -> Callable[[], bytes]:
        return lambda: self.spool.read(item)

    def _add(self, path: str, key_path: str, container: int, size: int, read: Callable[[], bytes]) -> None:
        self._entries.append(_Entry(path, _key(key_path), container, size, read))

    def _add_zip(self, item: SpooledFile) -> None:
        self.report.archives += 1
        try:
            zf = zipfile.ZipFile(self.spool.open(item))
            infos = [
                i
                for i in zf.infolist()
                if not i.is_dir() and not i.filename.startswith("__MACOSX/")  # macOS resource forks
            ]
        except _ZIP_ERRORS:
            self._early.append(FileResult(item.path, Outcome.REFUSED, Reason.ZIP_UNREADABLE))
            return
        self._zips.append(zf)
        if not infos:
            self._early.append(FileResult(item.path, Outcome.SKIPPED, Reason.EMPTY))
            return
        unpacked = sum(i.file_size for i in infos)
        # A ZIP bomb, or just too much: refused whole, before any of it is read.
        if self._unpacked + unpacked > self.spool.limit_bytes:
            self._early.append(FileResult(item.path, Outcome.REFUSED, Reason.ZIP_TOO_LARGE))
            return
        if len(self._entries) + len(infos) > MAX_ENTRIES:
            self._early.append(FileResult(item.path, Outcome.REFUSED, Reason.TOO_MANY_FILES))
            return
        self._unpacked += unpacked
        container = len(self._zips) - 1
        for info in infos:
            member = clean_path(info.filename)
            path = f"{item.path}/{member}"
            if info.flag_bits & 0x1:
                self._early.append(FileResult(path, Outcome.REFUSED, Reason.ZIP_ENCRYPTED))
                continue
            self._add(path, member, container, info.file_size, self._member_reader(zf, info))

    @staticmethod
    def _member_reader(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], bytes]:
        def read() -> bytes:
            # zipfile returns at most the declared size and checks the CRC at the end.
            try:
                with zf.open(info) as member:
                    return member.read()
            except _ZIP_ERRORS as exc:
                raise _MemberUnreadableError from exc

        return read

    def _read_dicomdirs(self) -> None:
        by_key = {(e.container, e.key): e for e in self._entries}
        folders: list[tuple[int, str]] = []
        for entry in list(self._entries):
            if entry.key.rsplit("/", 1)[-1] != "DICOMDIR":
                continue
            entry.is_dicomdir = True
            self.report.dicomdirs += 1
            try:
                references = _read_dicomdir(entry.read())
            except _DICOMDIR_ERRORS:
                self._early.append(FileResult(entry.path, Outcome.SKIPPED, Reason.DICOMDIR_UNREADABLE))
                continue
            self._early.append(FileResult(entry.path, Outcome.SKIPPED, Reason.DICOMDIR))
            base = entry.key[: -len("DICOMDIR")]
            shown = entry.path.rsplit("/", 1)[0] + "/" if "/" in entry.path else ""
            folders.append((entry.container, base))
            for parts in references:
                found = by_key.get((entry.container, base + _key("/".join(parts))))
                if found is None:
                    missing = shown + "/".join(parts)
                    self._early.append(FileResult(missing, Outcome.REFUSED, Reason.MISSING_FROM_UPLOAD))
                else:
                    found.referenced = True
        for entry in self._entries:
            if not (entry.referenced or entry.is_dicomdir):
                entry.unlisted = any(c == entry.container and entry.key.startswith(b) for c, b in folders)

    # --- one file

    def _examine(self, entry: _Entry) -> tuple[FileResult, int | None]:
        def result(outcome: Outcome, reason: Reason | None = None, study_uid: str = "") -> FileResult:
            return FileResult(entry.path, outcome, reason, study_uid, entry.unlisted)

        if entry.size == 0:
            return result(Outcome.SKIPPED, Reason.EMPTY), None
        try:
            data = entry.read()
        except _MemberUnreadableError:
            return result(Outcome.REFUSED, Reason.ZIP_MEMBER_UNREADABLE), None
        if data[:4] == b"PK\x03\x04":
            return result(Outcome.SKIPPED, Reason.NESTED_ARCHIVE), None
        expected = entry.referenced or _looks_like_dicom_name(entry.path)
        try:
            part10 = _as_part10(data)
            if part10 is None:
                if expected:
                    return result(Outcome.REFUSED, Reason.UNREADABLE), None
                return result(Outcome.SKIPPED, Reason.NOT_DICOM), None
            stored = store_instance(self.organisation, part10, source=Instance.Source.UPLOAD)
        except _UnreadableError:
            return result(Outcome.REFUSED, Reason.UNREADABLE), None
        except IngestError as exc:
            return result(Outcome.REFUSED, _reason(exc)), None
        outcome = Outcome.STORED if stored.outcome == StoreOutcome.STORED else Outcome.DUPLICATE
        return result(outcome, None, stored.study_instance_uid), stored.patient_pk


class _MemberUnreadableError(Exception):
    pass


_DICOMDIR_ERRORS: tuple[type[Exception], ...] = (*_READ_ERRORS, _MemberUnreadableError)


def _reason(exc: IngestError) -> Reason:
    """By exception class: the exception's text is for logs, never for users (docs/security.md A15)."""
    if isinstance(exc, TruncatedError):  # cut off, or fewer pixel bytes than the image needs (as the SCP)
        return Reason.TRUNCATED
    if isinstance(exc, MissingAttributeError):
        return Reason.MISSING_UIDS
    if isinstance(exc, ConflictError):
        return Reason.CONFLICT
    if isinstance(exc, OutOfResourcesError):
        return Reason.STORAGE_FAILED
    return Reason.UNREADABLE


@dataclass(frozen=True)
class TouchedStudy:
    study: Study
    stored: int
    duplicate: int


def touched_studies(organisation: Organisation, report: UploadReport) -> list[TouchedStudy]:
    """The studies this upload stored into or found already present, in the order first met."""
    stored: Counter[str] = Counter()
    duplicate: Counter[str] = Counter()
    for result in report.results:
        if result.outcome == Outcome.STORED:
            stored[result.study_instance_uid] += 1
        elif result.outcome == Outcome.DUPLICATE:
            duplicate[result.study_instance_uid] += 1
    studies = {
        s.study_instance_uid: s
        for s in Study.objects.filter(
            organisation=organisation, study_instance_uid__in=report.study_uids
        ).select_related("patient")
    }
    return [
        TouchedStudy(studies[uid], stored[uid], duplicate[uid]) for uid in report.study_uids if uid in studies
    ]
