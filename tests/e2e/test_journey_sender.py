"""A sender's journey in a real browser (issue 14a), in Dutch on a desktop and in English on a phone: log in, search,
select two studies of one patient and share them by e-mail, watch the share go from preparing to ready while the
e-mail waits for it and then arrives at a real SMTP server; then share them again by letter (a PDF whose QR code
holds the link) and by link. axe-core checks every page (tests/e2e/journey.py)."""

from __future__ import annotations

import email.policy
import io
import re
from pathlib import Path
from typing import Any

import pytest

from radshare.organisations.models import Sender
from radshare.shares import codes
from radshare.shares.models import Share
from tests.delivery.test_outbox import SmtpServer
from tests.e2e.conftest import PASSWORD
from tests.e2e.journey import Journey, new_context, work
from tests.shares.helpers import ANNA, PIET, make_study

ADDRESS = "anna@example.org"


def _code_of(link: str) -> str:
    code = codes.normalize_code(link.split("?code=", 1)[1])
    assert code is not None, link
    return code


def _share_dialog(page: Any, journey: Journey, delivery: str, language: str, **fields: str) -> Share:
    """Fill in the share dialog as a sender does (typing, not pasting) and send it; the share made."""
    page.check(f"input[name=delivery][value={delivery}]")
    for name, value in fields.items():
        page.locator(f"input[name={name}]").press_sequentially(value)
    page.locator("input[name=phone]").press_sequentially("06 1234 5678")
    page.check(f"input[name=language][value={language}]")
    journey.check(f"share dialog, {delivery}")
    before = set(Share.objects.values_list("pk", flat=True))
    page.locator("form.share-form button[type=submit]").click()
    page.wait_for_url(re.compile(r".*/portal/shares/\d+/$"))
    [share] = Share.objects.exclude(pk__in=before)
    return share


def _qr_codes(pdf: bytes) -> list[str]:
    import pypdfium2 as pdfium
    import zxingcpp

    image = pdfium.PdfDocument(pdf)[0].render(scale=2).to_pil()
    return [b.text for b in zxingcpp.read_barcodes(image) if b.format == zxingcpp.BarcodeFormat.QRCode]


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("language", "device"), [("nl", "desktop"), ("en", "Pixel 7")])
def test_a_sender_shares_two_studies_by_email_letter_and_link(
    playwright: Any,
    browser: Any,
    live_server: Any,
    sender: Sender,
    organisation: Any,
    radshare_config: Any,
    smtp: SmtpServer,
    tmp_path: Path,
    language: str,
    device: str,
) -> None:
    from playwright.sync_api import expect

    radshare_config(base_url=live_server.url, sms_url=f"file://{tmp_path / 'sms.jsonl'}")
    ct, cr = make_study(organisation, ANNA), make_study(organisation, ANNA, kind="cr")  # renders still to do
    other = make_study(organisation, PIET)
    context = new_context(playwright, browser, device, f"{language}-{'NL' if language == 'nl' else 'GB'}")
    page = context.new_page()
    journey = Journey(page, f"sender-{language}-{device.replace(' ', '-').lower()}", language)
    t = journey.t

    page.goto(f"{live_server.url}/portal/login/")
    journey.check("login")
    page.locator("input[name=username]").press_sequentially(sender.get_username())
    page.locator("input[name=password]").press_sequentially(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/portal/")
    journey.check("studies")

    page.get_by_label(t("Patient ID"), exact=True).press_sequentially(ANNA.patient_id)
    page.get_by_role("button", name=t("Search"), exact=True).click()
    page.wait_for_url(re.compile(r".*patient_id=S1.*"))
    assert page.locator(f"#select-{other.pk}").count() == 0  # another patient's study is not found
    journey.check("search")
    page.check(f"#select-{ct.pk}")
    page.check(f"#select-{cr.pk}")
    page.get_by_role("button", name=t("Share selected studies")).click()
    page.wait_for_url(re.compile(r".*/portal/shares/new\?.*"))
    assert page.locator("main table tbody tr").count() == 2
    # Sent without a phone number: the focus moves to the summary, whose link leads to the field.
    with page.expect_navigation():
        page.locator("form.share-form button[type=submit]").click()
    expect(page.locator("#error-summary")).to_be_focused()
    assert page.locator("#error-summary a[href='#id_phone']").count() == 1
    assert page.locator("#id_phone").get_attribute("aria-invalid") == "true"
    journey.check("share dialog refused")

    # By e-mail: no e-mail while the studies are being prepared; exactly one once they are ready.
    share = _share_dialog(page, journey, "email", language, email=ADDRESS)
    assert (share.status, share.delivery, share.phone, share.email) == (
        "preparing",
        "email",
        "+31612345678",
        ADDRESS,
    )
    assert page.locator("h1 .status").inner_text() == t("preparing")
    assert page.locator("main p.card[role=status]").is_visible()  # "… of … images ready"
    journey.check("share preparing")
    assert smtp.inbox.messages == []

    work()  # what the worker does next: render, prepare, send
    page.get_by_role("link", name=t("Refresh")).click()
    share.refresh_from_db()
    assert share.status == Share.Status.NOTIFIED
    assert page.locator("h1 .status").inner_text() == t("notified")
    journey.check("share ready, e-mail sent")
    [(recipients, raw)] = smtp.inbox.messages
    assert recipients == [ADDRESS]
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert mail["Content-Language"] == language
    body = mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    [link] = re.findall(r"https?://\S+\?code=[\w-]+", body)
    assert link.startswith(live_server.url)
    assert codes.code_hash(_code_of(link)) == share.code_hash
    assert "Jansen" not in body  # the e-mail names no patient

    # By letter: a PDF whose QR code and text hold the link.
    page.get_by_role("link", name=t("Share again")).click()
    page.wait_for_url(re.compile(r".*/portal/shares/new\?.*"))
    letter = _share_dialog(page, journey, "letter", language)
    work()
    page.reload()
    journey.check("share by letter")
    with page.expect_download() as info:
        page.get_by_role("link", name=t("Letter (PDF)")).click()
    pdf = Path(info.value.path()).read_bytes()
    assert pdf.startswith(b"%PDF-")
    [qr] = _qr_codes(pdf)
    assert codes.code_hash(_code_of(qr)) == letter.code_hash
    from pypdf import PdfReader

    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
    assert codes.format_code(_code_of(qr)) in text

    # By link: shown on the page, to copy.
    page.get_by_role("link", name=t("Share again")).click()
    page.wait_for_url(re.compile(r".*/portal/shares/new\?.*"))
    shown = _share_dialog(page, journey, "url", language)
    journey.check("share by link")
    assert codes.code_hash(_code_of(page.input_value("#share-link"))) == shown.code_hash
    assert len(smtp.inbox.messages) == 1  # neither the letter nor the link sent an e-mail
    context.close()
