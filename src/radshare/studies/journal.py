"""The ingest journal: what the storage SCP has acknowledged and the indexer has yet to file (docs/architecture.md
"C-STORE ingest", journal mode).

A journal is a folder on the SCP's own machine holding numbered segment files. Each record is appended whole:

    header (24 bytes: magic, kind, meta length, payload length, CRC-32) | meta (JSON) | payload

The CRC-32 runs over the payload, then the meta, so that reading a record gives the payload's own CRC-32 on the way:
the one a ZIP member of the instance records, which the indexer stores instead of computing it again. (Records of
the first format, magic ``RSJ1``, ran it over the meta first; they are still read.)

An instance's bytes, the received Part 10 file, are a file of their own in ``files/``, written and fsynced before its
record: the record has no payload; its meta names the file and its CRC-32, besides the association, organisation and
node and the header as read. The indexer links that file into the storage instead of writing the bytes a second time
(docs/architecture.md "Journal mode"). The instance is acknowledged once its file is durable; its record is not
waited for, since the file's name tells what the record would (``InstanceFile``). (Records written before, with the
file as their payload, are still read.) An association's end record has no payload and is acknowledged only once an
``fdatasync`` covers it; all associations share one segment, so one ``fdatasync`` covers everything written meanwhile
(group commit).

One writer (the SCP) appends to the newest segment only; it starts a new one when it opens the journal and when a
segment grows past ``SEGMENT_BYTES``, closing the old one with an end-of-segment record. A reader (the indexer)
reads the segments in order. In a segment that is not the newest, a record that is cut off or fails its CRC is the
tail a crash left: never acknowledged, so the segment ends there. In the newest segment it may still be being
written, and the reader waits.

This module knows files only; ``indexer.py`` files the records into the index.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import re
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radshare.core.files import fsync_folder, write_all

MAGIC = b"RSJ2"
MAGIC_V1 = b"RSJ1"  # CRC-32 over meta, then payload: read, never written
HEADER = struct.Struct("<4sB3xIQI")
INSTANCE = 1
ASSOCIATION_END = 2
SEGMENT_END = 3
SEGMENT_BYTES = 256 * 1024 * 1024
SEGMENT_NAME = re.compile(r"^(\d{12})\.seg$")
OFFSET_BITS = 40  # a position is segment << OFFSET_BITS | offset: one integer, shared with the indexer
SLOTS = 64  # SCP processes one machine may run on one data dir
FILES = "files"  # the instances' own files, beside the segments
# <the writer's first segment>-<count>_<association>_<organisation>_<node or 0>_<CRC-32>.dcm
FILE_NAME = re.compile(r"^(\d+)-(\d+)_(\d+-\d+)_(\d+)_(\d+)_([0-9a-f]{8})\.dcm$")


def position(segment: int, offset: int) -> int:
    return segment << OFFSET_BITS | offset


def split(pos: int) -> tuple[int, int]:
    return pos >> OFFSET_BITS, pos & ((1 << OFFSET_BITS) - 1)


@dataclass(frozen=True)
class Record:
    kind: int
    meta: dict[str, Any]
    payload: bytes
    start: int  # position of the record
    end: int  # position just after it: where the next one starts
    payload_crc: int | None = None  # zlib.crc32 of the payload (None for a record of the first format)
    # Where the instance's bytes are, when not in the record (``Writer.append_instance``).
    file: Path | None = None

    def data(self) -> bytes:
        """The instance's bytes: the record's payload, or its file's."""
        if self.file is None:
            return self.payload
        with self.file.open("rb", buffering=0) as f:
            return f.read()


def segment_path(folder: Path, segment: int) -> Path:
    return folder / f"{segment:012d}.seg"


def segments(folder: Path) -> list[int]:
    """The segment numbers present, in order."""
    found = (SEGMENT_NAME.match(p.name) for p in folder.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def journal_id(folder: Path, *, create: bool = True) -> str:
    """The journal's own name, made with the folder: the indexer's cursor row is keyed by it. With
    ``create=False`` (a reader such as ``radshare status``), a folder that has none yet gives ``""``."""
    path = folder / "id"
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        if not create:
            return ""
    value = uuid.uuid4().hex
    tmp = folder / "id.tmp"
    tmp.write_text(value, encoding="ascii")
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    tmp.rename(path)
    fsync_folder(folder)
    return value


def _lock(folder: Path, flags: int = 0) -> int | None:
    """The folder's lock, held (an open descriptor with ``flock``), or None when a running SCP holds it."""
    fd = os.open(folder / "lock", os.O_RDWR | flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def claim_slot(root: Path) -> tuple[Path, int]:
    """The first journal folder under ``root`` no running SCP holds, with its lock held (an open descriptor
    with ``flock``; the kernel lets it go when the process ends, however it ends). A folder a crashed SCP left is
    claimed by the next SCP to start, whose indexer files what it holds."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    for slot in range(SLOTS):
        folder = root / f"{slot:02d}"
        folder.mkdir(exist_ok=True, mode=0o700)
        if (fd := _lock(folder, os.O_CREAT)) is not None:
            return folder, fd
    raise OSError(f"all {SLOTS} journal folders under {root} are in use")


def unclaimed(root: Path) -> Iterator[tuple[Path, int]]:
    """The journal folders under ``root`` that no running SCP holds, each with its lock held while the caller
    works on it (the caller closes the descriptor)."""
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and (p / "lock").exists()):
        if (fd := _lock(folder)) is not None:
            yield folder, fd


def encode(kind: int, meta: dict[str, Any], payload: bytes | memoryview = b"") -> list[bytes | memoryview]:
    meta_bytes = json.dumps(meta, separators=(",", ":")).encode()
    crc = zlib.crc32(meta_bytes, zlib.crc32(payload))
    return [HEADER.pack(MAGIC, kind, len(meta_bytes), memoryview(payload).nbytes, crc), meta_bytes, payload]


class Writer:
    """Appends records to the newest segment; ``append`` returns once the record is durable."""

    def __init__(self, folder: Path, *, after: int = 0) -> None:
        """``after``: a segment number the new one must follow, besides those present (the indexer's cursor may
        point past segments that are gone)."""
        self.folder = folder
        present = segments(folder)
        self._segment = max(present[-1] if present else 0, after) + 1
        self._fd = self._create(self._segment)
        self._offset = 0
        self.files = folder / FILES
        self.files.mkdir(exist_ok=True, mode=0o700)
        self._names = itertools.count(1)
        self._run = self._segment  # the files of this run are named after its first segment
        self._retired: list[int] = []
        self._write_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._synced = position(self._segment, 0)
        self.last_end = 0  # the position after the last record appended: what a drain waits for

    def _create(self, segment: int) -> int:
        fd = os.open(
            segment_path(self.folder, segment), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600
        )
        fsync_folder(self.folder)
        return fd

    @property
    def written(self) -> int:
        """The position after the last record written (durable or about to be)."""
        with self._write_lock:
            return position(self._segment, self._offset)

    def append_instance(self, meta: dict[str, Any], data: bytes | memoryview) -> int:
        """Write an instance: its bytes to a file of their own, durable as a bare SCP writes one (``fsync``), then
        its record, which names the file; returns the position after the record. The record is not waited for:
        should the machine lose it, the file's name tells what the indexer needs to file it all the same
        (``InstanceFile``). ``OSError`` (disk full) leaves neither."""
        crc = zlib.crc32(data)
        name = f"{self._run}-{next(self._names)}_{meta['a']}_{meta['o']}_{meta.get('n') or 0}_{crc:08x}.dcm"
        path = self.files / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                write_all(fd, data)
                os.fsync(fd)  # on ext4, XFS and btrfs this makes the new name durable as well
            finally:
                os.close(fd)
            return self.append(INSTANCE, {**meta, "f": name, "c": crc}, durable=False)
        except BaseException:
            with contextlib.suppress(OSError):
                path.unlink()
            raise

    def append(
        self, kind: int, meta: dict[str, Any], payload: bytes | memoryview = b"", *, durable: bool = True
    ) -> int:
        """Write one record and return, once it is durable (``durable``; else once written), the position after
        it. ``OSError`` (disk full) leaves the segment as it was: a failed write is cut off again, so no later
        record follows a broken one."""
        parts = encode(kind, meta, payload)
        size = sum(memoryview(p).nbytes for p in parts)
        with self._write_lock:
            if self._offset and self._offset + size > SEGMENT_BYTES:
                self._rotate()
            try:
                written = os.writev(self._fd, parts)
                if written != size:
                    raise OSError(28, "short write to the journal")
            except OSError:
                os.ftruncate(self._fd, self._offset)
                raise
            self._offset += size
            end = self.last_end = position(self._segment, self._offset)
        if durable:
            self._sync(end)
        return end

    def _rotate(self) -> None:
        """Close the segment (under the write lock): an end record, durable, then a new segment."""
        os.writev(self._fd, encode(SEGMENT_END, {}))
        os.fdatasync(self._fd)
        self._retired.append(self._fd)  # closed with the writer: a sync in progress may still use it
        self._segment += 1
        self._fd = self._create(self._segment)
        self._offset = 0

    def _sync(self, end: int) -> None:
        """Group commit: one fdatasync covers every record written before it began."""
        with self._sync_lock:
            if self._synced >= end:
                return
            with self._write_lock:
                fd, target = self._fd, position(self._segment, self._offset)
            os.fdatasync(fd)
            self._synced = target

    def close(self) -> None:
        with self._write_lock:
            for fd in (*self._retired, self._fd):
                os.close(fd)
            self._retired.clear()


def read(folder: Path, start: int, *, live: bool) -> Iterator[Record]:
    """The records from ``start`` on, in order. ``live``: the newest segment is still being written, so the reader
    stops at its end instead of treating an incomplete record there as a crash's tail."""
    segment, offset = split(start)
    for number in segments(folder):
        if number < segment:
            continue
        if number > segment:
            segment, offset = number, 0
        newest = number == segments(folder)[-1]
        with segment_path(folder, number).open("rb") as f:
            f.seek(offset)
            while True:
                record = _next(f, number, offset)
                if record is None:
                    break
                offset = split(record.end)[1]
                if record.kind == SEGMENT_END:
                    break
                yield record
        if newest and live:
            return


def _next(f: Any, segment: int, offset: int) -> Record | None:
    head = f.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    magic, kind, meta_len, payload_len, crc = HEADER.unpack(head)
    if magic not in (MAGIC, MAGIC_V1):
        return None
    meta_bytes = f.read(meta_len)
    payload = f.read(payload_len)
    if len(meta_bytes) < meta_len or len(payload) < payload_len:
        return None
    payload_crc: int | None = None
    if magic == MAGIC:
        payload_crc = zlib.crc32(payload)
        if zlib.crc32(meta_bytes, payload_crc) != crc:
            return None
    elif zlib.crc32(payload, zlib.crc32(meta_bytes)) != crc:
        return None
    end = offset + HEADER.size + meta_len + payload_len
    meta = json.loads(meta_bytes)
    file: Path | None = None
    if kind == INSTANCE and "f" in meta:
        # The instance's own file, durable before its record was: its CRC-32 as the SCP computed it.
        if not FILE_NAME.match(str(meta["f"])):
            return None  # not a name the writer makes: damaged
        file = Path(f.name).parent / FILES / str(meta["f"])
        payload_crc = int(meta["c"])
    return Record(kind, meta, payload, position(segment, offset), position(segment, end), payload_crc, file)


@dataclass(frozen=True)
class InstanceFile:
    """An instance's file in ``files/``, as its name tells it."""

    path: Path
    run: int  # the first segment of the SCP's run that wrote it
    count: int  # its number in that run
    association: str
    organisation: int
    node: int | None
    crc: int  # of the bytes as received: a file a crash cut off before it was acknowledged fails it


def files_of_past_runs(folder: Path, first_live_segment: int) -> list[InstanceFile]:
    """The instance files a past run of the SCP left, in the order written. Once the records of that run are
    filed, each was either filed (and its name not yet removed: the index has it already), or its record was lost
    with the machine, or it was never acknowledged (cut off: its CRC-32 tells)."""
    try:
        names = [e.name for e in os.scandir(folder / FILES)]
    except FileNotFoundError:
        return []
    found: list[InstanceFile] = []
    for name in names:
        if (m := FILE_NAME.match(name)) and int(m.group(1)) < first_live_segment:
            found.append(
                InstanceFile(
                    folder / FILES / name,
                    int(m.group(1)),
                    int(m.group(2)),
                    m.group(3),
                    int(m.group(4)),
                    int(m.group(5)) or None,
                    int(m.group(6), 16),
                )
            )
    return sorted(found, key=lambda file: (file.run, file.count))


def left_over_position(file: InstanceFile) -> int:
    """A position of its own for a file filed without its record (``held.keep`` names what it holds after it):
    past any offset a segment reaches."""
    return position(file.run, 1 << (OFFSET_BITS - 1) | file.count)


def files_waiting(folder: Path) -> int:
    """The bytes of the instance files in ``folder``: those the indexer has not filed yet, about."""
    total = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder / FILES):
            with contextlib.suppress(FileNotFoundError):
                total += entry.stat().st_size
    return total
