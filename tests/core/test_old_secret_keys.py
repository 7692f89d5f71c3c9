"""RADSHARE_OLD_SECRET_KEYS (docs/security.md A28): an old key still verifies what it made, sessions included, so
it is held to the same rules as the current key; key ids name keys without revealing them."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import pytest

from radshare.core.config import ConfigError, load
from radshare.core.keys import Purpose, derive, key_id

CURRENT = secrets.token_urlsafe(48)
EARLIER = secrets.token_urlsafe(48)


def env(tmp_path: Path, old: str, **extra: str) -> dict[str, str]:
    return {
        "RADSHARE_DATA_DIR": str(tmp_path),
        "RADSHARE_SECRET_KEY": CURRENT,
        "RADSHARE_OLD_SECRET_KEYS": old,
        **extra,
    }


def problems_of(values: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(values, create_secret=False)
    return caught.value.problems


def test_earlier_keys_are_read_in_their_order(tmp_path: Path) -> None:
    other = secrets.token_urlsafe(48)
    config = load(env(tmp_path, f" {EARLIER}, {other}\n"), create_secret=False)
    assert config.old_secret_keys == (EARLIER, other)
    assert load(env(tmp_path, ""), create_secret=False).old_secret_keys == ()


@pytest.mark.parametrize("weak", ["changeme", "secret", "short-key", "django-insecure-" + "x" * 40])
def test_a_weak_old_key_is_refused_outside_demo_mode(tmp_path: Path, weak: str) -> None:
    problems = problems_of(env(tmp_path, f"{EARLIER},{weak}"))
    assert problems == [
        "RADSHARE_OLD_SECRET_KEYS: key 2 looks like a placeholder; an old key must be a real earlier key"
    ]
    assert load(env(tmp_path, weak, RADSHARE_DEMO="1"), create_secret=False).old_secret_keys == (weak,)


def test_a_published_key_is_refused_as_an_old_key_even_in_demo_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    published = secrets.token_urlsafe(48)
    monkeypatch.setattr(
        "radshare.core.config.secret_key.LEAKED_SECRET_KEYS",
        frozenset({hashlib.sha256(published.encode()).hexdigest()}),
    )
    expected = [
        "RADSHARE_OLD_SECRET_KEYS: key 1 was published once; anyone could sign a session with it, so remove it"
    ]
    assert problems_of(env(tmp_path, published)) == expected
    assert problems_of(env(tmp_path, published, RADSHARE_DEMO="1")) == expected


def test_the_current_key_is_not_an_old_one(tmp_path: Path) -> None:
    assert problems_of(env(tmp_path, f"{EARLIER},{CURRENT}")) == [
        "RADSHARE_OLD_SECRET_KEYS: key 2 is the current key (RADSHARE_SECRET_KEY); list only earlier keys"
    ]


def test_no_problem_line_shows_a_key(tmp_path: Path) -> None:
    problems = problems_of(env(tmp_path, f"short,{CURRENT}"))
    assert len(problems) == 2
    assert not any(CURRENT in line or "short" in line for line in problems)


def test_a_key_id_names_a_derived_key_and_reveals_nothing_of_it() -> None:
    hashing = derive(CURRENT, Purpose.HASHING)
    assert len(key_id(hashing)) == 8
    assert key_id(hashing) != key_id(derive(EARLIER, Purpose.HASHING))
    assert key_id(hashing) not in hashing.hex()
