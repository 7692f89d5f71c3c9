"""The file of a received instance, written durably in the background while ingest checks, hashes and indexes its
header (``services.store_instance``; docs/architecture.md "C-STORE ingest").

fsync, SHA-256 and CRC-32 all release the GIL, so the disk's work and ingest's overlap; only the commit of the
instance's rows waits for the file (``PendingFile.wait``). The files go to the 256 folders of
``layout.instance_folders``, made once per process and storage before the first file.
"""

from __future__ import annotations

import logging
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from radshare.core.storage import Storage, instance_folders, instance_key, new_instance_name

logger = logging.getLogger(__name__)

# The storages whose instance folders this process has made ahead.
_folders_made: weakref.WeakSet[Storage] = weakref.WeakSet()
# Threads start on demand, one per file being written at the same moment (one per association at most).
_writer = ThreadPoolExecutor(max_workers=32, thread_name_prefix="radshare-put")


def _put(storage: Storage, name: str, data: bytes | memoryview) -> None:
    if storage not in _folders_made:
        storage.make_folders(instance_folders())
        _folders_made.add(storage)
    storage.put_durable(instance_key(name), data)


@dataclass(frozen=True)
class PendingFile:
    storage: Storage
    name: str  # the future Instance.storage_key
    writing: Future[None]

    def wait(self) -> None:
        """Return once the file is durable; an ``OSError`` (storage full or unavailable) when it cannot be."""
        try:
            self.writing.result()
        except OSError as exc:
            logger.error("cannot write instance file: %s", exc.strerror)
            raise

    def discard(self) -> None:
        """Undo the put, for data that is refused or already here: never written, or deleted once written."""
        if self.writing.cancel():
            return
        try:
            self.writing.result()
        except OSError:
            return
        self.storage.delete(instance_key(self.name))


def start_put(storage: Storage, data: bytes | memoryview) -> PendingFile:
    """Start writing ``data`` durably under a fresh name (docs/architecture.md "Ingest path"). The caller keeps
    ``data`` unchanged until ``wait`` or ``discard`` returns."""
    name = new_instance_name()
    return PendingFile(storage, name, _writer.submit(_put, storage, name, data))
