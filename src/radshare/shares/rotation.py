"""Moving share codes, and the names on letters, to the current key (docs/security.md A28; ``radshare keys
rotate``).

A live share keeps its code's keyed hash (to be found by) and an encrypted copy (to send the link again). The copy
is read back with any candidate key, and both are made again with the current key, in one transaction. Each
update is conditional on the hash it read, so a share that ends meanwhile (its code wiped) never gets it back.
"""

from __future__ import annotations

from radshare.core import crypto
from radshare.core.crypto import Rotation
from radshare.shares import codes
from radshare.shares.models import Share


def rotate_codes(*, apply: bool = True) -> Rotation:
    """Move the codes of every share that still has one; ``apply=False`` only counts. ``left``: codes whose
    encrypted copy no known key reads (they stay findable only while their key is listed as an old key)."""
    moves: list[tuple[int, str | None, dict[str, str]]] = []
    left = 0
    rows = Share.objects.filter(code_hash__isnull=False).values_list("pk", "code_hash", "code_encrypted")
    for pk, stored, encrypted in rows.iterator():
        code = codes.decrypt_code(encrypted)
        if code is None:
            left += 1
        elif codes.code_hash(code) != stored or not crypto.is_current(codes.PURPOSE, encrypted):
            new = {"code_hash": codes.code_hash(code), "code_encrypted": codes.encrypt_code(code)}
            moves.append((pk, stored, new))
    return crypto.apply_moves(Share, "code_hash", moves, left, apply=apply)


def rotate_recipient_names(*, apply: bool = True) -> Rotation:
    """Encrypt the name on the letter of every share that has one again with the current key (a share that ends
    meanwhile, its name wiped, is left alone); ``apply=False`` only counts. ``left``: names no known key reads.
    The name a patient typed when passing a share on (docs/architecture.md "Onward shares") moves with them."""
    letters = crypto.reencrypt_field(Share, "recipient_name_encrypted", Share.NAME_PURPOSE, apply=apply)
    onward = crypto.reencrypt_field(Share, "passed_on_by_encrypted", Share.NAME_PURPOSE, apply=apply)
    return Rotation(moved=letters.moved + onward.moved, left=letters.left + onward.left)
