from __future__ import annotations

import sys
from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError

from radshare.organisations import two_factor
from radshare.organisations.management.commands._common import (
    OperatorCommand,
    fail,
    organisation,
    validation_message,
)
from radshare.organisations.models import Sender
from radshare.organisations.services import create_sender, generate_password


class Command(OperatorCommand):
    help = (
        "Manage senders: `sender create <org-slug> <username> [--admin] [--log-admin]` reads the password from stdin, "
        "or generates one and prints it once; `sender list <org-slug>`; `sender reset-2fa <username>` removes the "
        "account's authenticator app and recovery codes, so that it sets up an app again at its next login."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a sender (or organisation admin)")
        create.add_argument("org_slug")
        create.add_argument("username")
        create.add_argument("--admin", action="store_true", help="organisation admin instead of sender")
        create.add_argument(
            "--log-admin", action="store_true", help="may read and export the organisation's audit trail"
        )
        create.add_argument("--email", default="", help="the sender's own e-mail address")
        listing = sub.add_parser("list", help="list an organisation's senders")
        listing.add_argument("org_slug")
        reset = sub.add_parser("reset-2fa", help="reset an account's second login step (docs/security.md A9)")
        reset.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "reset-2fa":
            self.reset_two_factor(options["username"])
            return
        org = organisation(options["org_slug"])
        if options["action"] == "list":
            for s in Sender.objects.filter(organisation=org).order_by("username"):
                app = "authenticator app" if two_factor.has_authenticator(s) else "no authenticator app"
                role = f"{s.role}+log-admin" if s.is_log_admin else s.role
                self.stdout.write(f"{s.username}\t{role}\t{'active' if s.is_active else 'inactive'}\t{app}")
            return
        if Sender.objects.filter(username=options["username"]).exists():
            raise fail(f"the username {options['username']!r} is taken")
        generated = sys.stdin is None or sys.stdin.isatty()
        if generated:
            password = generate_password()
        else:
            password = sys.stdin.readline().rstrip("\r\n")
            if not password:
                raise fail(
                    "no password on standard input (pipe one in, or run without input to generate one)"
                )
        try:
            sender = create_sender(
                org,
                options["username"],
                password,
                admin=options["admin"],
                email=options["email"],
                log_admin=options["log_admin"],
            )
        except ValidationError as exc:
            raise fail(validation_message(exc)) from None
        role = "organisation admin" if sender.is_org_admin else "sender"
        role += " (log administrator)" if sender.is_log_admin else ""
        self.stdout.write(f"created {role} {sender.username} in {org.slug}")
        if generated:
            self.stdout.write(f"password (shown once): {password}")

    def reset_two_factor(self, username: str) -> None:
        try:
            sender = two_factor.reset_by_operator(username)
        except Sender.DoesNotExist:
            raise fail(f"no account with username {username!r}") from None
        self.stdout.write(
            f"reset the second login step of {sender.username}: they set up an authenticator app at their next login"
        )
