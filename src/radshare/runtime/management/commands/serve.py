from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from radshare.runtime.demo import credentials_path

logger = logging.getLogger("radshare.serve")

PARTS = ("web", "scp", "worker")
STOP_GRACE_SECONDS = 10


class Command(BaseCommand):
    help = "Run everything on one machine: web, DICOM SCP and task worker, until Ctrl-C."

    def handle(self, *args: Any, **options: Any) -> None:
        stopping = False

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        children = {name: subprocess.Popen([sys.executable, "-m", "radshare", name]) for name in PARTS}  # noqa: S603
        self._banner()
        failed = ""
        while not stopping and not failed:
            time.sleep(0.2)
            if not stopping:  # Ctrl-C reaches the children too: their exit after it is no failure
                failed = next((n for n, p in children.items() if p.poll() is not None), "")
        for proc in children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for proc in children.values():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if failed:
            raise CommandError(
                f"`radshare {failed}` stopped (exit code {children[failed].returncode}); "
                "everything was stopped",
                returncode=1,
            )
        self.stdout.write("radshare stopped.")

    def _banner(self) -> None:
        cfg = settings.RADSHARE
        lines = [
            "",
            "radshare is running (Ctrl-C stops it)",
            f"  web:          {cfg.base_url}/   (sender portal: {cfg.base_url}/portal/)",
            f"  DICOM SCP:    AE title {cfg.dicom_ae_title} on {cfg.dicom_bind}:{cfg.dicom_port}",
            f"  e-mails go:   {_describe(cfg.email_url)}",
            f"  SMS codes go: {_describe(cfg.sms_url)}",
            f"  data:         {cfg.data_dir}",
        ]
        if cfg.demo:
            lines.insert(-1, f"  demo outbox:  {cfg.base_url}/dev/outbox/   (the e-mails and SMS codes sent)")
        creds = credentials_path()
        if cfg.demo and creds.exists():
            lines.append(f"  demo login:   {creds.read_text(encoding='utf-8').strip()}")
        self.stdout.write("\n".join([*lines, ""]))


def _describe(url: str) -> str:
    if url.startswith("console://"):
        return "this console (printed by the worker)"
    if url.startswith("file://"):
        return f"files in {Path(url.removeprefix('file://'))}"
    return "the configured server"
