"""The first login of a sender whose organisation requires the second step (docs/security.md A9), in a real browser,
in Dutch and in English: password, setting up the app by typing its code, the recovery codes, the study list. The
pages run under the strict CSP (errors would show)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django_otp.oath import TOTP

from radshare.organisations.models import Organisation, RecoveryCode
from radshare.organisations.services import create_sender
from tests.e2e.conftest import PASSWORD

WORDS = {
    "nl": {"continue": "Verder", "studies": "Onderzoeken"},
    "en": {"continue": "Continue", "studies": "Studies"},
}


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("language", ["nl", "en"])
def test_first_login_sets_up_the_app_and_reaches_the_studies(
    browser: Any, live_server: Any, two_factor_organisation: Organisation, language: str
) -> None:
    sender = create_sender(two_factor_organisation, f"tessa-{language}", PASSWORD)
    context = browser.new_context(locale=language, extra_http_headers={"Accept-Language": language})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    base = live_server.url

    page.goto(f"{base}/portal/login/")
    page.fill("input[name=username]", sender.get_username())
    page.fill("input[name=password]", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/portal/two-factor/setup/?next=/portal/")
    assert page.locator("html").get_attribute("lang") == language
    assert page.locator(".qr-box img").evaluate("img => img.naturalWidth") > 0  # the QR code shows (CSP)

    # What a person types into the app, and then the code the app shows, typed with the keyboard.
    secret = page.inner_text("#two-factor-secret").replace(" ", "")
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    page.get_by_label(page.inner_text("label[for=id_code]")).click()
    page.keyboard.type(f"{TOTP(key).token():06d}")
    page.keyboard.press("Enter")

    page.wait_for_url(f"{base}/portal/two-factor/recovery-codes/?next=/portal/")
    codes = page.locator("#recovery-codes li").all_inner_texts()
    assert len(codes) == 10
    assert RecoveryCode.objects.filter(sender=sender, used_at__isnull=True).count() == 10
    assert page.locator("[data-print]").is_visible()  # its script ran under the CSP
    page.get_by_role("link", name=WORDS[language]["continue"]).click()

    page.wait_for_url(f"{base}/portal/")
    assert page.locator("h1").inner_text() == WORDS[language]["studies"]
    assert problems == []
    context.close()
