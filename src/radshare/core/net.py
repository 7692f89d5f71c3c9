"""Client addresses: ``REMOTE_ADDR``, or ``X-Forwarded-For`` only when the peer is a trusted proxy."""

from __future__ import annotations

import ipaddress
from functools import cache
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from django.http import HttpRequest


@cache
def _trusted(networks: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(n) for n in networks)


def is_trusted_proxy(address: str) -> bool:
    """The address is one of ``RADSHARE_TRUSTED_PROXIES`` (docs/security.md A25)."""
    return in_networks(address, settings.RADSHARE.trusted_proxies)


def in_networks(address: str, networks: tuple[str, ...]) -> bool:
    """The address lies in one of ``networks`` (a setting's list of addresses and networks)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in _trusted(networks))


def client_address(request: HttpRequest) -> str:
    """The address of the client, walking ``X-Forwarded-For`` from the right through trusted proxies only."""
    remote = request.META.get("REMOTE_ADDR", "") or ""
    if not is_trusted_proxy(remote):
        return remote
    forwarded = [a.strip() for a in request.headers.get("x-forwarded-for", "").split(",") if a.strip()]
    for address in reversed(forwarded):
        if not is_trusted_proxy(address):
            try:
                return str(ipaddress.ip_address(address))
            except ValueError:
                return remote
    return forwarded[0] if forwarded else remote
