from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from radshare.studies.scp import StorageSCP

logger = logging.getLogger("radshare.scp")


class Command(BaseCommand):
    help = "Run the DICOM storage SCP (C-ECHO, C-STORE) on RADSHARE_DICOM_BIND:RADSHARE_DICOM_PORT."

    def handle(self, *args: Any, **options: Any) -> None:
        cfg = settings.RADSHARE
        scp = StorageSCP()
        try:
            scp.start(block=False)
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {cfg.dicom_bind}:{cfg.dicom_port}: {exc.strerror}", returncode=2
            ) from None
        logger.info(
            "DICOM storage SCP %s listening on %s:%s", cfg.dicom_ae_title, cfg.dicom_bind, cfg.dicom_port
        )
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
        logger.info("DICOM storage SCP stopping")
        scp.shutdown()
