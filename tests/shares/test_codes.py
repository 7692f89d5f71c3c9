"""Share codes: 60 bits from the CSPRNG, forgiving when typed, stored only hashed or encrypted."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken

from radshare.core import crypto, keys
from radshare.core.keys import Purpose
from radshare.shares import codes

CODE_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")


def test_codes_are_12_crockford_characters_shown_in_groups_of_four() -> None:
    code = codes.generate_code()
    assert len(code) == 12
    assert set(code) <= set(codes.ALPHABET)
    assert CODE_RE.match(codes.format_code(code))
    assert not set("ILOU") & set(codes.ALPHABET)


def test_codes_carry_60_bits_from_the_csprng(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def randbits(k: int) -> int:
        calls.append(k)
        return (1 << 60) - 1

    monkeypatch.setattr(secrets, "randbits", randbits)
    assert codes.generate_code() == "Z" * 12  # every one of the 60 bits lands in the code
    assert calls == [60]


def test_generated_codes_spread_over_the_whole_alphabet() -> None:
    many = [codes.generate_code() for _ in range(2000)]
    assert len(set(many)) == len(many)
    for position in range(12):
        assert len({c[position] for c in many}) == 32  # no position is stuck (e.g. a leading zero)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("ABCD-EFGH-JKMN", "ABCDEFGHJKMN"),
        ("abcd efgh jkmn", "ABCDEFGHJKMN"),
        ("abcdefghjkmn", "ABCDEFGHJKMN"),
        (" 0OIL-1234-5678 ", "001112345678"),  # O -> 0, I and L -> 1
        ("ABCD.EFGH_JKMN", "ABCDEFGHJKMN"),
    ],
)
def test_typed_codes_are_read_forgivingly(typed: str, expected: str) -> None:
    assert codes.normalize_code(typed) == expected


@pytest.mark.parametrize(
    "typed", ["", "ABCD-EFGH-JKM", "ABCD-EFGH-JKMNP", "ABCD-EFGH-JKMU", "ABCD/EFGH/JKMN", "x" * 200]
)
def test_what_cannot_be_a_code_is_none(typed: str) -> None:
    assert codes.normalize_code(typed) is None


def test_hash_is_keyed_and_stable(radshare_config: Any) -> None:
    code = codes.generate_code()
    first = codes.code_hash(code)
    assert first == codes.code_hash(code)
    assert code not in first
    assert len(first) == 64
    radshare_config(secret_key="another secret key for another installation, long enough")
    assert codes.code_hash(code) != first  # without the secret key the hash cannot be recomputed


def test_a_code_is_looked_up_under_every_listed_key_alike(radshare_config: Any) -> None:
    """docs/security.md A28, A1: the current key's hash first, then each old key's, then the legacy ones (made
    with the secret key itself, before keys had a purpose); as many hashes for any input."""
    code = codes.generate_code()
    old = codes.code_hash(code)
    old_secret = radshare_config().secret_key
    legacy = hmac.new(
        old_secret.encode(), b"radshare-share-code:" + code.encode(), hashlib.sha256
    ).hexdigest()
    assert codes.code_hashes(code) == [old, legacy]
    radshare_config(
        secret_key="the next secret key of this installation, long enough", old_secret_keys=(old_secret,)
    )
    hashes = codes.code_hashes(code)
    assert hashes[0] == codes.code_hash(code) != old
    assert old in hashes
    assert legacy in hashes
    assert len(hashes) == len(set(hashes)) == 4
    assert len(codes.code_hashes("0" * 12)) == 4
    radshare_config(old_secret_keys=())
    assert old not in codes.code_hashes(code)  # dropped: what it made is no longer found


def test_encrypted_copy_round_trips_and_rejects_tampering(radshare_config: Any) -> None:
    code = codes.generate_code()
    token = codes.encrypt_code(code)
    assert code not in token
    assert codes.decrypt_code(token) == code
    assert codes.encrypt_code(code) != token  # Fernet: a fresh IV every time
    tampered = token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")
    assert codes.decrypt_code(tampered) is None
    assert codes.decrypt_code("") is None
    old_secret = radshare_config().secret_key
    radshare_config(secret_key="another secret key for another installation, long enough")
    assert codes.decrypt_code(token) is None
    radshare_config(old_secret_keys=(old_secret,))
    assert codes.decrypt_code(token) == code  # an old key still decrypts
    assert not crypto.is_current(codes.PURPOSE, token)
    moved = crypto.reencrypt(codes.PURPOSE, token)
    assert moved is not None
    assert crypto.is_current(codes.PURPOSE, moved)
    radshare_config(old_secret_keys=())
    assert codes.decrypt_code(moved) == code


def test_the_encryption_key_is_not_the_hashing_key_and_differs_per_purpose(radshare_config: Any) -> None:
    """docs/security.md A28: a Fernet key of its own per purpose, from the ENCRYPTION key only."""
    token = crypto.encrypt("one purpose", "secret")
    assert crypto.decrypt("one purpose", token) == "secret"
    assert crypto.decrypt("another purpose", token) is None
    current = keys.current(Purpose.ENCRYPTION)
    derived = hmac.new(current, b"radshare-fernet:one purpose", hashlib.sha256).digest()
    assert Fernet(base64.urlsafe_b64encode(derived)).decrypt(token.encode()) == b"secret"
    hashing = hmac.new(keys.current(Purpose.HASHING), b"radshare-fernet:one purpose", hashlib.sha256).digest()
    with pytest.raises(InvalidToken):
        Fernet(base64.urlsafe_b64encode(hashing)).decrypt(token.encode())


def test_legacy_tokens_made_with_the_secret_key_itself_still_decrypt(radshare_config: Any) -> None:
    """Copies encrypted before keys had a purpose (Fernet keyed by SHA-256 of the secret key) keep working."""
    secret = radshare_config().secret_key
    legacy_key = hashlib.sha256(f"radshare-{codes.PURPOSE}:".encode() + secret.encode()).digest()
    token = Fernet(base64.urlsafe_b64encode(legacy_key)).encrypt(b"ABCDEFGHJKMN").decode()
    assert codes.decrypt_code(token) == "ABCDEFGHJKMN"
    assert not crypto.is_current(codes.PURPOSE, token)


def test_share_url(radshare_config: Any) -> None:
    radshare_config(base_url="https://beelden.example.org")
    assert codes.share_url("ABCDEFGHJKMN") == "https://beelden.example.org/?code=ABCD-EFGH-JKMN"
