"""The storage door: the one interface every stored byte passes through (docs/architecture.md "Ingest path").

Objects are named by *keys*: relative, ``/``-separated names such as ``instances/ab/cd/<hash>.dcm`` or
``renders/001/1001/0000-full.jpg``; which key holds what is decided in ``radshare.core.storage.layout`` only.
The methods speak Django's Storage vocabulary (``save``, ``open``, ``delete``, ``exists``, ``size``,
``listdir``), so an object-storage backend (django-storages' S3 backend, or boto3) can sit behind the same door,
plus what DICOM needs: a durable put (the C-STORE answer waits for it), byte ranges, and a temporary area for data
still arriving.

A missing object is ``FileNotFoundError`` (as Django's storages raise it); a key that is not a plain relative
name (``..``, an absolute path, a hidden name, the temporary area) is Django's ``SuspiciousFileOperation``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from django.core.exceptions import SuspiciousFileOperation

# What a put accepts: the bytes themselves, an iterable of chunks, or a binary file read to its end.
Data = bytes | bytearray | memoryview | Iterable[bytes] | BinaryIO


@dataclass(frozen=True)
class ObjectStat:
    size: int
    version: str  # changes whenever the object's content does (a modification time, an ETag): for validators


@dataclass(frozen=True)
class StoredObject:
    """One object as a listing of the storage shows it (``Storage.scan``)."""

    key: str
    size: int
    modified: datetime  # when it was last written (aware, UTC): how old a file no index row knows is


def check_key(key: str, *, reserved: str = "") -> str:
    """``key`` if it names an object inside the storage, else ``SuspiciousFileOperation``.

    A key is one or more non-empty components separated by ``/``; none may start with a dot (``.``, ``..`` and
    the hidden names a backend uses for its own temporary files), hold a backslash or NUL, or be ``reserved``
    as the first component (the backend's temporary area)."""
    parts = key.split("/")
    if parts[0] == reserved or any(
        not part or part[0] == "." or "\\" in part or "\0" in part for part in parts
    ):
        raise SuspiciousFileOperation("not a storage key")
    return key


class Storage(ABC):
    """Where radshare keeps instances as received and their renders.

    Every write is atomic: an object is either absent or whole (a reader never sees part of a put, a failed put
    leaves nothing). ``put_durable`` also survives a crash once it returns; ``put`` is for derived data that is
    made again when lost (renders), and skips the flushes that cost time.
    """

    # --- writing ---------------------------------------------------------------------------------

    @abstractmethod
    def put_durable(self, key: str, data: Data) -> int:
        """Store ``data`` under ``key`` (replacing what was there) so that it survives a crash once this
        returns; the number of bytes stored. What is acknowledged to a sender goes through here (PS3.4 B.2.3:
        success means the SCP has the object)."""

    def put_durable_file(self, key: str, path: Path, data: bytes | memoryview) -> int:
        """``put_durable`` of a file that is durable already, ``path``, whose bytes are ``data``: a backend that can
        take the file as it is (a link on the same file system) does, instead of writing the bytes again; the
        caller may remove ``path`` once this returns."""
        return self.put_durable(key, data)

    @abstractmethod
    def put(self, key: str, data: Data) -> int:
        """Store ``data`` under ``key`` atomically but without waiting for the disk: for derived data."""

    def put_new(self, key: str, data: Data) -> int:
        """``put`` for data no one reads until its writer has recorded that it is there (the renders: their row says
        done once every file is written): a backend may write a new key in place, without the temporary name and
        rename that keep a reader from seeing half an object; a key that is there already is replaced as ``put``
        replaces it (a reader may have it open)."""
        return self.put(key, data)

    def save(self, name: str, content: Data) -> str:
        """Django's ``Storage.save``: a durable put; ``name`` is kept as given (keys are made unique by the
        layout, never renamed here)."""
        self.put_durable(name, content)
        return name

    def make_folders(self, prefixes: Iterable[str]) -> None:  # noqa: B027 - a backend may have no folders
        """Make the folders ``prefixes`` ahead (durably, leaving those already there alone), so that durable puts
        into them never wait for a mkdir. Object stores have no folders: nothing to do."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; nothing happens when there is none."""

    # --- reading ---------------------------------------------------------------------------------

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """The object, for reading (seekable); the caller closes it."""

    @abstractmethod
    def open_range(self, key: str, start: int, end: int) -> BinaryIO:
        """Bytes ``start`` to ``end - 1`` of the object (fewer when it ends sooner; none when ``start`` is at or
        past its end), as a file that starts at ``start``."""

    @abstractmethod
    def stat(self, key: str) -> ObjectStat:
        """The object's size and version."""

    def size(self, key: str) -> int:
        return self.stat(key).size

    def sizes(self, keys: Iterable[str]) -> list[int | None]:
        """The size of each object (None for one that is missing), in order: what a download checks before its
        first byte. Backends may answer faster than a ``stat`` each."""
        found: list[int | None] = []
        for key in keys:
            try:
                found.append(self.stat(key).size)
            except FileNotFoundError:
                found.append(None)
        return found

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key`` (a "folder" of keys is not an object)."""

    @abstractmethod
    def listdir(self, prefix: str) -> tuple[list[str], list[str]]:
        """Django's ``Storage.listdir``: the sub-folders and the objects directly under ``prefix`` ("" for the
        top), each sorted; both empty when there is nothing there."""

    @abstractmethod
    def scan(self, prefix: str = "") -> Iterator[StoredObject]:
        """Every object under the folder ``prefix`` ("" for all), at any depth, with its size and modification
        time, in sorted order of the keys as strings (code point order, as an object store lists them), never
        the temporary area. A generator that holds one folder (or one listing page) at a time, not the whole
        listing: an installation holds millions of objects (``radshare storage check`` walks them all)."""

    def iterate(self, prefix: str = "") -> Iterator[str]:
        """The keys of every object under the folder ``prefix`` ("" for all), at any depth, in sorted order."""
        for found in self.scan(prefix):
            yield found.key

    # --- the temporary area ----------------------------------------------------------------------

    @abstractmethod
    def temporary(self) -> BinaryIO:
        """An anonymous read-write file in the storage's temporary area (beside the data, not in a memory-backed
        /tmp), gone once closed or after a crash; never visible under a key."""

    @abstractmethod
    def sweep_temporary(self, older_than: timedelta) -> int:
        """Remove what puts cut short by a crash left in the temporary area, if older than ``older_than``; how
        many were removed. Never touches a stored object."""

    # --- the escape hatch ------------------------------------------------------------------------

    def local_path(self, key: str) -> Path:
        """The object's file on this machine, for a tool that can only take a path. Filesystem storage only:
        other backends raise ``NotImplementedError``, so keep callers few (benchmarks and tests today)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no local files")
