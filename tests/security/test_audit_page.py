"""The organisation's audit trail in the portal (docs/security.md A19; NEN 7513): who may read it, each filter,
the page, the CSV and JSON exports, and that reading and exporting are themselves recorded."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import uuid
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest
import requests
import time_machine
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.db import transaction
from django.db.models.signals import post_init
from django.test import Client
from django.utils import timezone, translation

from radshare.audit.actions import Action
from radshare.audit.models import AuditEvent
from radshare.audit.queries import CSV_HEADER
from radshare.audit.services import ActorType, Outcome, record
from radshare.organisations.models import Organisation, Sender
from radshare.organisations.services import add_pacs_node, create_organisation, create_sender
from radshare.studies.models import Patient
from radshare.trail import export
from radshare.trail.views import PAGE_SIZE
from tests.conftest import require
from tests.e2e.conftest import ARGS, CHROMIUM

PASSWORD = "correct horse battery staple"
AMSTERDAM = zoneinfo.ZoneInfo("Europe/Amsterdam")
FORMULA = '=HYPERLINK("http://evil.example","open")'


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    """A moment in March 2025, Amsterdam time (UTC+1 then)."""
    return dt.datetime(2025, 3, day, hour, minute, tzinfo=AMSTERDAM)


def entry(moment: dt.datetime, action: Action, **kwargs: Any) -> AuditEvent:
    with time_machine.travel(moment, tick=False):
        return record(action, **kwargs)


@dataclass
class Seed:
    hospital: Organisation
    other: Organisation
    alice: Sender  # a sender: no right to read the trail
    bob: Sender
    carol: Sender  # organisation admin
    lars: Sender  # log administrator, not an admin
    dave: Sender  # admin of the other organisation
    anna: Patient
    piet: Patient
    events: dict[str, AuditEvent]


@pytest.fixture
def seed(db: None) -> Seed:
    """Five entries of hospital A over five days in March 2025, and one of hospital B that looks like them (the
    same Patient ID, share number and user name)."""
    hospital = create_organisation("hospital-a", "Hospital A", require_two_factor=False)
    other = create_organisation("hospital-b", "Hospital B", require_two_factor=False)
    alice, bob = create_sender(hospital, "alice", PASSWORD), create_sender(hospital, "bob", PASSWORD)
    carol = create_sender(hospital, "carol", PASSWORD, admin=True)
    lars = create_sender(hospital, "lars", PASSWORD, log_admin=True)
    dave = create_sender(other, "dave", PASSWORD, admin=True)
    anna = Patient.objects.create(organisation=hospital, patient_id="S1", patient_name="Jansen^Anna")
    piet = Patient.objects.create(organisation=hospital, patient_id="S2", patient_name="Bakker^Piet")
    anna_b = Patient.objects.create(organisation=other, patient_id="S1", patient_name="Visser^Anna")
    uid = "1.2.826.0.1.3680043.8.498.1"
    events = {
        "created": entry(
            at(1, 10), Action.SHARE_CREATE, user=alice, patient=anna, study_uids=[uid], detail={"share": 101}
        ),
        # 23:30 local on 2 March is 22:30 UTC: it belongs to 2 March, as 00:30 on 3 March belongs to 3 March.
        "login": entry(
            at(2, 23, 30),
            Action.RECIPIENT_LOGIN,
            actor_type=ActorType.RECIPIENT,
            actor_label="share 101",
            organisation=hospital,
            patient=anna,
            on_behalf_of=alice.pk,
            client="203.0.113.7",
            detail={"share": 101, "method": "link+dob+sms"},
        ),
        "failed": entry(
            at(3, 0, 30),
            Action.PORTAL_LOGIN_FAILED,
            outcome=Outcome.FAILURE,
            actor_type=ActorType.ANONYMOUS,
            actor_label="mallory",
            organisation=hospital,
            client="198.51.100.9",
        ),
        "piet": entry(at(4, 9), Action.SHARE_CREATE, user=bob, patient=piet, detail={"share": 102}),
        # A user name and a user agent as a stranger types them: spreadsheet formulas.
        "formula": entry(
            at(5, 8),
            Action.PORTAL_LOGIN_FAILED,
            outcome=Outcome.FAILURE,
            actor_type=ActorType.ANONYMOUS,
            actor_label=FORMULA,
            organisation=hospital,
            client="198.51.100.10",
            detail={"note": "-2+3"},
        ),
        "other": entry(
            at(2, 12),
            Action.SHARE_CREATE,
            user=dave,
            patient=anna_b,
            detail={"share": 101},
            client="10.0.0.1",
        ),
    }
    return Seed(hospital, other, alice, bob, carol, lars, dave, anna, piet, events)


def session_for(user: Sender) -> str:
    """A session logged in as ``user``, as after the login page. Made directly: ``force_login`` would add a login
    entry to the trail under test (the login itself is tested in tests/organisations)."""
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.save()
    return str(store.session_key)


def portal(user: Sender, language: str = "en") -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.cookies[settings.SESSION_COOKIE_NAME] = session_for(user)
    return client


def body(response: Any) -> bytes:
    return b"".join(response.streaming_content)


def shown(client: Client, query: dict[str, str], how: str) -> list[int]:
    """The ids of the entries the page (first page), the CSV or the JSON export holds, in their order."""
    if how == "page":
        response = client.get("/portal/audit/", query)
        assert response.status_code == 200
        return [row.event.pk for row in response.context["rows"]]
    response = client.get(f"/portal/audit/export.{how}", query)
    assert response.status_code == 200
    data = body(response).decode("utf-8-sig")
    if how == "csv":
        ids = [row["event_id"] for row in csv.DictReader(io.StringIO(data))]
    else:
        ids = [item["id"] for item in json.loads(data)["entries"]]
    by_uuid = dict(AuditEvent.objects.values_list("event_id", "pk"))
    return [by_uuid[uuid.UUID(i)] for i in ids]


def names(seed: Seed, *keys: str) -> list[int]:
    return [seed.events[k].pk for k in keys]


# --- who may read it ---------------------------------------------------------------------------------------


def test_a_sender_without_the_role_is_refused_and_the_refusal_is_recorded(seed: Seed) -> None:
    client = portal(seed.alice)
    assert client.get("/portal/audit/").status_code == 403
    assert client.get("/portal/audit/export.csv").status_code == 403
    assert client.get("/portal/audit/export.json").status_code == 403
    assert 'href="/portal/audit/"' not in client.get("/portal/").content.decode()
    refused = AuditEvent.objects.filter(actor_id=seed.alice.pk, outcome=Outcome.DENIED)
    assert sorted(refused.values_list("action", flat=True)) == sorted(
        [Action.PORTAL_AUDIT_EXPORT, Action.PORTAL_AUDIT_EXPORT, Action.PORTAL_AUDIT_VIEW]
    )


def test_nobody_logged_in_is_sent_to_the_login_page(seed: Seed) -> None:
    response = Client().get("/portal/audit/export.csv")
    assert response.status_code == 302
    assert response["Location"].startswith("/portal/login/")


def test_a_log_administrator_who_is_not_an_admin_reads_the_trail(seed: Seed) -> None:
    client = portal(seed.lars)
    assert shown(client, {}, "page") == names(seed, "formula", "piet", "failed", "login", "created")
    assert 'href="/portal/audit/"' in client.get("/portal/").content.decode()
    assert 'href="/portal/audit/"' in portal(seed.carol).get("/portal/").content.decode()


def test_an_admin_gives_and_takes_the_log_administrator_role_on_the_senders_page(seed: Seed) -> None:
    admin = portal(seed.carol)
    page = admin.get("/portal/senders/").content.decode()
    assert f'action="/portal/senders/{seed.alice.pk}/log-admin/"' in page
    assert f'action="/portal/senders/{seed.carol.pk}/log-admin/"' not in page  # an admin reads it anyway
    assert portal(seed.alice).get("/portal/audit/").status_code == 403

    answer = admin.post(f"/portal/senders/{seed.alice.pk}/log-admin/", {"on": "1"}, follow=True)
    assert "alice is now a log administrator" in answer.content.decode()
    assert portal(seed.alice).get("/portal/audit/").status_code == 200
    given = AuditEvent.objects.get(action=Action.PORTAL_SENDER_LOG_ADMIN)
    assert (given.actor_id, given.organisation_id, given.detail) == (
        seed.carol.pk,
        seed.hospital.pk,
        {"sender_id": seed.alice.pk, "username": "alice", "log_admin": True},
    )
    admin.post(f"/portal/senders/{seed.alice.pk}/log-admin/", {"on": "0"})
    assert portal(seed.alice).get("/portal/audit/").status_code == 403
    assert AuditEvent.objects.filter(action=Action.PORTAL_SENDER_LOG_ADMIN).count() == 2

    # Nonsense, another organisation's sender, and anyone but an admin change nothing.
    assert admin.post(f"/portal/senders/{seed.bob.pk}/log-admin/", {"on": "yes"}).status_code == 400
    assert admin.post(f"/portal/senders/{seed.dave.pk}/log-admin/", {"on": "1"}).status_code == 404
    assert portal(seed.lars).post(f"/portal/senders/{seed.bob.pk}/log-admin/", {"on": "1"}).status_code == 403
    assert admin.get(f"/portal/senders/{seed.bob.pk}/log-admin/").status_code == 405
    assert not Sender.objects.filter(pk__in=[seed.bob.pk, seed.dave.pk], is_log_admin=True).exists()
    assert (
        AuditEvent.objects.filter(action=Action.PORTAL_SENDER_LOG_ADMIN, outcome=Outcome.SUCCESS).count() == 2
    )


def test_an_admin_of_another_organisation_sees_none_of_these_entries(seed: Seed) -> None:
    client = portal(seed.dave)
    assert shown(client, {}, "page") == names(seed, "other")
    for how in (
        "page",
        "csv",
        "json",
    ):  # the readings themselves are entries of B now: filtered away by share
        assert shown(client, {"share": "101"}, how) == names(seed, "other")
        assert shown(client, {"share": "101", "patient_id": "S1", "user": "dave"}, how) == names(
            seed, "other"
        )
    assert shown(portal(seed.carol), {"patient_id": "S1"}, "page") == names(seed, "login", "created")


# --- the filters -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["page", "csv", "json"])
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["formula", "piet", "failed", "login", "created"]),
        ({"patient_id": "S1"}, ["login", "created"]),
        ({"patient_id": " s1 "}, ["login", "created"]),
        ({"patient_id": "S9"}, []),
        ({"share": "101"}, ["login", "created"]),
        ({"user": "bob"}, ["piet"]),
        ({"user": "Share 101"}, ["login"]),
        ({"action": "share.create"}, ["piet", "created"]),
        ({"outcome": "failure"}, ["formula", "failed"]),
        ({"date_to": "2025-03-02"}, ["login", "created"]),
        ({"date_from": "2025-03-03"}, ["formula", "piet", "failed"]),
        ({"date_from": "03-03-2025", "date_to": "04-03-2025"}, ["piet", "failed"]),
        ({"action": "share.create", "patient_id": "S2"}, ["piet"]),
    ],
)
def test_each_filter_narrows_the_page_and_the_exports(
    seed: Seed, query: dict[str, str], expected: list[str], how: str
) -> None:
    assert shown(portal(seed.carol), query, how) == names(seed, *expected)


def test_filters_that_make_no_sense_are_explained_and_match_nothing(seed: Seed) -> None:
    client = portal(seed.carol)
    response = client.get(
        "/portal/audit/", {"share": "abc", "date_from": "2025-03-04", "date_to": "2025-03-01"}
    )
    assert response.status_code == 200
    assert list(response.context["rows"]) == []
    form = response.context["form"]
    assert set(form.errors) == {"share", "date_to"}
    page = response.content.decode()
    assert 'id="id_share_error"' in page
    assert 'aria-invalid="true"' in page
    export = client.get("/portal/audit/export.csv", {"share": "abc"})
    assert export.status_code == 302
    assert export["Location"] == "/portal/audit/?share=abc"


def test_pages_hold_the_newest_first_and_keep_the_filters(seed: Seed) -> None:
    more = [
        entry(at(6, 10, n), Action.PORTAL_STUDIES_LIST, user=seed.bob, client="192.0.2.1")
        for n in range(PAGE_SIZE + 1)
    ]
    client = portal(seed.carol)
    first = client.get("/portal/audit/", {"user": "bob"})
    assert [r.event.pk for r in first.context["rows"]] == [e.pk for e in reversed(more)][:PAGE_SIZE]
    assert "user=bob&amp;page=2" in first.content.decode()
    second = client.get("/portal/audit/", {"user": "bob", "page": "2"})
    assert [r.event.pk for r in second.context["rows"]] == [more[0].pk, seed.events["piet"].pk]


# --- the page as people read it ----------------------------------------------------------------------------


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_a_row_says_when_what_who_for_whom_which_patient_study_share_and_where(seed: Seed) -> None:
    page = portal(seed.carol).get("/portal/audit/", {"share": "101"}).content.decode()
    rows = re.findall(r"<tr>(.*?)</tr>", page, re.DOTALL)
    login = _text(rows[1])  # rows[0] is the header
    assert "02-03-2025 23:30:00" in login  # local time
    for words in ("Recipient logged in", "success", "share 101 (recipient)", "alice", "S1", "203.0.113.7"):
        assert words in login, (words, login)
    assert 'href="/portal/shares/101/"' in rows[1]
    created = _text(rows[2])
    assert "01-03-2025 10:00:00" in created
    assert "1.2.826.0.1.3680043.8.498.1" in created
    assert "alice (sender)" in created
    assert "Jansen" not in page  # the trail names patients by their ID, never by name


def test_every_filter_has_a_label_and_the_table_has_column_headers(seed: Seed) -> None:
    page = portal(seed.carol).get("/portal/audit/").content.decode()
    form = page.split('role="search"')[1].split("</form>")[0]
    controls = re.findall(r'<(?:input|select)[^>]*\bid="([^"]+)"', form)
    assert len(controls) == 7
    for control in controls:
        assert f'<label for="{control}">' in form, control
    assert page.count('<th scope="col">') == 9
    assert '<div class="table-wrap">' in page  # the table scrolls sideways on a phone


def test_the_page_speaks_dutch(seed: Seed) -> None:
    page = portal(seed.carol, "nl").get("/portal/audit/").content.decode()
    with translation.override("nl"):
        dutch = str(Action.SHARE_CREATE.label)
    assert dutch != "Share made"
    assert dutch in page
    assert '<option value="share.create">' + dutch + "</option>" in page


# --- the exports -------------------------------------------------------------------------------------------


def test_the_csv_export_has_a_header_one_row_per_entry_and_no_formulas(seed: Seed) -> None:
    response = portal(seed.carol).get("/portal/audit/export.csv", {"outcome": "failure"})
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    today = timezone.localdate()
    assert response["Content-Disposition"] == f'attachment; filename="audit-hospital-a-{today:%Y-%m-%d}.csv"'
    rows = list(csv.reader(io.StringIO(body(response).decode("utf-8-sig"))))
    assert tuple(rows[0]) == CSV_HEADER
    assert len(rows) == 3
    formula = dict(zip(CSV_HEADER, rows[1], strict=True))
    assert formula["actor"] == "'" + FORMULA
    assert formula["detail"] == '{"note": "-2+3"}'
    assert formula["time"] == "2025-03-05T08:00:00.000+01:00"
    assert formula["event"] == "Portal login failed"
    assert (formula["outcome"], formula["actor_type"], formula["patient_id"]) == ("failure", "anonymous", "")
    for row in rows[1:]:
        assert not any(value.startswith(("=", "+", "-", "@")) for value in row), row


def test_the_csv_names_the_patient_and_the_sender_it_happened_for(seed: Seed) -> None:
    response = portal(seed.carol).get("/portal/audit/export.csv", {"share": "101"})
    rows = list(csv.DictReader(io.StringIO(body(response).decode("utf-8-sig"))))
    login, created = rows
    assert login["event_id"] == str(seed.events["login"].event_id)
    assert (login["patient_id"], login["on_behalf_of"], login["on_behalf_of_id"]) == (
        "S1",
        "alice",
        str(seed.alice.pk),
    )
    assert (login["share"], login["client_address"], login["action"]) == (
        "101",
        "203.0.113.7",
        "recipient.login",
    )
    assert created["study_uids"] == "1.2.826.0.1.3680043.8.498.1"
    assert (created["actor"], created["actor_id"]) == ("alice", str(seed.alice.pk))


def test_the_json_export_has_the_nen7513_shape(seed: Seed) -> None:
    node = add_pacs_node(seed.hospital, "CT_ROOM_1", host="192.0.2.40")
    store = entry(at(6, 7), Action.DICOM_STORE, node=node, patient=seed.piet, client="192.0.2.40")
    response = portal(seed.carol).get("/portal/audit/export.json", {"date_from": "2025-03-02"})
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].endswith(f'-{timezone.localdate():%Y-%m-%d}.json"')
    document = json.loads(body(response))
    assert document["standard"] == "NEN 7513"
    assert document["organisation"] == {"slug": "hospital-a", "name": "Hospital A"}
    assert (document["exported_by"], document["count"]) == ("carol", 5)
    assert document["filters"] == {"date_from": "2025-03-02"}
    by_id = {item["id"]: item for item in document["entries"]}
    newest_first = [store, *(seed.events[k] for k in ("formula", "piet", "failed", "login"))]
    assert list(by_id) == [str(e.event_id) for e in newest_first]
    login = seed.events["login"]
    assert by_id[str(login.event_id)] == {
        "id": str(login.event_id),
        "event": {"code": "recipient.login", "label": "Recipient logged in"},
        "datetime": "2025-03-02T23:30:00.000+01:00",
        "patient": "S1",
        "patient_ref": seed.anna.pk,
        "user": {"type": "recipient", "id": None, "label": "share 101"},
        "on_behalf_of": {"id": seed.alice.pk, "label": "alice"},
        "source": {"address": "203.0.113.7", "user_agent": None, "system": "radshare", "ae_title": None},
        "outcome": "success",
        "studies": [],
        "share": 101,
        "detail": {"share": 101, "method": "link+dob+sms"},
        "chain": {"seq": login.seq, "hash": login.entry_hash, "previous": login.prev_hash},
    }
    assert by_id[str(seed.events["failed"].event_id)]["chain"]["previous"] == login.entry_hash
    from_node = by_id[str(store.event_id)]
    assert from_node["user"] == {"type": "dicom_node", "id": node.pk, "label": "CT_ROOM_1"}
    assert from_node["source"]["ae_title"] == "CT_ROOM_1"
    assert (from_node["patient"], from_node["on_behalf_of"]) == ("S2", None)
    failed = by_id[str(seed.events["failed"].event_id)]
    assert (failed["patient"], failed["outcome"], failed["share"]) == (None, "failure", None)


def test_an_export_streams_in_batches(seed: Seed) -> None:
    """An export never holds the whole trail: after the first rows have left, at most one batch of entries has
    been read from the database."""
    for n in range(2 * export.BATCH + 1):
        record(Action.PORTAL_STUDIES_LIST, user=seed.bob, detail={"n": n})
    made: list[int] = []

    def count(sender: type, **kwargs: Any) -> None:
        made.append(1)

    post_init.connect(count, sender=AuditEvent)
    try:
        response = portal(seed.carol).get("/portal/audit/export.csv", {"user": "bob"})
        pieces = iter(response.streaming_content)
        assert next(pieces).decode("utf-8-sig").startswith("event_id,")
        first = next(pieces).decode()
        assert first.count("\r\n") == export.BATCH
        assert len(made) <= export.BATCH + 1  # + the export's own entry
        rest = b"".join(pieces).decode()
    finally:
        post_init.disconnect(count, sender=AuditEvent)
    assert first.count("\r\n") + rest.count("\r\n") == 2 * export.BATCH + 2  # and bob's share of 4 March


# --- reading is recorded -----------------------------------------------------------------------------------


def test_reading_the_trail_is_recorded_with_its_filters_and_no_patient_data(seed: Seed) -> None:
    portal(seed.carol).get("/portal/audit/", {"patient_id": "S1", "outcome": "success"})
    read = AuditEvent.objects.filter(action=Action.PORTAL_AUDIT_VIEW).get()
    assert (read.actor_id, read.organisation_id, read.outcome) == (seed.carol.pk, seed.hospital.pk, "success")
    assert read.detail == {
        "filters": {"patient_refs": [seed.anna.pk], "outcome": "success"},
        "page": 1,
        "count": 2,
    }
    assert "S1" not in json.dumps(read.detail)


def test_an_export_is_recorded_before_it_is_sent_and_is_not_in_itself(seed: Seed) -> None:
    client = portal(seed.lars)
    assert client.head("/portal/audit/export.csv").status_code == 405  # sends nothing: no export to record
    response = client.get("/portal/audit/export.json", {"patient_id": "S1", "share": "101"})
    exported = AuditEvent.objects.filter(action=Action.PORTAL_AUDIT_EXPORT).get()  # before the first byte
    assert exported.actor_id == seed.lars.pk
    assert exported.detail == {
        "format": "json",
        "filters": {"patient_refs": [seed.anna.pk], "share": 101},
        "count": 2,
    }
    assert "S1" not in json.dumps(exported.detail)
    ids = {item["id"] for item in json.loads(body(response))["entries"]}
    assert str(exported.event_id) not in ids
    client.get("/portal/audit/export.csv")
    again = AuditEvent.objects.filter(action=Action.PORTAL_AUDIT_EXPORT).order_by("-pk").first()
    assert again is not None
    assert again.detail == {"format": "csv", "filters": {}, "count": 6}


# --- in a real server and a real browser -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_under_asgi_an_export_is_sent_as_it_is_read(start_web: Callable[..., int], tmp_path: Path) -> None:
    """Behind uvicorn, Django reads a plain iterator whole before sending it (and warns): the export is handed
    over as an async generator instead, batch by batch, with its database work in the request's thread."""
    hospital = create_organisation("hospital-a", "Hospital A", require_two_factor=False)
    carol = create_sender(hospital, "carol", PASSWORD, admin=True)
    with transaction.atomic():
        for n in range(2 * export.BATCH + 1):
            record(Action.PORTAL_STUDIES_LIST, user=carol, detail={"n": n})
    port = start_web()
    response = requests.get(
        f"http://127.0.0.1:{port}/portal/audit/export.csv",
        cookies={settings.SESSION_COOKIE_NAME: session_for(carol)},
        timeout=60,
    )
    assert response.status_code == 200
    assert "content-length" not in response.headers  # sent as it is made
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert (tuple(rows[0]), len(rows)) == (CSV_HEADER, 1 + 2 * export.BATCH + 1)
    assert AuditEvent.objects.filter(action=Action.PORTAL_AUDIT_EXPORT, actor_id=carol.pk).count() == 1
    assert "must consume synchronous iterators" not in (tmp_path / "web-1.log").read_text()


@pytest.fixture
def chromium(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Debian's Chromium, as tests/e2e/conftest.py starts it."""
    try:
        from playwright.sync_api import sync_playwright  # late import: optional until installed
    except ImportError:
        require(False, "playwright (Python package)")
    require(Path(CHROMIUM).exists(), CHROMIUM)
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's event loop runs in this thread
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
def test_in_a_browser_a_reader_filters_by_typing_and_reads_the_result(
    seed: Seed, chromium: Any, live_server: Any
) -> None:
    context = chromium.new_context(locale="en-GB", extra_http_headers={"Accept-Language": "en"})
    cookie = {"name": settings.SESSION_COOKIE_NAME, "value": session_for(seed.carol), "url": live_server.url}
    context.add_cookies([cookie])
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(f"{live_server.url}/portal/audit/")
    assert page.locator("#trail-count").inner_text() == "5 entries"

    page.get_by_label("Patient ID").press_sequentially("S1")
    page.keyboard.press("Tab")  # on to the share number
    page.keyboard.type("101")
    page.keyboard.press("Enter")
    page.wait_for_url("**/portal/audit/?patient_id=S1&share=101*")
    assert page.locator("#trail-count").inner_text() == "2 entries"
    rows = page.locator("table tbody tr")
    assert rows.count() == 2
    newest = rows.nth(0).inner_text()
    for words in ("02-03-2025 23:30:00", "Recipient logged in", "alice", "S1", "203.0.113.7"):
        assert words in newest, (words, newest)
    assert page.get_by_label("Patient ID").input_value() == "S1"  # the filters stay filled in

    page.set_viewport_size({"width": 360, "height": 740})  # a phone: the page itself does not scroll sideways
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert problems == []
    context.close()
