"""Organisation API keys (docs/security.md A11): random, shown once, stored hashed, scoped, revocable, last use kept;
the service, the operator command ``radshare apikey`` and the portal page for organisation admins."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import io
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from radshare.audit.models import AuditEvent
from radshare.core import crypto, keys
from radshare.core.keys import Purpose
from radshare.organisations import services
from radshare.organisations.models import ApiKey, Organisation, Sender
from radshare.organisations.services import (
    authenticate_api_key,
    create_api_key,
    create_sender,
    revoke_api_key,
)
from tests.cli_runner import migrated_data_dir, radshare_env, run_radshare

PASSWORD = "correct horse battery staple"
KEY_PATTERN = re.compile(r"^(rs_[0-9a-f]{8})_([A-Za-z0-9_-]{43})$")
NEW_KEY_INPUT = re.compile(r'id="new-api-key" value="([^"]+)"')


# --- model and service -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_key_is_random_and_only_its_keyed_hash_and_prefix_are_stored(organisation: Organisation) -> None:
    key, plaintext = create_api_key(organisation, "  PACS  ")
    match = KEY_PATTERN.match(plaintext)
    assert match is not None, plaintext
    prefix, secret = match.groups()
    assert len(base64.urlsafe_b64decode(secret + "=")) * 8 >= 128  # 256 bits from `secrets`
    assert (key.prefix, key.name) == (prefix, "PACS")
    row = ApiKey.objects.filter(pk=key.pk).values().get()
    stored = repr(row)
    assert plaintext not in stored
    assert secret not in stored
    assert secret[:16] not in stored
    hashing = keys.current(Purpose.HASHING)  # tagged with the key that made it (docs/security.md A28)
    expected = hmac.new(hashing, f"apikey:{plaintext}".encode(), hashlib.sha256).hexdigest()
    assert row["key_hash"] == f"h1${keys.key_id(hashing)}${expected}"
    assert row["last_used_at"] is None
    assert row["revoked_at"] is None
    # Every key is different.
    others = {create_api_key(organisation, f"k{i}")[1] for i in range(20)}
    assert len(others | {plaintext}) == 21
    assert len({k[:11] for k in others}) == 20


@pytest.mark.django_db
def test_an_empty_name_is_refused(organisation: Organisation) -> None:
    with pytest.raises(services.ValidationError):
        create_api_key(organisation, "   ")
    assert not ApiKey.objects.exists()


@pytest.mark.django_db
def test_authenticate_accepts_only_the_exact_active_key(
    organisation: Organisation, other_organisation: Organisation
) -> None:
    key, plaintext = create_api_key(organisation, "PACS")
    found = authenticate_api_key(plaintext)
    assert found is not None
    assert (found.pk, found.organisation) == (key.pk, organisation)
    prefix = plaintext[:11]
    for bad in (
        "",
        "rs_",
        prefix,
        prefix + "_",
        plaintext + "x",
        plaintext[:-1],
        plaintext.upper(),
        " " + plaintext,
        "rs_00000000_" + plaintext[12:],
        plaintext + "é",
        "rs_" + "a" * 100_000,
    ):
        assert authenticate_api_key(bad) is None, bad
    other_org_key = create_api_key(other_organisation, "B")[1]
    found_b = authenticate_api_key(other_org_key)
    assert found_b is not None
    assert found_b.organisation == other_organisation
    # An inactive organisation's keys stop working.
    organisation.is_active = False
    organisation.save()
    assert authenticate_api_key(plaintext) is None


@pytest.mark.django_db
def test_the_hash_is_compared_in_constant_time_for_known_and_unknown_prefixes(
    organisation: Organisation, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, plaintext = create_api_key(organisation, "PACS")
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(crypto.hmac, "compare_digest", spy)
    assert authenticate_api_key(plaintext) is not None
    assert authenticate_api_key(plaintext[:-2] + "zz") is None  # known prefix, wrong secret
    assert (
        authenticate_api_key("rs_00000000_" + plaintext[12:]) is None
    )  # unknown prefix: a comparison all the same
    assert len(calls) == 3
    assert all(len(a) == len(b) == 64 for a, b in calls)


@pytest.mark.django_db
def test_a_hash_under_an_old_key_works_while_listed_and_moves_on_its_next_use(
    organisation: Organisation, radshare_config: Any
) -> None:
    """docs/security.md A28: an API key cannot be hashed again without the key itself, so its hash moves to the
    current key the next time it is used; once its key is dropped unused, it no longer works."""
    used, used_key = create_api_key(organisation, "used")
    unused, unused_key = create_api_key(organisation, "unused")
    first = radshare_config().secret_key
    radshare_config(
        secret_key="the second secret key of this installation, long enough", old_secret_keys=(first,)
    )
    assert not crypto.tagged_hash_is_current(used.key_hash)
    assert authenticate_api_key(used_key) is not None
    used.refresh_from_db()
    assert crypto.tagged_hash_is_current(used.key_hash)
    assert ApiKey.objects.get(pk=unused.pk).key_hash == unused.key_hash  # not used: still under the old key
    assert authenticate_api_key(used_key + "x") is None
    radshare_config(old_secret_keys=())
    assert authenticate_api_key(used_key) is not None
    assert authenticate_api_key(unused_key) is None  # its key was dropped before it was used again


@pytest.mark.django_db
def test_a_legacy_hash_made_with_the_secret_key_itself_works_and_is_moved(
    organisation: Organisation, radshare_config: Any
) -> None:
    """Keys made before hashes were tagged (HMAC keyed with the secret key itself, no tag) keep working and move to
    the current key's tagged hash on their first use, also right after the secret key was replaced."""
    key, plaintext = create_api_key(organisation, "PACS")
    secret = radshare_config().secret_key
    legacy = hmac.new(secret.encode(), f"apikey:{plaintext}".encode(), hashlib.sha256).hexdigest()
    ApiKey.objects.filter(pk=key.pk).update(key_hash=legacy)
    radshare_config(
        secret_key="the second secret key of this installation, long enough", old_secret_keys=(secret,)
    )
    assert authenticate_api_key(plaintext[:-1] + "x") is None
    assert authenticate_api_key(plaintext) is not None
    key.refresh_from_db()
    assert key.key_hash.startswith(f"h1${keys.key_id(keys.current(Purpose.HASHING))}$")
    radshare_config(old_secret_keys=())
    assert authenticate_api_key(plaintext) is not None


@pytest.mark.django_db
def test_last_used_is_kept_but_written_at_most_once_a_minute(organisation: Organisation) -> None:
    key, plaintext = create_api_key(organisation, "PACS")
    before = timezone.now()
    authenticate_api_key(plaintext)
    key.refresh_from_db()
    assert key.last_used_at is not None
    assert key.last_used_at >= before
    first = key.last_used_at
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert authenticate_api_key(plaintext) is not None
    assert not [q for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    key.refresh_from_db()
    assert key.last_used_at == first
    # A minute later the next use is written again.
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=first - dt.timedelta(seconds=61))
    authenticate_api_key(plaintext)
    key.refresh_from_db()
    assert key.last_used_at > first


@pytest.mark.django_db
def test_revoke_is_scoped_to_the_organisation_and_final(
    organisation: Organisation, other_organisation: Organisation
) -> None:
    admin = create_sender(organisation, "carol", PASSWORD, admin=True)
    key, plaintext = create_api_key(organisation, "PACS", created_by=admin)
    with pytest.raises(ApiKey.DoesNotExist):
        revoke_api_key(other_organisation, key.pk, None)
    assert authenticate_api_key(plaintext) is not None
    revoked = revoke_api_key(organisation, key.pk, admin)
    assert revoked.revoked_at is not None
    assert revoked.revoked_by == admin
    assert authenticate_api_key(plaintext) is None
    again = revoke_api_key(organisation, key.pk, None)  # changes nothing
    assert (again.revoked_at, again.revoked_by) == (revoked.revoked_at, admin)


# --- operator command ------------------------------------------------------------------------------------


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def refused(*args: str) -> str:
    with pytest.raises(CommandError) as caught:
        run(*args)
    assert caught.value.returncode == 2
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.django_db
def test_apikey_command_create_list_revoke(organisation: Organisation) -> None:
    out = run("apikey", "create", "hospital-a", "--name", "PACS west")
    lines = out.strip().splitlines()
    assert len(lines) == 3
    key = ApiKey.objects.get(organisation=organisation)
    assert lines[0] == f"created API key {key.prefix} (PACS west) for hospital-a:"
    assert KEY_PATTERN.match(lines[1])
    assert lines[2] == "Store it now: it is not shown again."
    assert authenticate_api_key(lines[1]) is not None
    assert key.created_by is None

    listing = run("apikey", "list", "hospital-a")
    assert listing.startswith(f"{key.prefix}\tPACS west\tcreated ")
    assert "last used " in listing
    assert listing.rstrip().endswith("\tactive")
    assert lines[1] not in listing
    assert lines[1][12:] not in listing

    assert run("apikey", "revoke", "hospital-a", key.prefix).strip() == (
        f"revoked API key {key.prefix} (PACS west) of hospital-a"
    )
    assert authenticate_api_key(lines[1]) is None
    assert "\trevoked " in run("apikey", "list", "hospital-a")


@pytest.mark.django_db
def test_apikey_command_bad_input_exits_2(
    organisation: Organisation, other_organisation: Organisation
) -> None:
    assert "no organisation with slug 'nope'" in refused("apikey", "create", "nope", "--name", "X")
    assert "name: " in refused("apikey", "create", "hospital-a", "--name", "  ")
    assert "no organisation with slug" in refused("apikey", "list", "nope")
    assert "has no API key with prefix 'rs_00000000'" in refused(
        "apikey", "revoke", "hospital-a", "rs_00000000"
    )
    other = create_api_key(other_organisation, "B")[0]
    assert "has no API key" in refused("apikey", "revoke", "hospital-a", other.prefix)  # scoped
    mine = create_api_key(organisation, "A")[0]
    run("apikey", "revoke", "hospital-a", mine.prefix)
    assert "already revoked" in refused("apikey", "revoke", "hospital-a", mine.prefix)
    assert not ApiKey.objects.get(pk=other.pk).is_revoked


@pytest.mark.once
def test_cli_apikey_prints_the_key_once_and_refuses_bad_input(tmp_path: Path) -> None:
    data_dir = migrated_data_dir(tmp_path / "data")
    env = radshare_env(data_dir)
    setup = (
        "from radshare.organisations.services import create_organisation; create_organisation('cli-org', 'X')"
    )
    assert run_radshare("shell", "-c", setup, env=env).returncode == 0
    done = run_radshare("apikey", "create", "cli-org", "--name", "PACS", env=env)
    assert done.returncode == 0, done.stderr
    plaintext = done.stdout.splitlines()[1]
    assert KEY_PATTERN.match(plaintext)
    assert (done.stdout + done.stderr).count(plaintext) == 1
    listing = run_radshare("apikey", "list", "cli-org", env=env)
    assert plaintext[:11] in listing.stdout
    assert plaintext[12:] not in listing.stdout
    bad: subprocess.CompletedProcess[str] = run_radshare("apikey", "revoke", "cli-org", "rs_nope", env=env)
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [
        "CommandError: cli-org has no API key with prefix 'rs_nope' (see `radshare apikey list cli-org`)"
    ]


# --- portal page -----------------------------------------------------------------------------------------


@pytest.fixture
def admin(organisation: Organisation) -> Sender:
    return create_sender(organisation, "carol", PASSWORD, admin=True)


@pytest.fixture
def admin_client(admin: Sender) -> Client:
    client = Client()
    client.force_login(admin)
    return client


@pytest.mark.django_db
def test_only_organisation_admins_reach_the_page(sender: Sender, admin_client: Client) -> None:
    anonymous = Client().get("/portal/api-keys/")
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/portal/login/")
    plain = Client()
    plain.force_login(sender)
    assert plain.get("/portal/api-keys/").status_code == 403
    assert plain.post("/portal/api-keys/", {"name": "sneaky"}).status_code == 403
    assert not ApiKey.objects.exists()
    assert 'href="/portal/api-keys/"' not in plain.get("/portal/").content.decode()  # no nav link
    page = admin_client.get("/portal/api-keys/")
    assert page.status_code == 200
    assert 'href="/portal/api-keys/"' in admin_client.get("/portal/").content.decode()


@pytest.mark.django_db
def test_create_shows_the_key_once_and_is_audited(admin: Sender, admin_client: Client) -> None:
    admin_client.get("/portal/api-keys/")
    response = admin_client.post("/portal/api-keys/", {"name": "PACS oost"})
    assert response.status_code == 302
    assert response["Location"] == "/portal/api-keys/"
    key = ApiKey.objects.get()
    assert (key.name, key.created_by, key.organisation_id) == ("PACS oost", admin, admin.organisation_id)
    shown = admin_client.get("/portal/api-keys/").content.decode()
    match = NEW_KEY_INPUT.search(shown)
    assert match is not None
    plaintext = match.group(1)
    assert plaintext.startswith(key.prefix + "_")
    assert authenticate_api_key(plaintext) is not None
    assert 'role="alert"' in shown
    reloaded = admin_client.get("/portal/api-keys/").content.decode()
    assert plaintext not in reloaded
    assert plaintext[12:] not in reloaded
    assert key.prefix in reloaded  # listed by prefix
    event = AuditEvent.objects.get(action="portal.apikey.create")
    assert (event.actor_id, event.organisation_id) == (admin.pk, admin.organisation_id)
    assert event.detail["prefix"] == key.prefix
    assert plaintext[12:] not in repr(event.__dict__)


@pytest.mark.django_db
def test_create_with_an_empty_name_shows_the_form_again(admin_client: Client) -> None:
    response = admin_client.post("/portal/api-keys/", {"name": ""})
    assert response.status_code == 200
    assert not ApiKey.objects.exists()


@pytest.mark.django_db
def test_revoke_asks_first_then_revokes_and_is_audited(
    organisation: Organisation, admin: Sender, admin_client: Client
) -> None:
    key, plaintext = create_api_key(organisation, "PACS")
    url = f"/portal/api-keys/{key.pk}/revoke/"
    confirm = admin_client.get(url)
    assert confirm.status_code == 200
    assert key.prefix in confirm.content.decode()
    assert authenticate_api_key(plaintext) is not None  # GET changes nothing (A12)
    done = admin_client.post(url)
    assert (done.status_code, done["Location"]) == (302, "/portal/api-keys/")
    key.refresh_from_db()
    assert key.revoked_by == admin
    assert authenticate_api_key(plaintext) is None
    event = AuditEvent.objects.get(action="portal.apikey.revoke")
    assert (event.outcome, event.actor_id, event.detail["api_key_id"]) == ("success", admin.pk, key.pk)
    assert url not in admin_client.get("/portal/api-keys/").content.decode()  # no revoke button any more


@pytest.mark.django_db
def test_another_organisations_key_is_404_and_csrf_is_required(
    other_organisation: Organisation, admin_client: Client, admin: Sender
) -> None:
    theirs, plaintext = create_api_key(other_organisation, "B")
    assert admin_client.get(f"/portal/api-keys/{theirs.pk}/revoke/").status_code == 404
    assert admin_client.post(f"/portal/api-keys/{theirs.pk}/revoke/").status_code == 404
    assert authenticate_api_key(plaintext) is not None
    denied = AuditEvent.objects.filter(action="portal.apikey.revoke", outcome="denied")
    assert denied.count() == 2
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin)
    assert strict.post("/portal/api-keys/", {"name": "X"}).status_code == 403
    assert not ApiKey.objects.filter(organisation=admin.organisation).exists()
