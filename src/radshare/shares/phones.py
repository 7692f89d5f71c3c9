"""Authentication phone numbers (docs/requirements.md S2.6): validated, stored in E.164, with a warning when
SMS may not arrive (a landline, a number not in use, a number outside the EU and EEA).

A Dutch number needs no country code (+31 is assumed); a foreign number must carry one (``+`` or ``00``).
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from phonenumbers import PhoneNumberType

DEFAULT_REGION = "NL"
_SMS_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})
# The EU and EEA countries, with the parts of them that have a region code of their own (Åland, the French
# overseas regions, Saint-Martin). The Dutch national SMS service delivers to these numbers only.
EU_EEA = frozenset(
    {
        *("AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT"),
        *("LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK"),  # the EU
        *("IS", "LI", "NO"),  # the rest of the EEA
        *("AX", "GF", "GP", "MF", "MQ", "RE", "YT"),
    }
)
OUTSIDE_EU = _(
    "This number is from outside the EU and EEA: the SMS service delivers to EU and EEA numbers only, so the "
    "recipient will probably not receive the code. Use a number from an EU or EEA country if you can."
)


class PhoneError(ValueError):
    """The number cannot be used; ``message`` says why, in the user's language."""

    def __init__(self, message: str | Promise) -> None:
        super().__init__(str(message))
        self.message = message


@dataclass(frozen=True)
class Phone:
    e164: str
    region: str
    warning: str | Promise = ""  # non-empty: usable, but the sender should check it


def normalize_phone(raw: str) -> Phone:
    """Parse what a sender typed; raise ``PhoneError`` when it is no phone number at all."""
    text = (raw or "").strip()
    if not text:
        raise PhoneError(_("Enter the phone number the SMS code is sent to."))
    international = text.startswith(("+", "00"))
    try:
        number = phonenumbers.parse(text, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        raise PhoneError(_("This is not a phone number.")) from None
    if not international and not phonenumbers.is_valid_number(number):
        # Dutch numbers are well defined: an invalid one is a typo, or a foreign number without its country code.
        raise PhoneError(
            _(
                "This is not a valid Dutch number. A foreign number must start with its country code, e.g. +44."
            )
        )
    if not phonenumbers.is_possible_number(number):
        raise PhoneError(_("This phone number has too many or too few digits for its country."))
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    region = phonenumbers.region_code_for_number(number) or ""
    if not phonenumbers.is_valid_number(number):
        return Phone(e164, region, _("This number does not look like one in use. Check it before sharing."))
    if region not in EU_EEA:
        return Phone(e164, region, OUTSIDE_EU)
    if phonenumbers.number_type(number) not in _SMS_TYPES:
        return Phone(e164, region, _("This looks like a landline or service number: it may not receive SMS."))
    return Phone(e164, region)


def mask_phone(e164: str) -> str:
    """What a recipient sees of the registered number: only its last 2 digits (docs/security.md A8)."""
    return "•" * max(len(e164) - 2, 0) + e164[-2:]


def mask_email(address: str) -> str:
    """An e-mail address as the shares overview shows it: its first character and its domain
    (``a***@example.nl``), enough to tell two shares apart at a glance."""
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return "***" if address else ""
    return f"{local[0]}***@{domain}"
