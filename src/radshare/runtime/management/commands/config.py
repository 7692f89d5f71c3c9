from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Print the effective RADSHARE_* configuration (secrets are not shown)."

    def handle(self, *args: Any, **options: Any) -> None:
        rows = settings.RADSHARE.public_items()
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            self.stdout.write(f"{name.ljust(width)}  {value}")
