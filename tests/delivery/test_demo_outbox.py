"""The demo outbox page: what was sent, readable in a browser, in demo mode only."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from radshare.delivery import outbox
from radshare.delivery.models import Notification
from radshare.imaging import services as imaging
from radshare.shares import codes
from radshare.shares.services import prepare
from tests.shares.helpers import ANNA, make_share, make_study


@pytest.fixture
def demo(radshare_config: Any, tmp_path: Path) -> Path:
    radshare_config(
        demo=True, email_url=f"file://{tmp_path / 'mail'}", sms_url=f"file://{tmp_path / 'sms.jsonl'}"
    )
    return tmp_path


@pytest.mark.django_db
def test_the_outbox_is_not_there_outside_demo_mode(radshare_config: Any) -> None:
    radshare_config(demo=False)
    assert Client().get("/dev/outbox/").status_code == 404
    assert Client().get("/dev/outbox/mail/x.eml").status_code == 404


@pytest.mark.django_db
def test_the_outbox_shows_the_emails_and_sms_sent_newest_first(organisation: Any, demo: Path) -> None:
    new = make_share(organisation, [make_study(organisation, ANNA)], language="en")
    imaging.render_pending_now(parallel=False)
    prepare(new.share.pk)
    outbox.deliver(Notification.objects.get(kind="share_link").pk)
    for code in ("111111", "222222"):
        sms = outbox.queue_sms_code(new.share, code, timezone.now() + timedelta(minutes=5))
        outbox.deliver(sms.pk)
    page = Client().get("/dev/outbox/")
    assert page.status_code == 200
    text = page.content.decode()
    assert text.index("222222") < text.index("111111")  # newest first
    assert codes.share_url(new.code) in text
    assert "anna@example.org" in text
    [eml] = list((demo / "mail").iterdir())
    html = Client().get(f"/dev/outbox/mail/{eml.name}")
    assert html.status_code == 200
    assert codes.share_url(new.code) in html.content.decode()
    assert "default-src 'none'" in html["Content-Security-Policy"]
    for bad in ("../sms.jsonl", "..%2Fsms.jsonl", "nothing.eml"):
        assert Client().get(f"/dev/outbox/mail/{bad}").status_code == 404


@pytest.mark.django_db
def test_the_outbox_says_where_messages_go_when_not_to_files(radshare_config: Any) -> None:
    radshare_config(demo=True, email_url="console://", sms_url="console://")
    text = Client().get("/dev/outbox/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "console://" in text
