from __future__ import annotations

import os
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
        "`pacsnode add <org-slug> <AE-title> [--host H] [--port P] [--retrieve move|get] [--dicomweb URL]`, "
        "`pacsnode list <org-slug>`, "
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
        add.add_argument(
            "--retrieve",
            choices=("move", "get"),
            default="move",
            help="C-MOVE to radshare's own AE (the PACS must know it) or C-GET (default: move)",
        )
        add.add_argument("--dicomweb", default="", metavar="URL", help="DICOMweb base URL (QIDO-RS, WADO-RS)")
        add.add_argument("--dicomweb-auth", choices=("none", "basic", "bearer"), default="none")
        add.add_argument("--dicomweb-user", default="", help="user name for basic authentication")
        add.add_argument(
            "--dicomweb-secret-env",
            default="",
            metavar="VAR",
            help="name of an environment variable holding the password or token (kept out of the process list)",
        )
        add.add_argument("--no-query", action="store_true", help="never search this node (it only sends)")
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
                ways = [
                    w
                    for w, on in (("dimse", node.dimse_queryable), ("dicomweb", bool(node.dicomweb_url)))
                    if on
                ]
                query = ("query:" + "+".join(ways)) if node.searchable else "query:off"
                self.stdout.write(
                    f"{node.ae_title}\t{node.host or '*'}\t{node.port or '-'}\t{query}\t"
                    f"retrieve:{node.retrieve}\t{node.dicomweb_url or '-'}\t{node.description}"
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
        secret = ""
        if options["dicomweb_secret_env"]:
            secret = os.environ.get(options["dicomweb_secret_env"], "")
            if not secret:
                raise fail(f"environment variable {options['dicomweb_secret_env']} is empty or not set")
        try:
            node = add_pacs_node(
                org,
                options["ae_title"],
                host=options["host"],
                port=options["port"],
                description=options["description"],
                retrieve=options["retrieve"],
                dicomweb_url=options["dicomweb"],
                dicomweb_auth=options["dicomweb_auth"],
                dicomweb_username=options["dicomweb_user"],
                dicomweb_secret=secret,
            )
            if options["no_query"]:
                node.queried = False
                node.save(update_fields=["queried"])
        except ValidationError as exc:
            raise fail(validation_message(exc)) from None
        self.stdout.write(f"added PACS node {node} to {org.slug}")
