"""Share codes: 60 bits from the CSPRNG, forgiving when typed, stored only hashed or encrypted."""

from __future__ import annotations

import re
import secrets
from typing import Any

import pytest

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


def test_hash_is_keyed_and_stable(settings: Any) -> None:
    code = codes.generate_code()
    first = codes.code_hash(code)
    assert first == codes.code_hash(code)
    assert code not in first
    assert len(first) == 64
    settings.SECRET_KEY = "another secret key for another installation, long enough"
    assert codes.code_hash(code) != first  # without the secret key the hash cannot be recomputed


def test_encrypted_copy_round_trips_and_rejects_tampering(settings: Any) -> None:
    code = codes.generate_code()
    token = codes.encrypt_code(code)
    assert code not in token
    assert codes.decrypt_code(token) == code
    assert codes.encrypt_code(code) != token  # Fernet: a fresh IV every time
    tampered = token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")
    assert codes.decrypt_code(tampered) is None
    assert codes.decrypt_code("") is None
    settings.SECRET_KEY = "another secret key for another installation, long enough"
    assert codes.decrypt_code(token) is None


def test_share_url(radshare_config: Any) -> None:
    radshare_config(base_url="https://beelden.example.org")
    assert codes.share_url("ABCDEFGHJKMN") == "https://beelden.example.org/?code=ABCD-EFGH-JKMN"
