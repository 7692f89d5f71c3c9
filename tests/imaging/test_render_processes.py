"""How many processes render (docs/architecture.md "Performance budget"): by default every core this process may use,
so that a study that has just arrived is rendered on all of them; RADSHARE_RENDER_PROCESSES overrides it."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from radshare.imaging import services


def test_the_default_is_every_core_this_process_may_use(radshare_config: Any) -> None:
    radshare_config(render_processes=0)
    assert services.render_processes() == len(os.sched_getaffinity(0))
    radshare_config(render_processes=3)
    assert services.render_processes() == 3


def test_a_process_held_to_one_core_renders_with_one() -> None:
    """A container or ``taskset`` limit counts, not the machine's cores."""
    code = "import os; os.sched_setaffinity(0, {0}); from radshare.core.cpus import usable_cores; print(usable_cores())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "1"
