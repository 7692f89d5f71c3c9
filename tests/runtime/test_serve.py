"""``radshare serve``: web, DICOM SCP and worker start together and stop together on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.cli_runner import migrated_data_dir, radshare_env, run_radshare, start_radshare, stop_group
from tests.conftest import free_port

START_TIMEOUT = 60
STOP_TIMEOUT = 15


def wait_for(what: str, check: Callable[[], Any], timeout: float, proc: subprocess.Popen[bytes]) -> Any:
    """Poll ``check`` until it returns something truthy; fail early if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"radshare serve exited ({proc.returncode}) while waiting for {what}")
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def children_of(pid: int) -> dict[int, str]:
    """Live child processes of ``pid`` with their command lines (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        # The command name may hold spaces or parentheses: the fields after it start at the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry.name)] = cmdline
    return found


def three_parts(pid: int) -> dict[int, str] | None:
    children = children_of(pid)
    return children if len(children) == 3 else None


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def healthz(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
        return response.status == 200 and json.load(response) == {"status": "ok"}


def c_echo(port: int, calling: str = "ECHOSCU") -> bool:
    """A C-ECHO from ``calling`` to the radshare SCP on ``port``: whether it succeeded."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 5
    assoc = ae.associate("127.0.0.1", port, ae_title="RADSHARE")
    if not assoc.is_established:
        return False
    try:
        return bool(assoc.send_c_echo().Status == 0x0000)
    finally:
        assoc.release()


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture(scope="module")
def demo_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrated, with the demo loaded: its organisation lets any calling AE in (demo mode)."""
    data_dir = migrated_data_dir(tmp_path_factory.mktemp("serve"), demo="1")
    loaded = run_radshare("demo", env=radshare_env(data_dir, demo="1"))
    assert loaded.returncode == 0, loaded.stderr
    return data_dir


@pytest.fixture
def served(demo_data_dir: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, int, Path]]:
    http_port, dicom_port = free_port(), free_port()
    env = radshare_env(demo_data_dir, demo="1", http_port=str(http_port), dicom_port=str(dicom_port))
    log = tmp_path / "serve.log"
    proc = start_radshare("serve", env=env, log=log)
    try:
        yield proc, http_port, dicom_port, log
    finally:
        stop_group(proc, signal.SIGKILL)


@pytest.mark.once
@pytest.mark.parametrize("group", [False, True], ids=["signal-to-serve", "ctrl-c-to-the-group"])
def test_serve_runs_everything_and_stops_on_ctrl_c(
    served: tuple[subprocess.Popen[bytes], int, int, Path], group: bool
) -> None:
    """SIGINT to serve alone (``kill -INT``), or to its whole process group (Ctrl-C in a terminal)."""
    proc, http_port, dicom_port, log = served
    wait_for("/healthz", lambda: healthz(http_port), START_TIMEOUT, proc)
    wait_for("C-ECHO", lambda: c_echo(dicom_port), START_TIMEOUT, proc)
    children = children_of(proc.pid)
    parts = sorted(cmd.rsplit(" ", 1)[-1] for cmd in children.values())
    assert parts == ["scp", "web", "worker"], children

    if group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    assert proc.wait(timeout=STOP_TIMEOUT) == 0
    assert time.monotonic() - started < STOP_TIMEOUT
    assert [pid for pid in children if alive(pid)] == []
    assert port_is_free(http_port)
    assert port_is_free(dicom_port)
    output = log.read_text(encoding="utf-8", errors="replace")
    assert "radshare is running" in output
    assert "radshare stopped." in output
    assert "Traceback" not in output, output[-4000:]  # the whole traceback, to find its cause


@pytest.mark.once
def test_serve_stops_everything_when_one_part_dies(
    served: tuple[subprocess.Popen[bytes], int, int, Path],
) -> None:
    proc, http_port, _, log = served
    wait_for("/healthz", lambda: healthz(http_port), START_TIMEOUT, proc)
    children = wait_for("three parts", lambda: three_parts(proc.pid), START_TIMEOUT, proc)
    scp = next(pid for pid, cmd in children.items() if cmd.endswith(" scp"))
    os.kill(scp, signal.SIGKILL)
    assert proc.wait(timeout=STOP_TIMEOUT) == 1
    assert [pid for pid in children if alive(pid)] == []
    assert port_is_free(http_port)
    output = log.read_text(encoding="utf-8", errors="replace")
    assert "`radshare scp` stopped (exit code -9); everything was stopped" in output
