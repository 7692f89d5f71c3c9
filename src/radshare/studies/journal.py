"""The ingest journal: what the storage SCP has acknowledged and the indexer has yet to file (docs/architecture.md
"C-STORE ingest", journal mode).

A journal is a folder on the SCP's own machine holding numbered segment files. Each record is appended whole:

    header (24 bytes: magic, kind, meta length, payload length, CRC-32) | meta (JSON) | payload

The CRC-32 runs over the payload, then the meta, so that reading a record gives the payload's own CRC-32 on the way:
the one a ZIP member of the instance records, which the indexer stores instead of computing it again. (Records of
the first format, magic ``RSJ1``, ran it over the meta first; they are still read.)

An instance record's payload is the received Part 10 file; its meta names the association, organisation and node.
An association's end record has no payload. A record is acknowledged only once an ``fdatasync`` covers it; all
associations share one segment, so one ``fdatasync`` covers everything written meanwhile (group commit).

One writer (the SCP) appends to the newest segment only; it starts a new one when it opens the journal and when a
segment grows past ``SEGMENT_BYTES``, closing the old one with an end-of-segment record. A reader (the indexer)
reads the segments in order. In a segment that is not the newest, a record that is cut off or fails its CRC is the
tail a crash left: never acknowledged, so the segment ends there. In the newest segment it may still be being
written, and the reader waits.

This module knows files only; ``indexer.py`` files the records into the index.
"""

from __future__ import annotations

import fcntl
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

from radshare.core.files import fsync_folder

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

    def append(self, kind: int, meta: dict[str, Any], payload: bytes | memoryview = b"") -> int:
        """Write one record and return, once it is durable, the position after it. ``OSError`` (disk full) leaves
        the segment as it was: a failed write is cut off again, so no later record follows a broken one."""
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
    return Record(
        kind, json.loads(meta_bytes), payload, position(segment, offset), position(segment, end), payload_crc
    )
