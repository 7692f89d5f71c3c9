"""Parsers of plain settings: numbers, flags, choices, names, addresses and lists.

Each takes the raw text of a ``RADSHARE_*`` variable and returns the typed value, or raises ``ValueError`` with
what is wrong in words an operator acts on (``load()`` puts the setting's name in front). Settings written as a
URL are parsed in ``urls``; the SMS body template in ``sms_template``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from email.utils import parseaddr

from django.core.exceptions import ValidationError
from django.core.validators import validate_email


def int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"must be a whole number from {low} to {high}") from None
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}")
        return value

    return parse


def boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("must be true or false (1/0, yes/no, on/off)")


def choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of: {', '.join(choices)}")
        return value

    return parse


def ae_title(raw: str) -> str:
    value = raw.strip()
    if not 1 <= len(value) <= 16:
        raise ValueError("must be 1 to 16 characters (DICOM PS3.5 AE VR)")
    if any(not (32 <= ord(c) < 127) or c == "\\" for c in value):
        raise ValueError("may hold only printable ASCII characters, no backslash (DICOM PS3.5 AE VR)")
    return value


def email_from(raw: str) -> str:
    value = raw.strip()
    _name, address = parseaddr(value)
    try:
        # parseaddr repairs some mistakes (a space in the domain) silently: the address must be there as typed.
        if not address or address not in value or any(c in value for c in "\r\n"):
            raise ValidationError("empty")
        validate_email(address)
    except ValidationError:
        raise ValueError(
            'must be an e-mail address, optionally with a name: "Hospital A <noreply@hospital-a.nl>"'
        ) from None
    return value


def sms_sender(raw: str) -> str:
    value = raw.strip()
    if re.fullmatch(r"\+[1-9][0-9]{6,14}", value):
        return value
    if re.fullmatch(r"[A-Za-z0-9 ]{1,11}", value) and any(c.isalpha() for c in value):
        return value
    raise ValueError(
        "must be a name of 1 to 11 letters, digits or spaces (with at least one letter), "
        "or a phone number in international form, e.g. +3197010203040"
    )


def proxies(raw: str) -> tuple[str, ...]:
    nets = []
    for item in (p.strip() for p in raw.split(",")):
        if not item:
            continue
        try:
            nets.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ValueError(
                f"{item!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/24)"
            ) from None
    return tuple(nets)


def bind(raw: str) -> str:
    value = raw.strip()
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("must be an IP address to listen on, e.g. 127.0.0.1 or 0.0.0.0") from None
    return value


def hosts(raw: str) -> tuple[str, ...]:
    names = tuple(h.strip().lower() for h in raw.split(",") if h.strip())
    for host in names:
        if not all(c.isalnum() or c in ".-:[]*" for c in host.lstrip(".")):
            raise ValueError(f"{host!r} is not a host name (e.g. radshare.example.org or .example.org)")
    return names


def log_level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return value


def text(raw: str) -> str:
    return raw.strip()


def key_list(raw: str) -> tuple[str, ...]:
    """Earlier secret keys, separated by commas or white space (a generated key holds neither)."""
    return tuple(k for k in re.split(r"[\s,]+", raw.strip()) if k)
