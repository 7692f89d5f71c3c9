from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError

from radshare.organisations.management.commands._common import OperatorCommand, fail, validation_message
from radshare.organisations.models import Organisation
from radshare.organisations.services import create_organisation


class Command(OperatorCommand):
    help = "Manage organisations: `org create <slug> --name NAME`, `org list`."

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
        sub.add_parser("list", help="list organisations")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "list":
            for org in Organisation.objects.order_by("slug"):
                self.stdout.write(f"{org.slug}\t{org.name}\t{'active' if org.is_active else 'inactive'}")
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
        self.stdout.write(f"created organisation {org.slug} ({org.name})")
