"""The entry point of the journal's indexer process (``indexer.JournalMode`` spawns it). A spawned process unpickles
its target by importing the target's module first, so this module imports nothing that needs Django set up."""

from __future__ import annotations

import multiprocessing
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path


def main(folder: str, applied: Synchronized[int], stop: Event, first_live_segment: int) -> None:
    """Set Django up, then file the journal until told to stop or orphaned."""
    import django  # late import: this process sets Django up itself

    django.setup()
    from radshare.studies.indexer import Indexer  # late import: needs the apps loaded

    parent = multiprocessing.parent_process()
    indexer = Indexer(Path(folder), first_live_segment=first_live_segment)
    indexer.run(applied, stop, alive=lambda: parent is None or parent.is_alive())
