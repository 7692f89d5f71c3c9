"""radshare's own processes on this test's database, storage and key, for the edges that only show over a socket
(uvicorn in front of Django) or across processes. Tests that use them need ``transactional_db``: the processes
see committed rows only."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli_runner import start_radshare, stop_group
from tests.conftest import free_port
from tests.runtime.processes import process_env, wait_for

START_TIMEOUT = 60


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status == 200 and json.load(response) == {"status": "ok"}
    except OSError:
        return False


@pytest.fixture
def start_web(tmp_path: Path) -> Iterator[Callable[..., int]]:
    """Start ``radshare web`` (settings as keyword arguments, names without ``RADSHARE_``); returns its port once
    it answers. Every process started is stopped at the end of the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(**extra: Any) -> int:
        port = free_port()
        name = f"web-{len(started) + 1}"
        settings = {"http_port": port, "dicom_port": free_port(), **extra}
        env = process_env(tmp_path / name, **{k: str(v) for k, v in settings.items()})
        proc = start_radshare("web", env=env, log=tmp_path / f"{name}.log")
        started.append(proc)
        wait_for(f"{name} to answer", lambda: healthy(port), START_TIMEOUT, proc)
        return port

    yield start
    for proc in started:
        stop_group(proc)
