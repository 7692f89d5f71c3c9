"""Data at rest is private to radshare's user: the SQLite database, the key, stored instances and renders are
created 0600 in 0700 folders, whatever umask the process was started with (an attack run found them 0644)."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from tests.cli_runner import radshare_env

RENDER = "from radshare.imaging.services import render_pending_now; render_pending_now(parallel=False)"


def test_everything_in_the_data_dir_is_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = radshare_env(data_dir, demo="1", log_level="WARNING")
    for args in (("migrate", "--verbosity", "0"), ("demo",), ("shell", "-c", RENDER)):
        # Started with a permissive umask, as a service manager or a shell may leave it.
        done = subprocess.run(
            ["/bin/sh", "-c", 'umask 022 && exec "$0" "$@"', sys.executable, "-m", "radshare", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    paths = [data_dir, *data_dir.rglob("*")]
    loose = [
        f"{oct(stat.S_IMODE(p.lstat().st_mode))} {p.relative_to(data_dir)}"
        for p in paths
        if stat.S_IMODE(p.lstat().st_mode) & 0o077
    ]
    assert loose == []
    names = {p.name for p in paths}
    # What was looked at: the database, the key, stored instances and renders.
    assert {"radshare.sqlite3", "secret_key"} <= names
    assert any(p.suffix == ".jpg" for p in paths)
    assert sum(1 for p in paths if p.is_file()) > 20
