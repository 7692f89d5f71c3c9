from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from radshare.runtime.demo import DEMO_PATIENT, credentials_path, load_demo


class Command(BaseCommand):
    help = "Load the demo organisation, sender and studies (demo mode only; safe to run again)."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.RADSHARE.demo:
            raise CommandError("the demo is only loaded in demo mode (RADSHARE_DEMO=1)", returncode=2)
        created = load_demo()
        for line in created:
            self.stdout.write(f"created {line}")
        if not created:
            self.stdout.write("demo data already present")
        p = DEMO_PATIENT
        self.stdout.write(f"demo patient: id {p.patient_id}, born {p.birth_date:%d-%m-%Y}, BSN {p.bsn}")
        self.stdout.write(f"demo login: {credentials_path().read_text(encoding='utf-8').strip()}")
