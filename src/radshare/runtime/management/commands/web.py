from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

import uvicorn
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the web server (uvicorn, ASGI) on RADSHARE_HTTP_BIND:RADSHARE_HTTP_PORT."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")

    def handle(self, *args: Any, **options: Any) -> None:
        cfg = settings.RADSHARE
        # Static files are served by WhiteNoise from the app folders; nothing to collect.
        call_command("check", "--fail-level", "ERROR", verbosity=0)
        uvicorn.run(
            "radshare.asgi:application",
            host=cfg.http_bind,
            port=cfg.http_port,
            workers=options["workers"],
            # uvicorn's access log prints query strings (the share code travels in one): ours does not.
            access_log=False,
            proxy_headers=False,
            server_header=False,
            log_config=None,
            lifespan="off",
        )
