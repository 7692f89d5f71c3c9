"""One key of its own per purpose, derived from ``RADSHARE_SECRET_KEY`` (docs/security.md, "Keys and their
rotation").

No two purposes share a key: a value made for one (a share code's hash) can never be replayed as another (a
session cookie, an audit checkpoint). Each key is HKDF-SHA256 of the secret key with the purpose as ``info``.
``RADSHARE_OLD_SECRET_KEYS`` lists earlier secret keys: ``candidates(purpose)`` gives the current key first, then
the old ones, so what an old key made still verifies and decrypts until ``radshare keys rotate`` has moved it.
"""

from __future__ import annotations

import enum
import functools
import hashlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class Purpose(enum.StrEnum):
    HASHING = "hashing"  # keyed hashes looked up or compared: share codes, BSN, SMS codes, known devices
    ENCRYPTION = "encryption"  # stored secrets read back: a share's code for re-sending, PACS passwords
    SESSIONS = "sessions"  # Django's SECRET_KEY: sessions, CSRF, signed values
    AUDIT = "audit-checkpoint"  # signed audit checkpoints


@functools.lru_cache(maxsize=64)
def derive(secret: str, purpose: Purpose) -> bytes:
    """The 32-byte key for ``purpose`` made from ``secret``."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"radshare", info=f"radshare:{purpose}".encode())
    return hkdf.derive(secret.encode())


def current(purpose: Purpose) -> bytes:
    """The key values for ``purpose`` are made with now."""
    return derive(settings.RADSHARE.secret_key, purpose)


def candidates(purpose: Purpose) -> list[bytes]:
    """The current key for ``purpose``, then the one of each ``RADSHARE_OLD_SECRET_KEYS`` entry (in its order)."""
    config = settings.RADSHARE
    return [derive(secret, purpose) for secret in (config.secret_key, *config.old_secret_keys)]


def key_id(key: bytes) -> str:
    """A short public name for a key (8 hex digits), to tag what it made; reveals nothing of the key."""
    return hashlib.sha256(b"radshare-key-id:" + key).hexdigest()[:8]
