"""``radshare storage check [--hash] [--repair [--force]]``: do the index and the storage agree?

The instances' half is ``studies.integrity``, the renders' half ``imaging.integrity`` (what each finds and what a
repair does is written there). This command runs both, prints counts and the first examples of each kind (internal
ids and storage keys only, never patient data) and exits 1 when there is anything for ``--repair`` to do; after a
repair the next check is clean (instances marked broken are reported as known, not as a failure).
"""

from __future__ import annotations

import time
from argparse import ArgumentParser
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from radshare.core.storage import Storage, get_storage
from radshare.imaging.integrity import check_renders
from radshare.studies.integrity import RECENT, AreaReport, CheckOptions, Kind, check_instances

HOURS = f"{RECENT.total_seconds() / 3600:g} hour"
LABELS = {
    Kind.ORPHAN: f"files no row knows, older than {HOURS}",
    Kind.MISSING: "a row's file is not there",
    Kind.CHANGED: "a file's size (or SHA-256) is not what was stored",
    Kind.RESTORED: "marked broken, but the file is whole again",
    Kind.RECENT: f"files no row knows yet, younger than {HOURS} (an ingest in progress?); not a problem",
    Kind.KNOWN_BROKEN: "marked broken before, left out of downloads and DICOMweb; not a problem",
    Kind.SKIPPED: "of a study being destroyed; not judged",
}


class Command(BaseCommand):
    help = (
        "Check that the index and the storage agree, both ways: `storage check [--hash] [--repair [--force]]`. "
        "Exit 0: they agree; 1: there is something for --repair to do."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        check = sub.add_parser("check", help="compare the stored files with the index and the render rows")
        check.add_argument(
            "--hash",
            action="store_true",
            help="also compare each instance file's SHA-256 with the one recorded at ingest (reads every byte)",
        )
        check.add_argument(
            "--repair",
            action="store_true",
            help=f"delete orphans older than {HOURS}, mark missing or changed instances broken, render damaged "
            "renders again, clear the mark of restored instances",
        )
        check.add_argument(
            "--force",
            action="store_true",
            help="repair even when it would delete or mark more than 1 in 100 of an area's files or rows",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["force"] and not options["repair"]:
            raise CommandError("--force goes with --repair", returncode=2)
        storage = get_storage()
        check = CheckOptions(hash=options["hash"], repair=options["repair"], force=options["force"])
        compared = "sizes and SHA-256" if check.hash else "sizes (--hash: SHA-256 too)"
        self.stdout.write(f"Storage check of {storage!r}: {compared}")
        reports = [self._area(run, storage, check) for run in (check_instances, check_renders)]
        problems = sum(report.problems for report in reports)
        if not problems:
            self.stdout.write("The index and the storage agree.")
            return
        found = f"{problems} problem{'s' if problems > 1 else ''} found"
        if not check.repair:
            message = f"{found}; `radshare storage check --repair` deals with them"
        elif any(report.refused for report in reports):
            message = f'{found}; not all repaired (see "not repaired")'
        else:
            message = f"{found} and repaired; run the check again to confirm"
        raise CommandError(message, returncode=1)

    def _area(
        self, run: Callable[[Storage, CheckOptions], AreaReport], storage: Storage, check: CheckOptions
    ) -> AreaReport:
        started = time.monotonic()
        report = run(storage, check)
        seconds = time.monotonic() - started
        self.stdout.write(
            f"{report.area}: {report.objects} files, {report.rows} rows checked in {seconds:.1f} s"
        )
        for kind in (*Kind.PROBLEMS, *Kind.NOTES):
            tally = report.found.get(kind)
            if tally is None or not tally.count:
                continue
            self.stdout.write(f"  {kind}: {tally.count} ({LABELS[kind]})")
            for example in tally.examples:
                self.stdout.write(f"      {example}")
            if tally.count > len(tally.examples):
                self.stdout.write(f"      … and {tally.count - len(tally.examples)} more")
        if report.repaired:
            done = ", ".join(f"{count} {what}" for what, count in report.repaired.items())
            self.stdout.write(f"  repaired: {done}")
        for refusal in report.refused:
            self.stdout.write(f"  not repaired: {refusal}")
        return report
