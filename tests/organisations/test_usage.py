"""Usage per organisation and month (docs/requirements.md B6.8): ``radshare report usage`` and the operator's page
count what happened, from durable counters (core/usage.py), and a past month's figures stay as they were when its
images are destroyed."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from radshare.audit.actions import Action
from radshare.audit.models import AuditEvent
from radshare.core.usage import Usage, count
from radshare.delivery import outbox
from radshare.delivery.models import Notification
from radshare.downloads.media import archive
from radshare.organisations.services import create_organisation
from radshare.shares.destruction import destroy_due
from radshare.shares.services import Actor, mark_opened, revoke
from radshare.studies.models import Instance, Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import cr_image, encode
from radshare.studies.tasks import record_storage_held
from tests.downloads.test_downloads import get, get_cut_off
from tests.recipients.conftest import logged_in_client, ready_share
from tests.shares.helpers import ANNA, PIET, make_share, make_study

NOVEMBER = datetime(2026, 11, 10, 12, 0, tzinfo=timezone.get_default_timezone())


def report(*args: str) -> str:
    out = io.StringIO()
    call_command("report", "usage", *args, stdout=out)
    return out.getvalue()


def rows(text: str) -> dict[str, dict[str, str]]:
    return {row["organisation"]: row for row in csv.DictReader(io.StringIO(text))}


@pytest.mark.django_db(transaction=True)  # a broken-off download records its end from another thread
def test_a_month_s_figures_per_organisation_in_text_and_csv(
    organisation: Any, sms_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive, "READ_SIZE", 256)  # the ZIP in several pieces, so it can be broken off
    other = create_organisation("other", "Other Clinic")
    with time_machine.travel(NOVEMBER, tick=False):
        ct = make_study(organisation, ANNA)
        first, _ = ready_share(organisation, [ct], delivery="email", email="anna@example.org")
        make_share(
            organisation,
            [ct],
            delivery="letter",
            email="",
            recipient_type="care_provider",
            consent_confirmed=True,
        )
        make_share(organisation, [ct], delivery="url", email="")
        mark_opened(first)
        mark_opened(first)  # opened once, whatever happens after
        sms = outbox.queue_sms_code(first, "123456", timezone.now() + timedelta(minutes=5))
        outbox.deliver(sms.pk)
        for n in Notification.objects.filter(channel="email", state="pending"):
            outbox.deliver(n.pk)  # the link e-mail, to the console backend
        record_storage_held.call()
        make_share(other, [make_study(other, PIET)], delivery="url", email="")
        # A sent duplicate is not received twice; a CR of the same patient is a second study.
        cr_file = encode(cr_image(ANNA))
        for _ in range(2):
            store_instance(organisation, cr_file, source="upload")
        cr = Study.objects.get(organisation=organisation, modalities_in_study="CR")
        # A whole DICOM ZIP, then a JPEG ZIP broken off and resumed: two downloads, every byte sent counted.
        recipient = logged_in_client(first)
        whole = get(recipient, "/r/download/dicom.zip")[1]
        _, start = get_cut_off(recipient, "/r/download/jpeg.zip", keep=1)
        response, rest = get(recipient, "/r/download/jpeg.zip", range=f"bytes={len(start)}-")
        assert response.status_code == 206
    with time_machine.travel(NOVEMBER + timedelta(days=30), tick=False):  # December: not November's
        make_share(organisation, [ct], delivery="url", email="")

    november = rows(report("--month", "2026-11", "--csv"))
    assert set(november) == {"hospital-a", "other"}
    mine = november["hospital-a"]
    assert mine["shares_created"] == "3"
    assert (
        mine["shares by delivery and recipient"] == "email.patient 1; letter.care_provider 1; url.patient 1"
    )
    assert mine["shares_opened"] == "1"
    assert mine["studies_received"] == "2"
    assert mine["instances_received"] == "3"
    sizes = Instance.objects.filter(organisation=organisation).values_list("size", flat=True)
    assert int(mine["bytes_received"]) == sum(sizes) == ct.size + cr.size
    assert mine["downloads"] == "2"
    # What went out as the trail records it: of the broken-off download, what the client took before it left.
    ends = AuditEvent.objects.filter(action=Action.RECIPIENT_DOWNLOAD_END).values_list("detail", flat=True)
    assert sorted(end["sent"] for end in ends)[1:] == sorted([len(whole), len(rest)])
    assert int(mine["download_bytes"]) == sum(end["sent"] for end in ends) >= len(whole) + len(rest)
    assert november["other"]["instances_received"] == "2"
    assert mine["sms_sent"] == "1"
    assert mine["emails_sent"] == "1"
    assert int(mine["storage_bytes"]) == Study.objects.get(pk=ct.pk).size > 0
    assert november["other"]["shares_created"] == "1"
    assert rows(report("--month", "2026-12", "--csv"))["hospital-a"]["shares_created"] == "1"

    text = report("--month", "2026-11", "--org", "hospital-a")
    assert text.startswith("Usage in November 2026")
    assert "Other Clinic" not in text
    assert "shares by letter, for a care_provider" in text

    # The images go; November's report stays as it was.
    with time_machine.travel(NOVEMBER + timedelta(days=40), tick=False):
        for share in organisation.shares.all():
            revoke(share, Actor())
        destroy_due()
    assert not Study.objects.filter(pk=ct.pk).exists()
    assert rows(report("--month", "2026-11", "--csv")) == november


@pytest.mark.django_db
def test_a_recipient_lockout_is_counted(organisation: Any, sms_file: Path) -> None:
    _, code = ready_share(organisation, [make_study(organisation, ANNA)], delivery="url", email="")
    client = Client()
    client.get("/", {"code": code})
    for _ in range(5):
        client.post("/r/birth-date", {"accept_terms": "on", "birth_date": "01-01-1970"})
    month = timezone.localdate().strftime("%Y-%m")
    assert rows(report("--month", month, "--csv"))["hospital-a"]["recipient_lockouts"] == "1"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"), [(["--month", "11-2026"], "YYYY-MM"), (["--org", "nobody"], "nobody")]
)
def test_a_wrong_month_or_organisation_is_one_clear_line(
    organisation: Any, args: list[str], message: str
) -> None:
    args = args if "--month" in args else ["--month", "2026-11", *args]
    with pytest.raises(CommandError, match=message):
        report(*args)


@pytest.mark.django_db
def test_the_operator_s_usage_page_and_its_csv(organisation: Any, django_user_model: Any) -> None:
    count(Usage.SHARES_CREATED, 4, organisation=organisation.pk, kind="url.patient", day=NOVEMBER.date())
    operator = django_user_model.objects.create_superuser("operator", "op@example.org", "x" * 20)
    device = TOTPDevice.objects.create(user=operator, name="app", confirmed=True)
    client = Client()
    client.force_login(operator)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = (
        device.persistent_id
    )  # past the second login step, as django_otp.login does
    session.save()
    page = client.get("/admin/usage/", {"month": "2026-11"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "Usage in November 2026" in html
    assert "url.patient: 4" in html
    csv_response = client.get("/admin/usage/", {"month": "2026-11", "csv": "1"})
    assert rows(csv_response.content.decode())["hospital-a"]["shares_created"] == "4"
    assert Client().get("/admin/usage/").status_code == 302  # not for anyone else
