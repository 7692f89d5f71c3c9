"""Durable storage of received DICOM files (docs/security.md R1).

A file is written to ``incoming/``, fsynced, renamed into ``instances/`` and its folder fsynced: after
``put`` returns, the bytes survive a crash, and a crash before that leaves only a temp file (swept by a
periodic task), never a half instance. Keys are built from hashes and random tokens, never from input.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings


@dataclass(frozen=True)
class StoredFile:
    key: str
    size: int
    sha256: str


class LocalInstanceStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / "incoming"
        self.instances = root / "instances"

    def path(self, key: str) -> Path:
        return self.instances / key

    def put(self, data: bytes | memoryview, *, name_hint: str, sha256: str = "") -> StoredFile:
        """Store ``data`` durably; ``name_hint`` (e.g. org + SOP Instance UID) only spreads files over folders.
        ``sha256``: the data's digest when the caller has it already."""
        digest = sha256 or hashlib.sha256(data).hexdigest()
        spread = hashlib.sha256(name_hint.encode()).hexdigest()
        key = f"{spread[:2]}/{spread[2:4]}/{spread[:32]}-{secrets.token_hex(8)}.dcm"
        tmp = self.incoming / f"{secrets.token_hex(16)}.part"
        final = self.path(key)
        try:
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileNotFoundError:
                self.incoming.mkdir(parents=True, exist_ok=True)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                tmp.rename(final)
            except FileNotFoundError:
                final.parent.mkdir(parents=True, exist_ok=True)
                tmp.rename(final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(final.parent)
        return StoredFile(key=key, size=len(data), sha256=digest)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def get_store() -> LocalInstanceStore:
    return LocalInstanceStore(Path(settings.RADSHARE_STORAGE_ROOT))
