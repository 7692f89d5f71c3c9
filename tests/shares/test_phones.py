"""Phone numbers for the SMS code: Dutch without +31, foreign with a country code, E.164, SMS warnings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.utils import translation

from radshare.shares.phones import PhoneError, mask_phone, normalize_phone


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    with translation.override("en"):
        yield


def test_messages_are_translated() -> None:
    with translation.override("nl"):
        with pytest.raises(PhoneError) as caught:
            normalize_phone("phone")
        assert (
            str(caught.value.message) == "Dit is geen telefoonnummer."
        )  # lazy: rendered in the active language


@pytest.mark.parametrize(
    ("typed", "e164"),
    [
        ("0612345678", "+31612345678"),
        ("06-12345678", "+31612345678"),
        ("612345678", "+31612345678"),
        ("+31 6 12345678", "+31612345678"),
        ("0031612345678", "+31612345678"),
        ("+32 470 12 34 56", "+32470123456"),
    ],
)
def test_mobile_numbers_are_stored_in_e164_without_warning(typed: str, e164: str) -> None:
    phone = normalize_phone(typed)
    assert (phone.e164, phone.warning) == (e164, "")


def test_a_uk_number_with_country_code_is_handled() -> None:
    phone = normalize_phone("+44 7700 900123")
    assert phone.e164 == "+447700900123"
    assert phone.region in {"GB", ""}
    # 07700 900xxx is Ofcom's range for fiction: usable, but the sender is asked to check it.
    assert phone.warning


@pytest.mark.parametrize("typed", ["0201234567", "+31 20 123 4567", "0800 1234"])
def test_landlines_and_service_numbers_get_a_warning(typed: str) -> None:
    phone = normalize_phone(typed)
    assert phone.e164.startswith("+31")
    assert "SMS" in str(phone.warning)


@pytest.mark.parametrize(
    ("typed", "fragment"),
    [
        ("", "Enter the phone number"),
        ("12345", "country code"),
        ("7700 900123 45678", "country code"),
        ("+44 12", "too many or too few digits"),
        ("phone", "not a phone number"),
    ],
)
def test_invalid_numbers_are_refused_with_a_reason(typed: str, fragment: str) -> None:
    with pytest.raises(PhoneError) as caught:
        normalize_phone(typed)
    assert fragment in str(caught.value.message)


def test_recipients_see_only_the_last_two_digits() -> None:
    assert mask_phone("+31612345678") == "••••••••••78"
