from __future__ import annotations

from argparse import ArgumentParser
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone

from radshare.organisations.management.commands._common import (
    OperatorCommand,
    fail,
    organisation,
    validation_message,
)
from radshare.organisations.models import ApiKey
from radshare.organisations.services import create_api_key, revoke_api_key


def _when(value: datetime | None, empty: str) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M") if value is not None else empty


class Command(OperatorCommand):
    help = (
        "Manage an organisation's REST API keys: `apikey create <org-slug> --name N` (prints the key once), "
        "`apikey list <org-slug>`, `apikey revoke <org-slug> <prefix>`."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="make a key and print it (once)")
        create.add_argument("org_slug")
        create.add_argument("--name", required=True, help="what uses the key, e.g. the PACS")
        listing = sub.add_parser("list", help="list an organisation's keys (never the keys themselves)")
        listing.add_argument("org_slug")
        revoke = sub.add_parser("revoke", help="revoke a key")
        revoke.add_argument("org_slug")
        revoke.add_argument("prefix", help="the key's prefix as `apikey list` shows it (rs_…)")

    def handle(self, *args: Any, **options: Any) -> None:
        org = organisation(options["org_slug"])
        if options["action"] == "list":
            for key in ApiKey.objects.filter(organisation=org):
                self.stdout.write(
                    "\t".join(
                        (
                            key.prefix,
                            key.name,
                            f"created {_when(key.created_at, '-')}",
                            f"last used {_when(key.last_used_at, 'never')}",
                            f"revoked {_when(key.revoked_at, '')}" if key.is_revoked else "active",
                        )
                    )
                )
            return
        if options["action"] == "revoke":
            prefix = options["prefix"].strip()
            found = ApiKey.objects.filter(organisation=org, prefix=prefix).first()
            if found is None:
                raise fail(
                    f"{org.slug} has no API key with prefix {prefix!r} (see `radshare apikey list {org.slug}`)"
                )
            if found.is_revoked:
                raise fail(f"API key {found.prefix} of {org.slug} is already revoked")
            revoke_api_key(org, found.pk, None)
            self.stdout.write(f"revoked API key {found.prefix} ({found.name}) of {org.slug}")
            return
        try:
            key, plaintext = create_api_key(org, options["name"])
        except ValidationError as exc:
            raise fail(validation_message(exc)) from None
        self.stdout.write(f"created API key {key.prefix} ({key.name}) for {org.slug}:")
        self.stdout.write(plaintext)
        self.stdout.write("Store it now: it is not shown again.")
