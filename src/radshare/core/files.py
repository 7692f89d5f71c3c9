"""Small file-system steps shared by every door that makes a file durable: the storage, the journal and the file
outbox (docs/architecture.md "Ingest path"). No Django imports: the journal's indexer process imports it."""

from __future__ import annotations

import os
from collections.abc import Buffer
from pathlib import Path


def fsync_folder(folder: Path) -> None:
    """Make a folder's entries durable: after a rename or a new file in it, the name survives a power cut too."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: Buffer) -> int:
    """Write all of ``data`` (``os.write`` may write less than it is given); the number of bytes."""
    view = memoryview(data).cast("B")
    size = len(view)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    return size
