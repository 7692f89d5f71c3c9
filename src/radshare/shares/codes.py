"""Share codes (docs/security.md A1, docs/architecture.md "Codes").

12 characters of Crockford's base32 (60 bits from the CSPRNG), shown as ``XXXX-XXXX-XXXX``. People type the code
from a letter, so reading it back is forgiving: any case, with or without dashes or spaces, and the look-alike
letters O, I and L read as the digits 0, 1 and 1 (Crockford's decoding rules). The database holds only a keyed hash
(HMAC-SHA256 under the HASHING key, ``core.crypto``) for look-up and, until the share ends, a Fernet-encrypted copy
for re-sending. A code is looked up under every candidate key (docs/security.md A28), and ``shares.rotation``
moves the codes of live shares to the current key.
"""

from __future__ import annotations

import secrets

from django.conf import settings

from radshare.core import crypto

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32: no I, L, O, U
LENGTH = 12
PURPOSE = "code-encryption"  # the key derivation of the encrypted copy
BITS = LENGTH * 5  # 60
_LOOK_ALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})
_SEPARATORS = str.maketrans("", "", "- \t._")


def generate_code() -> str:
    """A new code: 60 bits from ``secrets``, as 12 base32 characters (no dashes)."""
    value = secrets.randbits(BITS)
    return "".join(ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(LENGTH)))


def format_code(code: str) -> str:
    """``ABCDEFGHJKMN`` -> ``ABCD-EFGH-JKMN``."""
    return "-".join(code[i : i + 4] for i in range(0, LENGTH, 4))


def normalize_code(raw: str) -> str | None:
    """What a person typed (or a link carried) as the canonical 12 characters, or None if it cannot be a code."""
    if not raw or len(raw) > 40:
        return None
    code = raw.strip().upper().translate(_SEPARATORS).translate(_LOOK_ALIKES)
    if len(code) != LENGTH or any(c not in ALPHABET for c in code):
        return None
    return code


def _message(code: str) -> bytes:
    return b"radshare-share-code:" + code.encode("ascii")


def code_hash(code: str) -> str:
    """The keyed hash a new share is stored with (the code itself is never stored in clear)."""
    return crypto.keyed_hash(_message(code))


def code_hashes(code: str) -> list[str]:
    """The hashes a share with this code may be stored under: one per candidate key, as many for every code, so
    that a look-up costs the same whatever was typed (docs/security.md A1)."""
    return crypto.keyed_hashes(_message(code))


def encrypt_code(code: str) -> str:
    return crypto.encrypt(PURPOSE, code)


def decrypt_code(token: str) -> str | None:
    """The code back from its encrypted copy; None if the copy was wiped, altered or made with another key."""
    code = crypto.decrypt(PURPOSE, token)
    return code if code is None or code.isascii() else None


def share_url(code: str) -> str:
    """The link a recipient opens: ``{RADSHARE_BASE_URL}/?code=XXXX-XXXX-XXXX``."""
    return f"{settings.RADSHARE.base_url}/?code={format_code(code)}"
