"""Operator commands ``radshare org|sender|pacsnode``: what they create, and exit code 2 with one clear
line for every bad input."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import translation

from radshare.organisations.models import Organisation, PacsNode, Sender
from radshare.organisations.services import add_pacs_node
from tests.cli_runner import COMMAND_TIMEOUT, migrated_data_dir, radshare_env, run_radshare

GOOD_PASSWORD = "tulip anchor velvet mountain"


def run(*args: str, stdin: Any = "") -> str:
    """``call_command`` with ``stdin`` as standard input (a str, or None for "no stdin at all")."""
    out = io.StringIO()
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin) if isinstance(stdin, str) else stdin
    try:
        call_command(*args, stdout=out)
    finally:
        sys.stdin = saved
    return out.getvalue()


def refused(*args: str, stdin: str = "") -> str:
    with pytest.raises(CommandError) as caught:
        run(*args, stdin=stdin)
    assert caught.value.returncode == 2
    return str(caught.value)


# --- in process (both databases) ------------------------------------------------------------------


@pytest.mark.django_db
def test_org_create_and_list() -> None:
    out = run("org", "create", "clinic-x", "--name", " Clinic X ", "--contact-phone", "+31 20 555 0000")
    assert out.strip() == "created organisation clinic-x (Clinic X)"
    org = Organisation.objects.get(slug="clinic-x")
    assert org.name == "Clinic X"
    assert org.contact_phone == "+31 20 555 0000"
    assert "clinic-x\tClinic X\tactive" in run("org", "list")


@pytest.mark.argon2
@pytest.mark.django_db
def test_sender_create_reads_the_password_from_stdin(organisation: Any) -> None:
    out = run("sender", "create", "hospital-a", "bob", stdin=GOOD_PASSWORD + "\n")
    assert out.strip() == "created sender bob in hospital-a"
    assert GOOD_PASSWORD not in out
    bob = Sender.objects.get(username="bob")
    assert bob.organisation == organisation
    assert bob.role == Sender.Role.SENDER
    assert bob.password.startswith("argon2")
    assert bob.check_password(GOOD_PASSWORD)
    assert not bob.is_staff
    assert not bob.is_superuser


@pytest.mark.django_db
def test_sender_create_admin(organisation: Any) -> None:
    out = run("sender", "create", "hospital-a", "carol", "--admin", stdin=GOOD_PASSWORD + "\n")
    assert out.strip() == "created organisation admin carol in hospital-a"
    assert Sender.objects.get(username="carol").is_org_admin
    assert "carol\tadmin\tactive" in run("sender", "list", "hospital-a")


@pytest.mark.django_db
def test_sender_create_log_administrator(organisation: Any) -> None:
    out = run("sender", "create", "hospital-a", "lars", "--log-admin", stdin=GOOD_PASSWORD + "\n")
    assert out.strip() == "created sender (log administrator) lars in hospital-a"
    lars = Sender.objects.get(username="lars")
    assert (lars.is_org_admin, lars.may_read_audit) == (False, True)
    assert "lars\tsender+log-admin\tactive" in run("sender", "list", "hospital-a")


@pytest.mark.django_db
def test_sender_create_without_stdin_prints_a_generated_password_once(organisation: Any, client: Any) -> None:
    out = run("sender", "create", "hospital-a", "dave", stdin=None)
    match = re.search(r"^password \(shown once\): (\S+)$", out, flags=re.MULTILINE)
    assert match is not None, out
    password = match.group(1)
    assert len(password) >= 16
    assert out.count(password) == 1
    response = client.post("/portal/login/", {"username": "dave", "password": password})
    assert response.status_code == 302
    assert response["Location"] == "/portal/"


@pytest.mark.django_db
def test_pacsnode_add_list_remove(organisation: Any) -> None:
    out = run("pacsnode", "add", "hospital-a", "CT_SCANNER_1", "--host", "10.1.2.3", "--port", "104")
    assert out.strip() == "added PACS node CT_SCANNER_1@10.1.2.3 to hospital-a"
    node = PacsNode.objects.get(ae_title="CT_SCANNER_1")
    assert (node.organisation, node.host, node.port) == (organisation, "10.1.2.3", 104)
    run("pacsnode", "add", "hospital-a", "ANY_HOST")
    listing = run("pacsnode", "list", "hospital-a")
    assert "CT_SCANNER_1\t10.1.2.3\t104\tquery:dimse\tretrieve:move" in listing
    assert "ANY_HOST\t*\t-\tquery:off" in listing
    assert run("pacsnode", "remove", "hospital-a", "ANY_HOST").strip() == "removed ANY_HOST from hospital-a"
    assert not PacsNode.objects.filter(ae_title="ANY_HOST").exists()


@pytest.mark.django_db
def test_pacsnode_add_with_c_get_and_dicomweb(organisation: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACS_TOKEN", "s3cret-token")
    run(
        "pacsnode", "add", "hospital-a", "PACS", "--host", "10.1.2.4", "--port", "4242", "--retrieve", "get",
        "--dicomweb", "https://pacs.example.org/dicom-web", "--dicomweb-auth", "bearer",
        "--dicomweb-secret-env", "PACS_TOKEN",
    )  # fmt: skip
    node = PacsNode.objects.get(ae_title="PACS")
    assert (node.retrieve, node.dicomweb_url, node.dicomweb_auth) == (
        "get",
        "https://pacs.example.org/dicom-web",
        "bearer",
    )
    assert "s3cret-token" not in node.dicomweb_secret  # encrypted at rest
    assert node.get_dicomweb_secret() == "s3cret-token"
    assert "query:dimse+dicomweb\tretrieve:get" in run("pacsnode", "list", "hospital-a")
    run("pacsnode", "add", "hospital-a", "SENDER_ONLY", "--host", "10.1.2.5", "--port", "104", "--no-query")
    assert "SENDER_ONLY\t10.1.2.5\t104\tquery:off" in run("pacsnode", "list", "hospital-a")


# Field errors start with the field's name; our own messages are English; Django's validator messages
# come in the installation's language, so those are compared with what the validators themselves say.
BAD_INPUT = [
    pytest.param(("org", "create", "Bad Slug!", "--name", "X"), "", "slug: ", id="bad-slug"),
    pytest.param(("org", "create", "trailing-", "--name", "X"), "", "slug: ", id="slug-dash"),
    pytest.param(
        ("org", "create", "hospital-a", "--name", "Again"), "", "already exists", id="duplicate-slug"
    ),
    pytest.param(("org", "create", "empty-name", "--name", "  "), "", "name: ", id="empty-name"),
    pytest.param(
        ("sender", "create", "no-such-org", "eve"),
        GOOD_PASSWORD + "\n",
        "no organisation with slug",
        id="sender-unknown-org",
    ),
    pytest.param(("sender", "create", "hospital-a", "eve"), "password\n", None, id="weak-common"),
    pytest.param(("sender", "create", "hospital-a", "eve"), "short1\n", None, id="weak-short"),
    pytest.param(("sender", "create", "hospital-a", "eve"), "123456789012345\n", None, id="weak-numeric"),
    pytest.param(("sender", "create", "hospital-a", "eve"), "\n", "no password", id="empty-password"),
    pytest.param(
        ("sender", "create", "hospital-a", "alice"), GOOD_PASSWORD + "\n", "taken", id="taken-username"
    ),
    pytest.param(
        ("sender", "create", "hospital-a", "bad user!"), GOOD_PASSWORD + "\n", "username: ", id="bad-username"
    ),
    pytest.param(("sender", "list", "no-such-org"), "", "no organisation with slug", id="list-unknown-org"),
    pytest.param(
        ("pacsnode", "add", "no-such-org", "CT1"), "", "no organisation with slug", id="node-unknown-org"
    ),
    pytest.param(("pacsnode", "add", "hospital-a", "AE_TITLE_OF_17_CH"), "", "ae_title: ", id="ae-too-long"),
    pytest.param(("pacsnode", "add", "hospital-a", "BACK\\SLASH"), "", "ae_title: ", id="ae-backslash"),
    pytest.param(
        ("pacsnode", "add", "hospital-a", "CT1", "--host", "not-an-ip"), "", "host: ", id="bad-host"
    ),
    pytest.param(("pacsnode", "add", "hospital-a", "CT1", "--port", "70000"), "", "port: ", id="bad-port"),
    pytest.param(
        ("pacsnode", "add", "hospital-a", "EXISTING"), "", "already registered", id="duplicate-node"
    ),
    pytest.param(("pacsnode", "remove", "hospital-a", "NOT_THERE"), "", "has no node", id="remove-missing"),
]


def password_problems(username: str, password: str) -> str:
    """What Django's password validators say about ``password`` (in the installation's language)."""
    with translation.override("en"), pytest.raises(ValidationError) as caught:
        validate_password(password, user=Sender(username=username))
    return " ".join(caught.value.messages)


@pytest.mark.django_db
@pytest.mark.parametrize(("args", "stdin", "expected"), BAD_INPUT)
def test_bad_input_is_refused_with_exit_code_2(
    sender: Any, args: tuple[str, ...], stdin: str, expected: str | None
) -> None:
    add_pacs_node(sender.organisation, "EXISTING")
    before = (Organisation.objects.count(), Sender.objects.count(), PacsNode.objects.count())
    message = refused(*args, stdin=stdin)
    if expected is None:
        expected = password_problems(args[3], stdin.strip())
    assert expected in message
    assert "\n" not in message
    assert (Organisation.objects.count(), Sender.objects.count(), PacsNode.objects.count()) == before


# --- as the operator runs them: real subprocesses on their own SQLite database --------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = migrated_data_dir(tmp_path_factory.mktemp("operator"))
    setup = (
        "from radshare.organisations.services import add_pacs_node, create_organisation; "
        "add_pacs_node(create_organisation('cli-org', 'CLI Org'), 'CLI_DUP')"
    )
    done = run_radshare("shell", "-c", setup, env=radshare_env(path))
    assert done.returncode == 0, done.stderr
    return path


def cli(data_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_radshare(*args, env=radshare_env(data_dir), stdin=stdin)


def logins(data_dir: Path, username: str, *passwords: str) -> list[bool]:
    """Whether each password logs ``username`` in (checked by Django's authenticate in a subprocess)."""
    check = (
        "import sys; from django.contrib.auth import authenticate; "
        f"print('LOGINS', *(int(authenticate(username={username!r}, password=p.rstrip(chr(10))) is not None) "
        "for p in sys.stdin))"
    )
    done = cli(data_dir, "shell", "--no-imports", "-c", check, stdin="".join(p + "\n" for p in passwords))
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("LOGINS"))
    return [flag == "1" for flag in line.split()[1:]]


@pytest.mark.once
def test_cli_org_create_and_list(data_dir: Path) -> None:
    done = cli(data_dir, "org", "create", "cli-clinic", "--name", "CLI Clinic")
    assert (done.returncode, done.stdout.strip()) == (0, "created organisation cli-clinic (CLI Clinic)")
    listing = cli(data_dir, "org", "list")
    assert "cli-clinic\tCLI Clinic\tactive" in listing.stdout


@pytest.mark.once
def test_cli_sender_create_with_piped_password(data_dir: Path) -> None:
    done = cli(data_dir, "sender", "create", "cli-org", "piped", stdin=GOOD_PASSWORD + "\n")
    assert (done.returncode, done.stdout.strip()) == (0, "created sender piped in cli-org"), done.stderr
    assert GOOD_PASSWORD not in done.stdout + done.stderr
    assert logins(data_dir, "piped", GOOD_PASSWORD, GOOD_PASSWORD + "x") == [True, False]


@pytest.mark.once
def test_cli_sender_create_on_a_terminal_prints_a_password_that_works(data_dir: Path) -> None:
    primary, terminal = os.openpty()  # stdin is a TTY: nothing piped, so the password is generated
    try:
        done = subprocess.run(
            [sys.executable, "-m", "radshare", "sender", "create", "cli-org", "typed", "--admin"],
            env=radshare_env(data_dir),
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    finally:
        os.close(terminal)
        os.close(primary)
    assert done.returncode == 0, done.stderr
    match = re.search(r"^password \(shown once\): (\S+)$", done.stdout, flags=re.MULTILINE)
    assert match is not None, done.stdout
    password = match.group(1)
    assert (done.stdout + done.stderr).count(password) == 1
    assert logins(data_dir, "typed", password) == [True]


@pytest.mark.once
def test_cli_pacsnode_add_list_remove(data_dir: Path) -> None:
    done = cli(data_dir, "pacsnode", "add", "cli-org", "CLI_NODE", "--host", "127.0.0.1", "--port", "11113")
    assert (done.returncode, done.stdout.strip()) == (0, "added PACS node CLI_NODE@127.0.0.1 to cli-org")
    assert "CLI_NODE\t127.0.0.1\t11113" in cli(data_dir, "pacsnode", "list", "cli-org").stdout
    removed = cli(data_dir, "pacsnode", "remove", "cli-org", "CLI_NODE", "--host", "127.0.0.1")
    assert (removed.returncode, removed.stdout.strip()) == (0, "removed CLI_NODE from cli-org")


CLI_BAD_INPUT = [
    pytest.param(("org", "create", "Bad Slug!", "--name", "X"), None, "slug: ", id="bad-slug"),
    pytest.param(
        ("org", "create", "cli-org", "--name", "Again"), None, "already exists", id="duplicate-slug"
    ),
    pytest.param(
        ("sender", "create", "no-such-org", "eve"),
        GOOD_PASSWORD,
        "no organisation with slug",
        id="unknown-org",
    ),
    pytest.param(("sender", "create", "cli-org", "eve"), "password", None, id="weak-password"),
    pytest.param(("sender", "create", "cli-org", "eve"), None, "no password", id="nothing-piped"),
    pytest.param(("pacsnode", "add", "cli-org", "AE_TITLE_OF_17_CH"), None, "ae_title: ", id="ae-too-long"),
    pytest.param(("pacsnode", "add", "cli-org", "CT1", "--host", "not-an-ip"), None, "host: ", id="bad-host"),
    pytest.param(("pacsnode", "add", "cli-org", "CLI_DUP"), None, "already registered", id="duplicate-node"),
]


@pytest.mark.once
@pytest.mark.parametrize(("args", "stdin", "expected"), CLI_BAD_INPUT)
def test_cli_bad_input_exits_2_with_one_clear_line(
    data_dir: Path, args: tuple[str, ...], stdin: str | None, expected: str | None
) -> None:
    done = cli(data_dir, *args, stdin=None if stdin is None else stdin + "\n")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    if expected is None:
        assert stdin is not None
        expected = password_problems(args[3], stdin)
    assert lines[0].startswith("CommandError: ")
    assert expected in lines[0]
