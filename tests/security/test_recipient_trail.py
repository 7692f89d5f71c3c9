"""The recipient's own overview of their share's trail (docs/security.md A19): on the study list, when and from
where the link was opened, the images viewed and downloaded; this share only, recipient actions only, with the
address coarsened, and nothing of the sender, of another share or of another patient."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.test import Client

from radshare.audit.actions import Action
from radshare.audit.models import AuditEvent
from radshare.audit.queries import coarse_address
from radshare.audit.services import Outcome
from radshare.organisations.models import Organisation, Sender
from radshare.organisations.services import create_organisation, create_sender
from radshare.shares import codes
from radshare.studies.synthetic import FakePatient
from tests.recipients.conftest import ready_share, sms_codes
from tests.shares.helpers import ANNA, PIET, make_study

DESKTOP = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
ANNA_AT = "203.0.113.7"
PIET_AT = "198.51.100.23"
SENDER_AT = "192.0.2.5"


@pytest.fixture
def hospital(db: None) -> Organisation:
    return create_organisation(
        "hospital-a", "Hospital A", contact_phone="+31 20 123 4567", require_two_factor=False
    )


@pytest.fixture
def alice(hospital: Organisation) -> Sender:
    return create_sender(hospital, "alice", "correct horse battery staple")


def recipient_at(address: str) -> Client:
    return Client(HTTP_ACCEPT_LANGUAGE="en", REMOTE_ADDR=address, HTTP_USER_AGENT=DESKTOP)


def log_in(client: Client, code: str, patient: FakePatient, sms_file: Path) -> None:
    """The recipient's three steps, as a person takes them: the link, the date of birth, the SMS code."""
    assert client.get("/", {"code": codes.format_code(code)})["Location"] == "/r/birth-date"
    birth = f"{patient.birth_date:%d-%m-%Y}"
    assert (
        client.post("/r/birth-date", {"accept_terms": "on", "birth_date": birth})["Location"] == "/r/sms-code"
    )
    assert client.post("/r/sms-code", {"code": sms_codes(sms_file)[-1]})["Location"] == "/r/studies"


def download(client: Client, url: str) -> bytes:
    response = client.get(url)
    assert response.status_code == 200

    async def collect() -> bytes:
        return b"".join([part async for part in response])

    return async_to_sync(collect)()


def _cell(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html)).strip()


def visits(client: Client) -> list[tuple[str, str, str]]:
    """The overview's rows as the recipient reads them: (date and time, what, address)."""
    page = client.get("/r/studies").content.decode()
    table = page.split('id="visits"')[1].split("</table>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], re.DOTALL)
    cells = [[_cell(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)] for row in rows]
    return [(when, what, where) for when, what, where in cells]


def test_the_study_list_shows_this_shares_openings_and_downloads_only(
    hospital: Organisation, alice: Sender, sms_file: Path
) -> None:
    anna_share, anna_code = ready_share(
        hospital, [make_study(hospital, ANNA)], created_by=alice, delivery="url", email=""
    )
    piet_share, piet_code = ready_share(
        hospital, [make_study(hospital, PIET, kind="cr")], created_by=alice, delivery="url", email=""
    )
    anna, piet = recipient_at(ANNA_AT), recipient_at(PIET_AT)
    log_in(anna, anna_code, ANNA, sms_file)
    study = anna_share.share_studies.get().study
    assert study is not None
    assert anna.get(f"/r/studies/{study.pk}/").status_code == 200
    assert anna.get(f"/r/studies/{study.pk}/").status_code == 200
    assert download(anna, "/r/download/dicom.zip").startswith(b"PK")
    log_in(piet, piet_code, PIET, sms_file)
    piet_study = piet_share.share_studies.get().study
    assert piet_study is not None
    assert piet.get(f"/r/studies/{piet_study.pk}/").status_code == 200
    sender = Client(REMOTE_ADDR=SENDER_AT)
    sender.force_login(alice)
    assert (
        sender.get(f"/portal/shares/{anna_share.pk}/").status_code == 200
    )  # the sender's reading: not shown

    seen = visits(anna)
    assert [(what, where) for _, what, where in seen] == [
        ("Downloaded", "203.0.113.…"),
        ("Images viewed (2 times)", "203.0.113.…"),
        ("Logged in", "203.0.113.…"),
        ("Link opened", "203.0.113.…"),
    ]
    assert all(re.fullmatch(r"\d{1,2} \w+ \d{4}, \d{2}:\d{2}", when) for when, _, _ in seen), seen
    page = anna.get("/r/studies").content.decode()
    for other in ("198.51.100", "192.0.2", ANNA_AT, "alice", "Bakker", "Piet"):
        assert other not in page, other

    assert [(what, where) for _, what, where in visits(piet)] == [
        ("Images viewed", "198.51.100.…"),
        ("Logged in", "198.51.100.…"),
        ("Link opened", "198.51.100.…"),
    ]
    assert "203.0.113" not in piet.get("/r/studies").content.decode()


def test_a_strangers_opening_shows_and_a_wrong_date_of_birth_does_not(
    hospital: Organisation, alice: Sender, sms_file: Path
) -> None:
    share, code = ready_share(
        hospital, [make_study(hospital, ANNA)], created_by=alice, delivery="url", email=""
    )
    wrong = recipient_at("2001:db8:1234:5678::9")
    assert wrong.get("/", {"code": codes.format_code(code)})["Location"] == "/r/birth-date"
    wrong.post("/r/birth-date", {"accept_terms": "on", "birth_date": "01-01-1990"})  # refused: not a visit
    client = recipient_at("::ffff:203.0.113.99")
    log_in(client, code, ANNA, sms_file)
    assert [(what, where) for _, what, where in visits(client)] == [
        ("Logged in", "203.0.113.…"),
        ("Link opened", "203.0.113.…"),
        ("Link opened", "2001:db8:1234:…"),
    ]
    refused = AuditEvent.objects.filter(action=Action.RECIPIENT_BIRTH_DATE, outcome=Outcome.FAILURE)
    assert refused.get().detail["share"] == share.pk  # in the trail, not in the overview


@pytest.mark.parametrize(
    ("address", "shown"),
    [
        ("203.0.113.7", "203.0.113.…"),
        ("2001:db8:1234:5678::9", "2001:db8:1234:…"),
        ("2001:0db8:0001:0000::1", "2001:db8:1:…"),
        ("::ffff:192.0.2.44", "192.0.2.…"),
        ("", ""),
        ("not an address", ""),
    ],
)
def test_an_address_is_coarsened_to_its_network(address: str, shown: str) -> None:
    assert coarse_address(address) == shown
