from __future__ import annotations

import os
import shutil
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

import uvicorn
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from radshare.core.cpus import usable_cores
from radshare.core.metrics import MULTIPROCESS
from radshare.core.streaming import LargeBufferH11Protocol

METRICS_FOLDER = "metrics-"  # + the web server's process id, in the data dir


def web_workers(requested: int | None = None) -> int:
    """uvicorn worker processes: ``--workers``, else ``RADSHARE_WEB_WORKERS``, whose 0 means one per core this
    process may use (docs/operations.md "Processes and database connections")."""
    return requested or settings.RADSHARE.web_workers or usable_cores()


def uvicorn_options(workers: int) -> dict[str, Any]:
    """What ``uvicorn.run`` gets. Several workers share the listening socket; on SQLite they share the database
    file as any processes do (WAL, writers queue at BEGIN with a busy timeout: core/config/database.py)."""
    cfg = settings.RADSHARE
    return {
        "host": cfg.http_bind,
        "port": cfg.http_port,
        "workers": workers,
        # uvicorn's access log prints query strings (the share code travels in one): ours does not.
        "access_log": False,
        "proxy_headers": False,
        "server_header": False,
        "log_config": None,
        "lifespan": "off",
        "http": LargeBufferH11Protocol,  # h11 with a larger write buffer: core/streaming.py
    }


class Command(BaseCommand):
    help = (
        "Run the web server (uvicorn, ASGI) on RADSHARE_HTTP_BIND:RADSHARE_HTTP_PORT with RADSHARE_WEB_WORKERS "
        "processes (default: one per core)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help="uvicorn worker processes (default: RADSHARE_WEB_WORKERS)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # Static files are served by WhiteNoise from the app folders; nothing to collect.
        call_command("check", "--fail-level", "ERROR", verbosity=0)
        workers = web_workers(options["workers"])
        folder = share_metrics_between_workers() if workers > 1 else None
        try:
            uvicorn.run("radshare.asgi:application", **uvicorn_options(workers))
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)


def share_metrics_between_workers() -> Path:
    """The workers count their requests in a fresh folder of this server's (prometheus-client's multiprocess
    mode), so that ``/metrics`` answers for the whole web server whichever worker it reaches (core/metrics.py).
    The folder goes when the server stops; one a killed server left behind goes when the next one starts."""
    data_dir = Path(settings.RADSHARE.data_dir)
    for old in data_dir.glob(f"{METRICS_FOLDER}*"):
        pid = old.name.removeprefix(METRICS_FOLDER)
        if not (pid.isdigit() and _running(int(pid))) or int(pid) == os.getpid():
            shutil.rmtree(old, ignore_errors=True)
    folder = data_dir / f"{METRICS_FOLDER}{os.getpid()}"
    folder.mkdir(mode=0o700)
    os.environ[MULTIPROCESS] = str(folder)  # inherited by the worker processes uvicorn spawns
    return folder


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: not ours to judge
        return True
    return True
