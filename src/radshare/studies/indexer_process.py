"""The entry point of the journal's indexer process (``indexer.JournalMode`` spawns it). A spawned process unpickles
its target by importing the target's module first, so this module imports nothing that needs Django set up."""

from __future__ import annotations

import multiprocessing
import os
import signal
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path

# The SCP answering the sender comes first: while both want the CPU, the indexer (which only has to keep within a
# second of it) yields. Idle cores are still all its own.
NICENESS = 5


def main(
    folder: str, applied: Synchronized[int], stop: Event, first_live_segment: int, nudge: Event | None = None
) -> None:
    """Set Django up, then file the journal until told to stop or orphaned.

    Ctrl-C and SIGTERM reach the whole process group (a terminal, systemd): the indexer leaves them to the SCP,
    which stops taking images and then sets ``stop``, so that what was acknowledged is filed before both exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.nice(NICENESS)
    import django  # late import: this process sets Django up itself

    django.setup()
    from radshare.studies.indexer import Indexer  # late import: needs the apps loaded

    parent = multiprocessing.parent_process()
    indexer = Indexer(Path(folder), first_live_segment=first_live_segment)
    indexer.run(applied, stop, alive=lambda: parent is None or parent.is_alive(), nudge=nudge)
