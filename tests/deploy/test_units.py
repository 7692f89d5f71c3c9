"""The reference deployment's files (deploy/): the systemd units pass ``systemd-analyze verify`` with the installed
radshare in place of /opt/radshare, start the commands radshare has, and the example settings file is a valid
configuration as it stands (placeholders included), so that an operator who fills it in does not meet a typo."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_runner import run_radshare

ROOT = Path(__file__).resolve().parents[2]
UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))
ENV_FILE = ROOT / "deploy" / "radshare.env"
INSTALLED = "/opt/radshare/.venv/bin/radshare"


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def test_there_is_a_unit_for_each_process() -> None:
    commands = {unit(p)["Service"]["ExecStart"].split()[1] for p in UNITS}
    assert commands == {"web", "scp", "worker"}
    for path in UNITS:
        service = unit(path)["Service"]
        assert service["ExecStart"].startswith(INSTALLED + " ")
        assert service["EnvironmentFile"] == "/etc/radshare/radshare.env"
        assert service["User"] == "radshare"
        assert service["ReadWritePaths"] == "/var/lib/radshare"  # RADSHARE_DATA_DIR of the example settings


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None and os.environ.get("RADSHARE_REQUIRE_ALL") != "1",
    reason="systemd-analyze is not installed",
)
@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_each_unit_verifies(path: Path, tmp_path: Path) -> None:
    radshare = Path(sys.executable).with_name("radshare")
    copy = tmp_path / path.name
    copy.write_text(path.read_text().replace(INSTALLED, str(radshare)))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    problems = [line for line in done.stderr.splitlines() if path.name in line or "radshare" in line]
    assert problems == [], done.stderr


def test_the_example_settings_are_a_valid_configuration(tmp_path: Path) -> None:
    settings: dict[str, str] = {}
    for line in ENV_FILE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            settings[name.strip()] = value.strip().strip("'\"")  # quoted as systemd and sh both read it
    assert re.fullmatch(r"https://[\w.-]+", settings["RADSHARE_BASE_URL"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADSHARE_")}
    env |= settings | {
        "RADSHARE_DATA_DIR": str(tmp_path),  # the rest as written; no database is contacted
        "RADSHARE_DATABASE_URL": f"sqlite:///{tmp_path / 'check.sqlite3'}",
    }
    done = run_radshare("config", env=env)
    assert done.returncode == 0, done.stderr
    shown = dict(line.split(None, 1) for line in done.stdout.splitlines() if line.strip())
    assert shown["RADSHARE_STORAGE_URL"].startswith("s3://radshare-images/production")
    assert shown["RADSHARE_BASE_URL"] == settings["RADSHARE_BASE_URL"]
    assert "CHANGE-ME" not in shown["RADSHARE_SECRET_KEY"]  # the secret is not shown
