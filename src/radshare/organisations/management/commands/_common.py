"""Shared helpers for the operator commands: bad input is one clear line and exit code 2."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import translation

from radshare.organisations.models import Organisation


def fail(message: str) -> CommandError:
    return CommandError(message, returncode=2)


def validation_message(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(
            f"{field}: {' '.join(str(m) for m in msgs)}" for field, msgs in exc.message_dict.items()
        )
    return " ".join(exc.messages)


def organisation(slug: str) -> Organisation:
    try:
        return Organisation.objects.get(slug=slug)
    except Organisation.DoesNotExist:
        raise fail(f"no organisation with slug {slug!r} (see `radshare org list`)") from None


class OperatorCommand(BaseCommand):
    """Operator commands speak English, Django's validation messages included (not the UI's default Dutch)."""

    def execute(self, *args: Any, **options: Any) -> Any:
        with translation.override("en"):
            return super().execute(*args, **options)
