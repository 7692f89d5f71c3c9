from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError

from radshare.organisations.management.commands._common import OperatorCommand, fail, validation_message
from radshare.organisations.models import Organisation
from radshare.organisations.services import create_organisation


class Command(OperatorCommand):
    help = (
        "Manage organisations: `org create <slug> --name NAME`, `org set <slug> --onward-sharing off|patients`, "
        "`org list`."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create an organisation")
        create.add_argument("slug", help="short id: lowercase letters, digits, dashes")
        create.add_argument("--name", required=True, help="display name shown to recipients")
        create.add_argument(
            "--contact-phone", default="", help="phone number recipients may call with questions"
        )
        create.add_argument("--contact-email", default="", help="e-mail address for recipients' questions")
        create.add_argument("--contact-url", default="", help="web page for recipients' questions")
        onward = "whether a patient may pass their share on to a care provider (default off)"
        create.add_argument("--onward-sharing", choices=Organisation.OnwardSharing.values, help=onward)
        change = sub.add_parser("set", help="change an organisation's settings")
        change.add_argument("slug")
        change.add_argument("--onward-sharing", choices=Organisation.OnwardSharing.values, help=onward)
        sub.add_parser("list", help="list organisations")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "list":
            for org in Organisation.objects.order_by("slug"):
                state = "active" if org.is_active else "inactive"
                self.stdout.write(f"{org.slug}\t{org.name}\t{state}\tonward sharing {org.onward_sharing}")
            return
        if options["action"] == "set":
            found = Organisation.objects.filter(slug=options["slug"]).first()
            if found is None:
                raise fail(f"no organisation with slug {options['slug']!r}")
            if options["onward_sharing"] is not None:
                found.onward_sharing = options["onward_sharing"]
                found.save(update_fields=["onward_sharing"])
            self.stdout.write(f"{found.slug}: onward sharing {found.onward_sharing}")
            return
        if Organisation.objects.filter(slug=options["slug"]).exists():
            raise fail(f"an organisation with slug {options['slug']!r} already exists")
        try:
            org = create_organisation(
                options["slug"],
                options["name"],
                contact_phone=options["contact_phone"],
                contact_email=options["contact_email"],
                contact_url=options["contact_url"],
            )
        except ValidationError as exc:
            raise fail(validation_message(exc)) from None
        if options["onward_sharing"] is not None:
            org.onward_sharing = options["onward_sharing"]
            org.save(update_fields=["onward_sharing"])
        self.stdout.write(f"created organisation {org.slug} ({org.name})")
