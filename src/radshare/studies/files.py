"""The file of a received instance, written durably in the background while ingest checks, hashes and indexes its
header (``services.store_instance``; docs/architecture.md "C-STORE ingest").

fsync, SHA-256 and CRC-32 all release the GIL, so the disk's work and ingest's overlap; only the commit of the
instance's rows waits for the file (``settle``). The files go to the 256 folders of ``layout.instance_folders``,
made once per process and storage before the first file.

The journal's indexer files up to 64 instances per transaction: inside ``settled_once`` the transaction waits for
all their files once, at its end, so that their writes and fsyncs run side by side (the file system commits
fsyncs that wait together as one) instead of one after another.
"""

from __future__ import annotations

import contextvars
import logging
import weakref
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from radshare.core.storage import Storage, instance_folders, instance_key, new_instance_name

logger = logging.getLogger(__name__)

# The storages whose instance folders this process has made ahead.
_folders_made: weakref.WeakSet[Storage] = weakref.WeakSet()
# Threads start on demand, one per file being written at the same moment (one per association at most).
_writer = ThreadPoolExecutor(max_workers=32, thread_name_prefix="radshare-put")


def _put(storage: Storage, name: str, data: bytes | memoryview, source: Path | None) -> None:
    if storage not in _folders_made:
        storage.make_folders(instance_folders())
        _folders_made.add(storage)
    if source is None:
        storage.put_durable(instance_key(name), data)
    else:
        storage.put_durable_file(instance_key(name), source, data)


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


def start_put(storage: Storage, data: bytes | memoryview, source: Path | None = None) -> PendingFile:
    """Start writing ``data`` durably under a fresh name (docs/architecture.md "Ingest path"); ``source``: a durable
    file holding ``data`` (the journal's), which the storage may take as it is (``Storage.put_durable_file``). The
    caller keeps ``data`` and ``source`` unchanged until ``wait`` or ``discard`` returns."""
    name = new_instance_name()
    return PendingFile(storage, name, _writer.submit(_put, storage, name, data, source))


_unsettled: contextvars.ContextVar[list[PendingFile] | None] = contextvars.ContextVar(
    "radshare_unsettled", default=None
)


def settle(file: PendingFile) -> None:
    """Before the rows that name ``file`` may commit: wait until it is durable, or leave that to an enclosing
    ``settled_once``. ``OSError`` when it cannot be written."""
    if (waiting := _unsettled.get()) is not None:
        waiting.append(file)
    else:
        file.wait()


@contextmanager
def settled_once() -> Iterator[None]:
    """Inside one transaction: the files ``settle`` is given in the block are waited for when it ends (still inside
    the transaction). Should the block or a file fail, every one of them is discarded (the caller's transaction
    rolls back, so no row names them)."""
    waiting: list[PendingFile] = []
    token = _unsettled.set(waiting)
    try:
        try:
            yield
        finally:
            _unsettled.reset(token)
        for file in waiting:
            file.wait()
    except BaseException:
        for file in waiting:
            file.discard()
        raise
