"""``radshare held [list | file | delete NAME... | delete --all]``: the images journal mode acknowledged but could not
file, because their study was filed under another patient a moment before (``studies/held.py``; docs/operations.md
"Journal mode"). Run it on the SCP's machine: the files are in its data dir. Prints file names, organisations and
Study Instance UIDs, never patient data.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from radshare.core.health import format_age
from radshare.organisations.models import Organisation
from radshare.studies import held


class Command(BaseCommand):
    help = (
        "Images acknowledged in journal mode but held, their study being filed under another patient: "
        "`held list`, `held file` (once the correction is decided), `held delete NAME... | --all`."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action")
        sub.add_parser("list", help="the held images (the default)")
        sub.add_parser(
            "file",
            help="file every held image whose study's correction is decided; filed ones are deleted from held/",
        )
        delete = sub.add_parser("delete", help="delete held images (a dismissed correction's, say)")
        delete.add_argument("names", nargs="*", help="file names as `held list` prints them")
        delete.add_argument("--all", action="store_true", help="every held image")

    def handle(self, *args: Any, **options: Any) -> None:
        items = held.listed()
        action = options.get("action") or "list"
        if action == "file":
            self._file(items)
        elif action == "delete":
            self._delete(items, options["names"], all_=options["all"])
        else:
            self._list(items)

    def _list(self, items: list[held.Held]) -> None:
        if not items:
            self.stdout.write(f"No held images in {held.folder()}.")
            return
        slugs = dict(Organisation.objects.values_list("pk", "slug"))
        now = timezone.now()
        self.stdout.write(f"{len(items)} held image(s) in {held.folder()}:")
        for item in items:
            organisation = slugs.get(item.organisation_pk or 0, "?")
            self.stdout.write(
                f"  {item.path.name}  {item.size / 1e6:.1f} MB  held {format_age(now - item.held_at)} ago  "
                f"organisation {organisation}  study {held.study_uid(item) or '(unreadable)'}"
            )
        self.stdout.write(
            "Once the correction is decided (Corrections from the PACS): `radshare held file`; "
            "a dismissed correction's images: `radshare held delete NAME...`."
        )

    def _file(self, items: list[held.Held]) -> None:
        outcomes = held.file_all(items)
        for outcome in held.Outcome:
            if outcomes[outcome]:
                self.stdout.write(f"{outcomes[outcome]:>5}  {outcome.value}")
        left = sum(n for o, n in outcomes.items() if o not in (held.Outcome.FILED, held.Outcome.DUPLICATE))
        if left:
            raise CommandError(f"{left} held image(s) left in {held.folder()}", returncode=1)
        self.stdout.write(f"No held images left ({len(items)} filed).")

    def _delete(self, items: list[held.Held], names: list[str], *, all_: bool) -> None:
        if all_ == bool(names):
            raise CommandError("name the held images to delete, or give --all", returncode=2)
        by_name = {item.path.name: item for item in items}
        unknown = [name for name in names if name not in by_name]
        if unknown:
            raise CommandError(f"not held: {', '.join(unknown)}", returncode=2)
        chosen = items if all_ else [by_name[name] for name in names]
        held.delete(chosen)
        self.stdout.write(f"{len(chosen)} held image(s) deleted.")
