"""Run the ``radshare`` console script as a real subprocess, with its own environment and data dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

# Django's start-up is about a second; a command that takes 60 s has hung.
COMMAND_TIMEOUT = 60


def radshare_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """This environment minus its ``RADSHARE_*`` variables, plus ``settings`` (names without the prefix)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADSHARE_")}
    env["RADSHARE_DATA_DIR"] = str(data_dir)
    env.update({f"RADSHARE_{name.upper()}": value for name, value in settings.items()})
    return env


def run_radshare(
    *args: str,
    env: Mapping[str, str],
    stdin: str | None = None,
    timeout: float = COMMAND_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """``python -m radshare ARGS`` (what the ``radshare`` console script runs); ``stdin`` None: no input."""
    return subprocess.run(
        [sys.executable, "-m", "radshare", *args],
        env=dict(env),
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def migrated_data_dir(data_dir: Path, **settings: str) -> Path:
    """A data dir whose SQLite database has every migration applied (``radshare migrate``)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    done = run_radshare("migrate", "--verbosity", "0", env=radshare_env(data_dir, **settings), timeout=120)
    assert done.returncode == 0, done.stderr
    return data_dir


def start_radshare(*args: str, env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m radshare ARGS`` in the background, output to ``log``, in its own process group so that a stop
    (``stop_group``) reaches every child it starts."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "radshare", *args],
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    """Send ``sig`` to the process group of ``proc`` (if it still runs), then SIGKILL what outlives ``timeout``."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
