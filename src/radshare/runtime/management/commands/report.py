"""``radshare report usage --month YYYY-MM [--org SLUG] [--csv]``: what radshare did for each organisation in a
month (organisations/usage.py; docs/operations.md "Usage per organisation")."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from radshare.organisations.models import Organisation
from radshare.organisations.usage import as_csv, as_text, month_usage, parse_month


class Command(BaseCommand):
    help = "Usage per organisation: `report usage --month 2026-11 [--org slug] [--csv]`."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="report", required=True)
        usage = sub.add_parser("usage", help="studies, shares, downloads, SMS and storage per organisation")
        usage.add_argument("--month", required=True, help="the month, as YYYY-MM")
        usage.add_argument("--org", help="one organisation's slug (default: every organisation)")
        usage.add_argument("--csv", action="store_true", help="CSV, one organisation a line")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            month = parse_month(options["month"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        organisation = None
        if options["org"]:
            organisation = Organisation.objects.filter(slug=options["org"]).first()
            if organisation is None:
                raise CommandError(f"no organisation {options['org']!r}")
        report = month_usage(month, organisation)
        self.stdout.write(as_csv(report) if options["csv"] else as_text(month, report), ending="")
