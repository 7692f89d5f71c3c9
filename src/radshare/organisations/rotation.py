"""Moving the organisations' stored secrets to the current key (docs/security.md A28; ``radshare keys rotate``).

A PACS node's DICOMweb password is read back with any candidate key and encrypted again with the current one.
An API key's hash cannot be made again without the API key, which radshare never keeps: it moves by itself the
next time the key is used (``services.authenticate_api_key``). Here it is only counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from radshare.core import crypto, keys
from radshare.core.crypto import Rotation
from radshare.core.keys import Purpose
from radshare.organisations.models import ApiKey, PacsNode


def rotate_pacs_secrets(*, apply: bool = True) -> Rotation:
    """Encrypt every node's DICOMweb password or token again with the current key; ``apply=False`` only counts.
    ``left``: secrets no known key reads (enter them again on the node's page)."""
    return crypto.reencrypt_field(PacsNode, "dicomweb_secret", PacsNode.SECRET_PURPOSE, apply=apply)


@dataclass(frozen=True)
class ApiKeysOnOldKeys:
    """Active API keys whose hash is not under the current key."""

    waiting: list[ApiKey]  # under a listed old key (or legacy): moved on their next use
    lost: list[ApiKey]  # under a key no longer listed: they no longer work; make new ones


def api_keys_on_old_keys() -> ApiKeysOnOldKeys:
    known = {keys.key_id(key) for key in keys.candidates(Purpose.HASHING)}
    waiting: list[ApiKey] = []
    lost: list[ApiKey] = []
    active = ApiKey.objects.filter(revoked_at__isnull=True).select_related("organisation").order_by("pk")
    for key in active:
        if crypto.tagged_hash_is_current(key.key_hash):
            continue
        named = crypto.tagged_hash_key_id(key.key_hash)
        (waiting if named is None or named in known else lost).append(key)
    return ApiKeysOnOldKeys(waiting=waiting, lost=lost)
