"""The tamper-evident audit trail (docs/security.md A17, A18): every step of a share leaves its entry in its
organisation's hash chain; an entry changed, removed or inserted with raw SQL is named by `radshare audit
verify`; concurrent writers cannot fork a chain; pruning past the retention period keeps the rest verifiable from
a signed checkpoint; and an action whose entry cannot be written does not happen."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, connections, transaction
from django.test import Client
from django.utils import timezone

from radshare.audit import chain, services
from radshare.audit.actions import Action
from radshare.audit.models import GENESIS, AuditChainHead, AuditCheckpoint, AuditEvent
from radshare.audit.services import ActorType, record
from radshare.core import keys
from radshare.core.keys import Purpose
from radshare.downloads.models import DownloadDay
from radshare.imaging import services as imaging
from radshare.recipients.models import OneTimeCode
from radshare.shares.models import Share
from radshare.shares.services import current_code, prepare
from tests.cli_runner import migrated_data_dir, radshare_env, run_radshare
from tests.conftest import require
from tests.downloads.test_downloads import DESKTOP, get
from tests.recipients.conftest import BIRTH, log_in, logged_in_client, ready_share, sms_codes, to_sms_step
from tests.shares.helpers import ANNA, make_study

pytestmark = pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume:Warning")

ENTRY = r"entry #{seq} \(\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d, {action}\)"


@pytest.fixture
def portal(sender: Any) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(sender)
    return client


def sql(statement: str, params: tuple[Any, ...] = ()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def verify(*args: str) -> tuple[int, str, str]:
    """`radshare audit verify ARGS` in this process: exit status, stdout and the error (stderr's line)."""
    out = io.StringIO()
    try:
        call_command("audit", "verify", *args, stdout=out)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), str(exc)
    return 0, out.getvalue(), ""


def chain_of(organisation: Any) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(chain=chain.chain_key(organisation.pk)).order_by("seq"))


def some_entries(organisation: Any, n: int) -> list[AuditEvent]:
    return [
        record(Action.SHARE_EXPIRE, actor_type=ActorType.SYSTEM, organisation=organisation, detail={"n": i})
        for i in range(n)
    ]


# --- every step of a share, in the chain ---------------------------------------------------------------------


@pytest.mark.django_db
def test_every_step_of_a_share_leaves_its_entry_in_the_chain(
    portal: Client, organisation: Any, sms_file: Path
) -> None:
    study = make_study(organisation, ANNA)
    form = {"study": [study.pk], "recipient_type": "patient", "delivery": "url", "phone": "0612345678"}
    made = portal.post("/portal/shares/new", {**form, "language": "nl", "reason": ""})
    assert made.status_code == 302, made.content.decode()
    share = Share.objects.get()
    imaging.render_pending_now(parallel=False)  # what the worker does
    assert prepare(share.pk) == Share.Status.READY
    recipient = Client(HTTP_ACCEPT_LANGUAGE="en")
    log_in(recipient, current_code(share), sms_file)  # code, birth date and SMS code
    assert recipient.get("/r/studies").status_code == 200
    assert recipient.get(f"/r/studies/{study.pk}/").status_code == 200
    response, data = get(recipient, "/r/download/jpeg.zip")
    assert response.status_code == 200
    assert data.startswith(b"PK")

    entries = chain_of(organisation)
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))  # no gap, no fork
    assert entries[0].prev_hash == GENESIS
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.entry_hash
        assert after.timestamp >= before.timestamp
    steps = [
        "share.create",
        "share.ready",
        "recipient.code",
        "recipient.birth_date",
        "recipient.sms_code.send",
        "recipient.login",
        "recipient.studies.list",
        "recipient.study.view",
        "recipient.download.start",
        "recipient.download.end",
    ]
    actions = [e.action for e in entries]
    assert [a for a in actions if a in steps] == steps  # each once, in the order they happened
    for event in entries:
        if event.action in steps[2:]:
            assert event.detail["share"] == share.pk
    status, out, error = verify()
    assert (status, error) == (0, "")
    assert re.search(
        rf"^hospital-a: {len(entries)} entries checked \(#1 to #{len(entries)}, from the start\)", out, re.M
    )


@pytest.mark.django_db
def test_what_is_hashed_is_what_the_database_gives_back(organisation: Any) -> None:
    """jsonb (PostgreSQL) gives 1e+20 back as an integer; SQLite as a float: both hash alike."""
    detail = {
        "big": 1e20,
        "whole": 2.0,
        "small": 1e-7,
        "half": 2.5,
        "n": 2**70,
        "text": "é\u2028",
        "list": (1, None),
    }
    event = record(Action.SHARE_EXPIRE, actor_type=ActorType.SYSTEM, organisation=organisation, detail=detail)
    stored = AuditEvent.objects.get(pk=event.pk)
    assert chain.entry_hash(stored) == stored.entry_hash == event.entry_hash
    assert verify()[0] == 0


# --- raw SQL behind radshare's back --------------------------------------------------------------------------


@pytest.fixture
def trail(organisation: Any, other_organisation: Any) -> list[AuditEvent]:
    """Five entries in hospital-a's chain, and one in hospital-b's."""
    some_entries(other_organisation, 1)
    return some_entries(organisation, 5)


@pytest.mark.django_db
def test_a_changed_entry_is_named(trail: list[AuditEvent]) -> None:
    assert verify()[0] == 0
    sql("UPDATE audit_auditevent SET action = %s WHERE id = %s", ("share.revoke", trail[2].pk))
    status, out, error = verify()
    assert status == 1
    assert re.fullmatch(f"hospital-a: {ENTRY.format(seq=3, action='share.revoke')} was changed", error)
    assert re.search(r"^hospital-b: 1 entry checked", out, re.M)  # the other organisation's chain is whole


@pytest.mark.django_db
def test_a_changed_detail_is_named(trail: list[AuditEvent]) -> None:
    sql("UPDATE audit_auditevent SET client_address = %s WHERE id = %s", ("203.0.113.9", trail[1].pk))
    status, _, error = verify("--org", "hospital-a")
    assert status == 1
    assert re.fullmatch(f"hospital-a: {ENTRY.format(seq=2, action='share.expire')} was changed", error)


@pytest.mark.django_db
def test_a_removed_entry_is_named(trail: list[AuditEvent]) -> None:
    sql("DELETE FROM audit_auditevent WHERE id = %s", (trail[2].pk,))
    status, _, error = verify()
    assert status == 1
    assert re.fullmatch(
        f"hospital-a: entry #3 was removed \\(after {ENTRY.format(seq=2, action='share.expire')}\\)", error
    )


@pytest.mark.django_db
def test_the_removed_newest_entry_is_named(trail: list[AuditEvent]) -> None:
    sql("DELETE FROM audit_auditevent WHERE id = %s", (trail[-1].pk,))
    status, _, error = verify()
    assert status == 1
    assert error.startswith("hospital-a: entry #5 was removed (after entry #4 (")


@pytest.mark.django_db
def test_an_inserted_entry_is_named_even_with_a_correct_hash(trail: list[AuditEvent]) -> None:
    last = trail[-1]
    event_id = AuditEvent._meta.get_field("event_id").get_db_prep_value(uuid.uuid4(), connection)
    sql(
        "INSERT INTO audit_auditevent (event_id, timestamp, action, outcome, actor_type, actor_id, actor_label,"
        " on_behalf_of_id, organisation_id, patient_ref, study_uids, client_address, user_agent, detail, chain,"
        " seq, prev_hash, entry_hash)"
        " SELECT %s, timestamp, 'share.revoke', outcome, actor_type, actor_id, actor_label, on_behalf_of_id,"
        " organisation_id, patient_ref, study_uids, client_address, user_agent, detail, chain, seq + 1,"
        " entry_hash, '' FROM audit_auditevent WHERE id = %s",
        (event_id, last.pk),
    )
    forged = AuditEvent.objects.get(chain=last.chain, seq=6)
    sql("UPDATE audit_auditevent SET entry_hash = %s WHERE id = %s", (chain.entry_hash(forged), forged.pk))
    status, _, error = verify()
    assert status == 1
    assert re.fullmatch(
        f"hospital-a: {ENTRY.format(seq=6, action='share.revoke')} was inserted behind radshare's back "
        r"\(radshare wrote up to #5\)",
        error,
    )


@pytest.mark.django_db
def test_a_rewritten_history_shows_against_its_signed_checkpoint(trail: list[AuditEvent]) -> None:
    """Plain hashes anyone can recompute; the checkpoint's signature needs the key."""
    assert sorted(c.seq for c in chain.write_checkpoints().made) == [1, 5]
    key = trail[0].chain
    sql("UPDATE audit_auditevent SET action = %s WHERE id = %s", ("share.revoke", trail[1].pk))
    prev = trail[0].entry_hash
    for event in AuditEvent.objects.filter(chain=key, seq__gt=1).order_by("seq"):
        event.prev_hash = prev
        prev = chain.entry_hash(event)
        sql(
            "UPDATE audit_auditevent SET prev_hash = %s, entry_hash = %s WHERE id = %s",
            (event.prev_hash, prev, event.pk),
        )
    sql("UPDATE audit_auditchainhead SET entry_hash = %s WHERE chain = %s", (prev, key))
    assert chain.verify(key, since=None).problem.startswith("entry #5")
    status, _, error = verify()
    assert status == 1
    assert re.fullmatch(
        f"hospital-a: {ENTRY.format(seq=5, action='share.expire')} was changed: it is not the entry signed in "
        r"the checkpoint of [\d: -]+ \(#5\)",
        error,
    )


@pytest.mark.django_db
def test_a_changed_checkpoint_is_named(trail: list[AuditEvent]) -> None:
    chain.write_checkpoints()
    sql("UPDATE audit_auditcheckpoint SET seq = 4 WHERE chain = %s", (trail[0].chain,))
    status, _, error = verify()
    assert status == 1
    assert re.fullmatch(
        r"hospital-a: the checkpoint of [\d: -]+ \(#4\) was changed: its signature does not verify", error
    )


def test_the_command_exits_1_and_names_the_entry(tmp_path: Path) -> None:
    """The operator's view: the console script on its own database, changed with sqlite3 in between."""
    data_dir = migrated_data_dir(tmp_path / "data")
    env = radshare_env(data_dir)
    script = (
        "from radshare.audit.services import record; from radshare.audit.actions import Action\n"
        "for n in range(3): record(Action.KEYS_ROTATE, actor_type='system', detail={'n': n})"
    )
    made = run_radshare("shell", "-c", script, env=env)
    assert made.returncode == 0, made.stderr
    whole = run_radshare("audit", "verify", env=env)
    assert whole.returncode == 0, whole.stderr
    assert (
        whole.stdout
        == "installation: 3 entries checked (#1 to #3, from the start), 0 checkpoint signatures checked\n"
    )
    with sqlite3.connect(data_dir / "radshare.sqlite3") as db:
        db.execute("UPDATE audit_auditevent SET detail = '{\"n\": 7}' WHERE seq = 2")
    changed = run_radshare("audit", "verify", env=env)
    assert changed.returncode == 1
    assert re.fullmatch(
        f"CommandError: installation: {ENTRY.format(seq=2, action='keys.rotate')} was changed\n",
        changed.stderr,
    )


# --- concurrent writers ----------------------------------------------------------------------------------------


def hammer(organisation: Any, seconds: float, threads: int = 4) -> dict[str, int]:
    """``threads`` writers, each on its own database connection, recording for ``seconds`` into the
    organisation's chain and the installation's; returns how many entries each chain got."""
    deadline = time.monotonic() + seconds
    barrier = threading.Barrier(threads)
    written = {chain.chain_key(organisation.pk): 0, chain.INSTALLATION: 0}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            barrier.wait()
            while time.monotonic() < deadline:
                with transaction.atomic():  # as a service does: two entries in one transaction
                    record(Action.SHARE_EXPIRE, actor_type=ActorType.SYSTEM, organisation=organisation)
                    record(Action.KEYS_ROTATE, actor_type=ActorType.SYSTEM, detail={"writer": n})
                record(Action.SHARE_READY, actor_type=ActorType.SYSTEM, organisation=organisation)
                with lock:
                    written[chain.chain_key(organisation.pk)] += 2
                    written[chain.INSTALLATION] += 1
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            errors.append(exc)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=write, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=seconds + 60)
    assert not errors, errors
    return written


def assert_chains_whole(written: dict[str, int]) -> None:
    for key, count in written.items():
        head = AuditChainHead.objects.get(chain=key)
        assert head.seq == count
        assert AuditEvent.objects.filter(chain=key).count() == count
        report = chain.verify(key)
        assert report.ok, report.problem
        assert report.checked == count


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_take_turns(organisation: Any) -> None:
    """Every engine: writers queue for the chain; none is refused ("database is locked" on SQLite)."""
    written = hammer(organisation, seconds=2)
    assert min(written.values()) > 4
    assert_chains_whole(written)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_four_writers_for_ten_seconds_leave_chains_that_verify(organisation: Any) -> None:
    require(connection.vendor == "postgresql", "PostgreSQL (RADSHARE_DATABASE_URL=postgres://...)")
    written = hammer(organisation, seconds=10)
    assert_chains_whole(written)
    assert verify()[0] == 0


# --- checkpoints, keys and pruning -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_checkpoints_move_to_a_new_key(organisation: Any, radshare_config: Any) -> None:
    first, second = "first-" + "a" * 40, "second-" + "b" * 40
    radshare_config(secret_key=first, old_secret_keys=())
    some_entries(organisation, 2)
    chain.write_checkpoints()
    radshare_config(secret_key=second, old_secret_keys=(first,))
    assert verify()[0] == 0  # the old key is still listed
    assert chain.checkpoints_on_old_keys() == 1
    assert chain.resign_checkpoints() == 1
    assert AuditCheckpoint.objects.get().key_id == keys.key_id(keys.current(Purpose.AUDIT))
    radshare_config(secret_key=second, old_secret_keys=())
    assert verify()[0] == 0
    radshare_config(secret_key=first, old_secret_keys=())
    status, _, error = verify()
    assert status == 1
    assert re.fullmatch(
        r"hospital-a: the checkpoint of [\d: -]+ \(#2\) is signed with key [0-9a-f]{8}, which is neither "
        r"RADSHARE_SECRET_KEY nor one of RADSHARE_OLD_SECRET_KEYS",
        error,
    )


@pytest.mark.django_db
def test_a_checkpoint_that_does_not_verify_is_not_signed_again(
    organisation: Any, radshare_config: Any
) -> None:
    first = "first-" + "a" * 40
    radshare_config(secret_key=first, old_secret_keys=())
    some_entries(organisation, 1)
    chain.write_checkpoints()
    sql("UPDATE audit_auditcheckpoint SET entry_hash = %s", ("f" * 64,))
    radshare_config(secret_key="second-" + "b" * 40, old_secret_keys=(first,))
    assert chain.resign_checkpoints() == 0
    assert verify()[1:] == (
        "",
        f"hospital-a: the checkpoint of {_checkpoint_time()} (#1) was changed: its signature does not verify",
    )


def _checkpoint_time() -> str:
    return f"{timezone.localtime(AuditCheckpoint.objects.get().created_at):%Y-%m-%d %H:%M:%S}"


@pytest.mark.django_db
def test_a_chain_that_does_not_verify_gets_no_checkpoint(
    trail: list[AuditEvent], other_organisation: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sql("UPDATE audit_auditevent SET action = %s WHERE id = %s", ("share.revoke", trail[0].pk))
    signing = chain.write_checkpoints()
    assert [c.chain for c in signing.made] == [chain.chain_key(other_organisation.pk)]
    assert list(signing.refused) == [trail[0].chain]
    assert signing.refused[trail[0].chain].endswith("share.revoke) was changed")
    assert "does not verify, so it is not signed" in caplog.text


def _years_later(moment: dt.datetime, years: int) -> dt.datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year + years, day=28)


def _travel(moment: dt.datetime) -> Any:
    return time_machine.travel(moment, tick=False)


@pytest.fixture
def two_days(
    organisation: Any, radshare_config: Any
) -> tuple[dt.datetime, list[AuditEvent], list[AuditEvent]]:
    """Three entries on day zero and two the day after, each day signed by the daily checkpoint."""
    radshare_config(audit_retention_years=5)
    day_zero = timezone.now()
    with _travel(day_zero):
        first = some_entries(organisation, 3)
        assert [c.seq for c in chain.write_checkpoints().made] == [3]
    with _travel(day_zero + dt.timedelta(days=1)):
        second = some_entries(organisation, 2)
        assert [c.seq for c in chain.write_checkpoints().made] == [5]
    return day_zero, first, second


@pytest.mark.django_db
def test_pruning_keeps_the_chain_verifiable_from_its_checkpoint(two_days: Any, organisation: Any) -> None:
    day_zero, first, _ = two_days
    five_years = _years_later(day_zero, 5)
    with _travel(five_years - dt.timedelta(hours=1)):
        assert services.prune() == []  # nothing is 5 years old yet
    with _travel(five_years + dt.timedelta(hours=12)):  # the first day is past the retention, the second not
        assert services.prune() == [chain.Pruned(first[0].chain, deleted=3, through_seq=3)]
        assert [e.seq for e in chain_of(organisation)] == [4, 5, 6]
        assert not AuditEvent.objects.filter(pk__in=[e.pk for e in first]).exists()
        pruning = chain_of(organisation)[-1]
        assert (pruning.action, pruning.actor_type) == ("audit.prune", "system")
        assert pruning.detail == {"deleted": 3, "through_seq": 3, "retention_years": 5}
        status, out, _ = verify()
        assert status == 0
        assert re.fullmatch(
            r"hospital-a: 3 entries checked \(#4 to #6, from the checkpoint of [\d: -]+\), 2 checkpoint "
            r"signatures checked\n",
            out,
        )
    with _travel(five_years + dt.timedelta(days=2)):
        assert services.prune() == [chain.Pruned(first[0].chain, deleted=2, through_seq=5)]
        assert [e.seq for e in chain_of(organisation)] == [6, 7]
        assert list(AuditCheckpoint.objects.values_list("seq", flat=True)) == [5]  # the one it starts from
        assert verify()[0] == 0


@pytest.mark.django_db
def test_pruning_needs_a_checkpoint(organisation: Any, radshare_config: Any) -> None:
    radshare_config(audit_retention_years=5)
    day_zero = timezone.now()
    with _travel(day_zero):
        some_entries(organisation, 2)
    with _travel(_years_later(day_zero, 6)):
        out = io.StringIO()
        call_command("audit", "prune", stdout=out)
        assert out.getvalue().startswith(
            "Nothing to remove: no chain has a checkpoint with only entries from"
        )
        assert len(chain_of(organisation)) == 2
        call_command("audit", "checkpoint", stdout=out)
        assert "hospital-a: checkpoint at #2, signed with key" in out.getvalue()
        call_command("audit", "prune", stdout=out)
        assert "hospital-a: 2 entries removed, up to #2 (its checkpoint)" in out.getvalue()
        assert [e.action for e in chain_of(organisation)] == ["audit.prune"]
        assert verify()[0] == 0


@pytest.mark.django_db
def test_pruning_does_not_remove_the_evidence_of_a_change(
    two_days: Any, organisation: Any, caplog: pytest.LogCaptureFixture
) -> None:
    day_zero, first, _ = two_days
    sql("UPDATE audit_auditevent SET action = %s WHERE id = %s", ("share.revoke", first[1].pk))
    with _travel(_years_later(day_zero, 5) + dt.timedelta(days=2)):
        assert services.prune() == []
    assert len(chain_of(organisation)) == 5
    assert "does not verify, so nothing is pruned: entry #2" in caplog.text


# --- no entry, no action (docs/security.md A18) ---------------------------------------------------------------


@contextmanager
def audit_store_down() -> Iterator[None]:
    """Within the block every insert into the audit table fails in the database itself (a trigger)."""
    if connection.vendor == "postgresql":
        sql(
            "CREATE FUNCTION audit_down() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'audit store down'; END $$"
        )
        sql(
            "CREATE TRIGGER audit_down BEFORE INSERT ON audit_auditevent FOR EACH ROW EXECUTE FUNCTION audit_down()"
        )
    else:
        sql(
            "CREATE TRIGGER audit_down BEFORE INSERT ON audit_auditevent BEGIN SELECT RAISE(ABORT, 'down'); END"
        )
    try:
        yield
    finally:
        sql("DROP TRIGGER audit_down" + (" ON audit_auditevent" if connection.vendor == "postgresql" else ""))
        if connection.vendor == "postgresql":
            sql("DROP FUNCTION audit_down()")


def failing(client: Client) -> Client:
    client.raise_request_exception = False  # what the browser gets: the server's 500 page
    return client


@pytest.mark.django_db
def test_the_trigger_really_stops_the_audit_store(organisation: Any) -> None:
    with audit_store_down(), pytest.raises(DatabaseError), transaction.atomic():
        some_entries(organisation, 1)
    assert len(some_entries(organisation, 1)) == 1  # and only within the block


@pytest.mark.django_db
def test_no_share_is_made_without_its_entry(portal: Client, organisation: Any) -> None:
    study = make_study(organisation, ANNA)
    form = {"study": [study.pk], "recipient_type": "patient", "delivery": "url", "phone": "0612345678"}
    with audit_store_down():
        response = failing(portal).post("/portal/shares/new", {**form, "language": "nl", "reason": ""})
    assert response.status_code == 500
    assert not Share.objects.exists()


@pytest.mark.django_db
def test_no_revoke_without_its_entry(portal: Client, organisation: Any) -> None:
    share, _ = ready_share(organisation, [make_study(organisation, ANNA)], delivery="url", email="")
    with audit_store_down():
        assert failing(portal).post(f"/portal/shares/{share.pk}/revoke").status_code == 500
    share.refresh_from_db()
    assert share.status == Share.Status.READY
    assert share.code_hash is not None
    assert share.revoked_at is None


@pytest.mark.django_db
def test_no_login_step_without_its_entry(organisation: Any, sms_file: Path) -> None:
    share, code = ready_share(organisation, [make_study(organisation, ANNA)], delivery="url", email="")
    recipient = failing(Client(HTTP_ACCEPT_LANGUAGE="en"))
    with audit_store_down():
        assert recipient.get("/", {"code": code}).status_code == 500
    assert recipient.get("/r/birth-date")["Location"] == "/"  # no session was opened
    assert recipient.get("/", {"code": code})["Location"] == "/r/birth-date"
    with audit_store_down():
        answer = recipient.post("/r/birth-date", {"accept_terms": "on", "birth_date": BIRTH})
        assert answer.status_code == 500
    assert sms_codes(sms_file) == []  # no SMS went out
    assert recipient.get("/r/sms-code")["Location"] == "/r/birth-date"
    to_sms_step(recipient, code)
    with audit_store_down():
        assert recipient.post("/r/sms-code", {"code": sms_codes(sms_file)[-1]}).status_code == 500
    assert OneTimeCode.objects.get().used_at is None
    assert recipient.get("/r/studies")["Location"] == "/"  # still not logged in
    assert recipient.get("/r/sms-code").status_code == 200  # but at the SMS step, as before
    share.refresh_from_db()
    assert share.opened_at is None


@pytest.mark.django_db
def test_no_study_page_or_download_without_its_entry(organisation: Any) -> None:
    study = make_study(organisation, ANNA)
    share, _ = ready_share(organisation, [study], delivery="url", email="")
    client = failing(logged_in_client(share))
    with audit_store_down():
        page = client.get(f"/r/studies/{study.pk}/")
        assert page.status_code == 500
        assert study.study_instance_uid not in page.content.decode()
        assert client.get("/r/studies").status_code == 500
        download = client.get("/r/download/jpeg.zip", headers={"user-agent": DESKTOP})
        assert download.status_code == 500
        assert not download.streaming
    assert not DownloadDay.objects.filter(count__gt=0).exists()
    share.refresh_from_db()
    assert share.status == Share.Status.READY  # not marked downloaded
