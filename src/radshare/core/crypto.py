"""Keyed hashes and encryption at rest, with keys that rotate (docs/security.md A28).

Keyed hashes (share codes, BSN, SMS codes, known devices, API keys) are HMAC-SHA256 under the HASHING key; each
caller starts its message with a label of its own (``bsn:``, ``apikey:``…), so one kind of hash can never pass
for another. The few secrets radshare must read back (a share's code for re-sending, a PACS's DICOMweb password)
are Fernet tokens under a key of their own per purpose, derived from the ENCRYPTION key.

A value is always made with the current key, and checked or decrypted with every candidate key
(``radshare.core.keys.candidates``: the current one, then each of ``RADSHARE_OLD_SECRET_KEYS``), so what an old
key made keeps working until ``radshare keys rotate`` has moved it. Values made before keys had a purpose
(*legacy*: an HMAC or Fernet key made from the secret key itself) are accepted the same way, under the current
and each old secret key, and moved by the same command; nothing new is ever made with them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models, transaction

from radshare.core import keys
from radshare.core.keys import Purpose


@dataclass(frozen=True)
class Rotation:
    """What moving one kind of stored value to the current key did (or, only checking, would do)."""

    moved: int = 0  # moved to the current key
    left: int = 0  # still under an old key, and not movable now (each caller says why)


def _secrets() -> tuple[str, ...]:
    config = settings.RADSHARE
    return (config.secret_key, *config.old_secret_keys)


def _hmac(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


# --- Keyed hashes -------------------------------------------------------------------------------------------------


def keyed_hash(message: bytes) -> str:
    """HMAC-SHA256 of ``message`` (which starts with the caller's label) under the current HASHING key."""
    return _hmac(keys.current(Purpose.HASHING), message)


def keyed_hashes(message: bytes) -> list[str]:
    """The hash of ``message`` under every candidate key, the current one first, then the legacy ones: what a
    stored hash made by any of them is looked up by (``WHERE … IN``). Their number depends only on the
    configuration, so every input costs the same work (docs/security.md A1)."""
    made = [_hmac(key, message) for key in keys.candidates(Purpose.HASHING)]
    return made + [_hmac(secret.encode(), message) for secret in _secrets()]


def hash_matches(stored: str, message: bytes) -> bool:
    """Whether ``stored`` is the hash of ``message`` under any candidate key; compares with every one of them in
    constant time, without stopping at the first match."""
    found = False
    for candidate in keyed_hashes(message):
        found |= hmac.compare_digest(stored, candidate)
    return found


# A tagged hash names the key that made it: "h1$<key id>$<HMAC-SHA256 hex>". It is for secrets whose hash cannot be
# made again without the secret itself (API keys): it is checked with one HMAC under the key its tag names, and
# moved to the current key when the secret is next shown (``tagged_hash_is_current``). An untagged hash is a
# legacy one (64 hex digits, an HMAC keyed with the secret key itself).
TAGGED_HASH_SCHEME = "h1"


def tagged_hash(message: bytes) -> str:
    """The hash of ``message`` under the current HASHING key, tagged with that key's id."""
    key = keys.current(Purpose.HASHING)
    return f"{TAGGED_HASH_SCHEME}${keys.key_id(key)}${_hmac(key, message)}"


def tagged_hash_key_id(stored: str) -> str | None:
    """The id of the key a tagged hash names; None for a legacy (untagged) or malformed one."""
    scheme, _, rest = stored.partition("$")
    key_id, _, digest = rest.partition("$")
    return key_id if scheme == TAGGED_HASH_SCHEME and key_id and digest else None


def tagged_hash_is_current(stored: str) -> bool:
    return tagged_hash_key_id(stored) == keys.key_id(keys.current(Purpose.HASHING))


def tagged_hash_matches(stored: str, message: bytes) -> bool:
    """Whether ``stored`` (tagged, or legacy) is the hash of ``message`` under a candidate key. A tag naming no
    candidate (a key since dropped), an empty or a malformed ``stored`` still costs one HMAC, and fails."""
    named = tagged_hash_key_id(stored)
    if named is None and len(stored) == 64:  # legacy: made with the secret key itself, current or old
        found = False
        for secret in _secrets():
            found |= hmac.compare_digest(stored, _hmac(secret.encode(), message))
        return found
    by_id = {keys.key_id(key): key for key in keys.candidates(Purpose.HASHING)}
    key = by_id.get(named or "")
    made = _hmac(key or keys.current(Purpose.HASHING), message)
    expected = stored.rpartition("$")[2] if named is not None else "0" * len(made)
    return hmac.compare_digest(expected, made) and key is not None


# --- Encryption ---------------------------------------------------------------------------------------------------


def _fernet(key: bytes, purpose: str) -> Fernet:
    """The Fernet key for ``purpose`` made from an ENCRYPTION key (HMAC-SHA256 as the derivation function)."""
    derived = hmac.new(key, f"radshare-fernet:{purpose}".encode(), hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(derived))


def _legacy_fernet(secret: str, purpose: str) -> Fernet:
    digest = hashlib.sha256(f"radshare-{purpose}:".encode() + secret.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _current(purpose: str) -> Fernet:
    return _fernet(keys.current(Purpose.ENCRYPTION), purpose)


def _every(purpose: str) -> MultiFernet:
    """Encrypts with the current key; decrypts with any candidate key, then with the legacy ones."""
    made = [_fernet(key, purpose) for key in keys.candidates(Purpose.ENCRYPTION)]
    return MultiFernet(made + [_legacy_fernet(secret, purpose) for secret in _secrets()])


def encrypt(purpose: str, text: str) -> str:
    return _current(purpose).encrypt(text.encode()).decode("ascii")


def decrypt(purpose: str, token: str) -> str | None:
    """The text back; None if the token is empty, altered or made with a key no longer known."""
    if not token:
        return None
    try:
        return _every(purpose).decrypt(token.encode("ascii")).decode()
    except (InvalidToken, ValueError):
        return None


def is_current(purpose: str, token: str) -> bool:
    """Whether ``token`` was made with the current key (an empty one needs no key)."""
    if not token:
        return True
    try:
        _current(purpose).decrypt(token.encode("ascii"))
    except (InvalidToken, ValueError):
        return False
    return True


def reencrypt(purpose: str, token: str) -> str | None:
    """``token``'s text encrypted with the current key (its time stamp kept); None when no known key reads it."""
    try:
        return _every(purpose).rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, ValueError):
        return None


# --- Moving stored values to the current key (``radshare keys rotate``; each app's ``rotation.py``) ----------------


def apply_moves(
    model: type[models.Model],
    field: str,
    moves: Sequence[tuple[int, object, dict[str, str]]],
    left: int,
    *,
    apply: bool,
) -> Rotation:
    """Write each move ``(pk, value read, new values)`` in one transaction, on the condition that ``field`` still
    holds the value read: a row that changed meanwhile (a share that ended, a message sent) is left as it is.
    ``apply=False`` only counts."""
    if not apply:
        return Rotation(moved=len(moves), left=left)
    moved = 0
    with transaction.atomic():
        for pk, read, values in moves:
            moved += model._default_manager.filter(pk=pk, **{field: read}).update(**values)
    return Rotation(moved=moved, left=left)


def reencrypt_field(model: type[models.Model], field: str, purpose: str, *, apply: bool) -> Rotation:
    """Encrypt every non-empty ``field`` of ``model`` again with the current key. ``left``: tokens no known key
    reads."""
    moves: list[tuple[int, str, dict[str, str]]] = []
    left = 0
    rows = model._default_manager.exclude(**{field: ""}).values_list("pk", field)
    for pk, token in rows.iterator():
        if is_current(purpose, token):
            continue
        fresh = reencrypt(purpose, token)
        if fresh is None:
            left += 1
        else:
            moves.append((pk, token, {field: fresh}))
    return apply_moves(model, field, moves, left, apply=apply)
