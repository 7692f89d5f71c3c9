"""How many cores this process may use: the defaults of the render processes and the web workers follow it
(docs/operations.md "Processes and database connections")."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores the operating system lets this process run on (a container's or taskset's limit included), at
    least one."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
