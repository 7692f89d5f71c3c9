from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError

from radshare.organisations.management.commands._common import (
    OperatorCommand,
    fail,
    organisation,
    validation_message,
)
from radshare.organisations.models import PacsNode
from radshare.organisations.services import add_pacs_node


class Command(OperatorCommand):
    help = (
        "Manage the DICOM nodes that may store into an organisation: "
        "`pacsnode add <org-slug> <AE-title> [--host H] [--port P]`, `pacsnode list <org-slug>`, "
        "`pacsnode remove <org-slug> <AE-title> [--host H]`."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="admit a calling AE title (and host) for an organisation")
        add.add_argument("org_slug")
        add.add_argument("ae_title")
        add.add_argument("--host", default="", help="IP address it connects from (empty: any)")
        add.add_argument("--port", type=int, default=None, help="its own DICOM port (for retrieve)")
        add.add_argument("--description", default="")
        listing = sub.add_parser("list", help="list an organisation's nodes")
        listing.add_argument("org_slug")
        remove = sub.add_parser("remove", help="remove a node")
        remove.add_argument("org_slug")
        remove.add_argument("ae_title")
        remove.add_argument("--host", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        org = organisation(options["org_slug"])
        if options["action"] == "list":
            for node in PacsNode.objects.filter(organisation=org):
                self.stdout.write(
                    f"{node.ae_title}\t{node.host or '*'}\t{node.port or '-'}\t{node.description}"
                )
            return
        if options["action"] == "remove":
            deleted, _ = PacsNode.objects.filter(
                organisation=org, ae_title=options["ae_title"], host=options["host"]
            ).delete()
            if not deleted:
                raise fail(
                    f"{org.slug} has no node {options['ae_title']!r} with host {options['host'] or '*'!r}"
                )
            self.stdout.write(f"removed {options['ae_title']} from {org.slug}")
            return
        if PacsNode.objects.filter(
            ae_title=options["ae_title"].strip(), host=options["host"].strip()
        ).exists():
            raise fail(
                f"AE title {options['ae_title']!r} with host {options['host'] or '*'!r} is already registered"
            )
        try:
            node = add_pacs_node(
                org,
                options["ae_title"],
                host=options["host"],
                port=options["port"],
                description=options["description"],
            )
        except ValidationError as exc:
            raise fail(validation_message(exc)) from None
        self.stdout.write(f"added PACS node {node} to {org.slug}")
