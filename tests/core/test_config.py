"""``RADSHARE_*`` settings: one clear line per bad value, secret key rules, and ``radshare config``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import secrets
import shutil
import stat
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from radshare.core import config
from radshare.core.config import ConfigError, load
from tests.cli_runner import radshare_env, run_radshare

GOOD_SECRET = "k3Y-" + "x7Qm" * 12  # 52 characters, not a placeholder


def problems_of(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(env, create_secret=False)
    return caught.value.problems


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("DICOM_PORT", "abc"),
        ("DICOM_PORT", "70000"),
        ("HTTP_PORT", "0"),
        ("DICOM_MAX_ASSOCIATIONS", "1.5"),
        ("SHARE_VALIDITY_DAYS", "-1"),
        ("DEMO", "maybe"),
        ("DOWNLOAD_ON_MOBILE", "2"),
        ("ROLE", "everything"),
        ("BASE_URL", "ftp://radshare.example.org"),
        ("BASE_URL", "https://radshare.example.org/?x=1"),
        ("BASE_URL", "radshare.example.org"),
        ("DATABASE_URL", "mysql://db/radshare"),
        ("DATABASE_URL", "sqlite://relative.db"),
        ("DICOM_AE_TITLE", "A_TITLE_LONGER_THAN_16"),
        ("DICOM_AE_TITLE", "BACK\\SLASH"),
        ("DICOM_AE_TITLE", "  "),
        ("ALLOWED_HOSTS", "radshare.example.org,bad host!"),
        ("HTTP_BIND", "localhost"),
        ("DICOM_BIND", "300.1.1.1"),
        ("TRUSTED_PROXIES", "10.0.0.1,proxy.example.org"),
        ("EMAIL_URL", "gopher://mail"),
        ("EMAIL_URL", "file://"),
        ("EMAIL_URL", "smtp://:587"),
        ("EMAIL_URL", "smtp://relay.example.org:port"),
        ("SMS_URL", "smtp://relay.example.org"),
        ("EMAIL_URL", "smtp://relay.example.org?startls=1"),
        ("EMAIL_URL", "smtp://relay.example.org?starttls=maybe"),
        ("EMAIL_URL", "smtps://relay.example.org?starttls=1"),
        ("EMAIL_URL", "smtp://relay.example.org?starttls=1&starttls=0"),
        ("EMAIL_URL", "smtp://relay.example.org?cafile=/nonexistent/ca.pem"),
        ("EMAIL_URL", "file://relative/mail"),
        ("SMS_URL", "file://"),
        ("SMS_URL", "ftp://sms.example.org/send"),
        ("SMS_URL", "https:///send"),
        ("SMS_URL", "https://sms.example.org:port/send"),
        ("SMS_URL", "cm://gw.messaging.cm.com"),
        ("SMS_URL", "cm://@gw.messaging.cm.com"),
        ("EMAIL_FROM", "not an address"),
        ("EMAIL_FROM", "noreply@"),
        ("EMAIL_FROM", "a@example.org, b@example.org"),
        ("EMAIL_FROM", "Hospital A <noreply@hospital a.nl>"),
        ("SMS_SENDER", "HospitalA123"),
        ("SMS_SENDER", "12345"),
        ("SMS_SENDER", "Hospital-A"),
        ("SMS_SENDER", "+0612345678"),
        ("SMS_SENDER", "   "),
        ("SMS_BODY", '{"to": {to}, "text": "{text}"}'),
        ("SMS_BODY", '{"text": "{text}"}'),
        ("SMS_BODY", '{"to": "{to}", "text": "{text}", "from": "{phone}"}'),
        ("SMS_BODY", "to={to}&text={text}"),
        ("SMS_BODY", '{"to": "{to}", "text": "{text}"'),
        ("STORAGE_URL", "s3://bucket?endpoint=http://s3.local"),
        ("STORAGE_URL", "gs://bucket"),
        ("LOG_LEVEL", "LOUD"),
    ],
)
def test_each_bad_value_is_one_line_naming_the_variable(tmp_path: Path, name: str, raw: str) -> None:
    problems = problems_of({"RADSHARE_DATA_DIR": str(tmp_path), f"RADSHARE_{name}": raw})
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"RADSHARE_{name}={raw!r}: ")
    assert len(problems[0].removeprefix(f"RADSHARE_{name}={raw!r}: ")) > 10  # says what is expected
    assert "\n" not in problems[0]


def test_several_bad_values_give_several_lines(tmp_path: Path) -> None:
    problems = problems_of(
        {
            "RADSHARE_DATA_DIR": str(tmp_path),
            "RADSHARE_DICOM_PORT": "abc",
            "RADSHARE_ROLE": "both",
            "RADSHARE_LOG_LEVEL": "chatty",
            "RADSHARE_DICOM_PROT": "104",
        }
    )
    assert len(problems) == 4, problems
    named = {p.split("=")[0].split(":")[0]: p for p in problems}
    assert set(named) == {"RADSHARE_ROLE", "RADSHARE_DICOM_PORT", "RADSHARE_LOG_LEVEL", "RADSHARE_DICOM_PROT"}
    assert "unknown setting" in named["RADSHARE_DICOM_PROT"]


def test_a_bad_value_creates_no_secret_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load({"RADSHARE_DATA_DIR": str(tmp_path), "RADSHARE_DICOM_PORT": "abc"})
    assert not (tmp_path / "secret_key").exists()


def test_config_has_one_typed_field_per_setting(tmp_path: Path) -> None:
    """``Config``'s fields name the settings of ``SETTINGS`` in the same order, and each loaded value has its
    field's type: mypy checks every ``settings.RADSHARE.<name>`` against those types."""
    names = [f.name for f in dataclasses.fields(config.Config) if f.name != "secret_key_source"]
    assert names == [s.name.lower() for s in config.SETTINGS]
    cfg = load({"RADSHARE_DATA_DIR": str(tmp_path)})
    hints = typing.get_type_hints(config.Config)
    for name in names:
        value = getattr(cfg, name)
        assert isinstance(value, typing.get_origin(hints[name]) or hints[name]), name
        if isinstance(value, tuple):
            assert all(isinstance(item, str) for item in value), name
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.dicom_port = 104  # type: ignore[misc]


def test_good_values_are_parsed(tmp_path: Path) -> None:
    cfg = load(
        {
            "RADSHARE_DATA_DIR": str(tmp_path),
            "RADSHARE_DICOM_PORT": " 104 ",
            "RADSHARE_DEMO": "yes",
            "RADSHARE_ROLE": "Internal",
            "RADSHARE_BASE_URL": "https://radshare.example.org/",
            "RADSHARE_TRUSTED_PROXIES": "10.0.0.5, 192.168.1.0/24",
            "RADSHARE_LOG_LEVEL": "debug",
        }
    )
    assert cfg.dicom_port == 104
    assert cfg.demo is True
    assert cfg.role == "internal"
    assert cfg.base_url == "https://radshare.example.org"
    assert cfg.trusted_proxies == ("10.0.0.5/32", "192.168.1.0/24")
    assert cfg.log_level == "DEBUG"
    assert cfg.database_url == f"sqlite:///{tmp_path.resolve() / 'radshare.sqlite3'}"
    assert cfg.storage_url == f"file://{tmp_path.resolve() / 'storage'}"


@pytest.mark.parametrize(
    "secret",
    ["changeme", "secret", "django-insecure-0123456789abcdef0123456789abcdef", "tooShortButRandom9x"],
)
def test_placeholder_or_short_secret_is_refused_outside_demo(tmp_path: Path, secret: str) -> None:
    problems = problems_of({"RADSHARE_DATA_DIR": str(tmp_path), "RADSHARE_SECRET_KEY": secret})
    assert len(problems) == 1
    assert problems[0].startswith("RADSHARE_SECRET_KEY: ")
    if len(secret) > 10:  # (short words like "secret" occur in the advice itself)
        assert secret not in problems[0]  # a secret is never echoed to the console


def test_placeholder_secret_is_accepted_in_demo_mode(tmp_path: Path) -> None:
    cfg = load({"RADSHARE_DATA_DIR": str(tmp_path), "RADSHARE_SECRET_KEY": "changeme", "RADSHARE_DEMO": "1"})
    assert cfg.secret_key == "changeme"
    assert cfg.secret_key_source == "environment"


def test_secret_key_is_generated_private_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"  # does not exist yet
    first = load({"RADSHARE_DATA_DIR": str(data_dir)})
    key_file = data_dir / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first.secret_key) >= 32
    assert key_file.read_text(encoding="ascii").strip() == first.secret_key
    assert first.secret_key_source == str(key_file)
    second = load({"RADSHARE_DATA_DIR": str(data_dir)})
    assert second.secret_key == first.secret_key
    other = load({"RADSHARE_DATA_DIR": str(tmp_path / "elsewhere")})
    assert other.secret_key != first.secret_key


def test_postgres_without_secret_is_refused_outside_demo(tmp_path: Path) -> None:
    problems = problems_of(
        {
            "RADSHARE_DATA_DIR": str(tmp_path),
            "RADSHARE_DATABASE_URL": "postgres://radshare@db.example.org/radshare",
            "RADSHARE_STORAGE_URL": "s3://radshare-images/prod",
        }
    )
    assert len(problems) == 1
    assert problems[0].startswith("RADSHARE_SECRET_KEY: must be set")
    assert not (tmp_path / "secret_key").exists()


def test_postgres_without_secret_generates_one_in_demo_mode(tmp_path: Path) -> None:
    cfg = load(
        {
            "RADSHARE_DATA_DIR": str(tmp_path),
            "RADSHARE_DEMO": "1",
            "RADSHARE_DATABASE_URL": "postgres://radshare@db.example.org/radshare",
        }
    )
    assert cfg.secret_key == (tmp_path / "secret_key").read_text(encoding="ascii").strip()


def test_a_shared_database_needs_storage_every_process_sees(tmp_path: Path) -> None:
    """Several machines on one PostgreSQL database with each its own folder would each hold part of the images:
    a file:// storage must be marked shared (one folder for all), outside demo mode; SQLite and s3:// need not."""
    base = {
        "RADSHARE_DATA_DIR": str(tmp_path),
        "RADSHARE_SECRET_KEY": GOOD_SECRET,
        "RADSHARE_DATABASE_URL": "postgres://radshare@db.example.org/radshare",
    }
    for unmarked in ({}, {"RADSHARE_STORAGE_URL": f"file://{tmp_path}/storage"}):
        problems = problems_of({**base, **unmarked})
        assert problems == [
            "RADSHARE_STORAGE_URL: with a shared database every web, SCP and worker process must see the same "
            "files: use s3://, or add ?shared=1 to the file:// URL if that folder is the same one for all of them"
        ]
    marked = load({**base, "RADSHARE_STORAGE_URL": f"file://{tmp_path}/storage?shared=1"})
    assert marked.storage_url == f"file://{tmp_path}/storage?shared=1"
    assert load({**base, "RADSHARE_STORAGE_URL": "s3://radshare-images/prod"}).storage_url.startswith("s3://")
    assert load({**base, "RADSHARE_DEMO": "1"}).storage_url == f"file://{tmp_path.resolve()}/storage"
    assert load({"RADSHARE_DATA_DIR": str(tmp_path)}).storage_url == f"file://{tmp_path.resolve()}/storage"
    # The option is checked like every other: a typo or a value that is not 1/0 is refused, not ignored.
    for wrong, says in (
        ("?share=1", "unknown option 'share'"),
        ("?shared=yes-please", "?shared= must be 1 or 0"),
    ):
        (problem,) = problems_of({**base, "RADSHARE_STORAGE_URL": f"file://{tmp_path}/storage{wrong}"})
        assert problem.startswith("RADSHARE_STORAGE_URL=")
        assert says in problem
    (relative,) = problems_of({**base, "RADSHARE_STORAGE_URL": "file://storage?shared=1"})
    assert "file:///absolute/dir" in relative


def test_dicom_accept_any_only_in_demo_mode(tmp_path: Path) -> None:
    problems = problems_of({"RADSHARE_DATA_DIR": str(tmp_path), "RADSHARE_DICOM_ACCEPT_ANY": "1"})
    assert len(problems) == 1
    assert problems[0].startswith("RADSHARE_DICOM_ACCEPT_ANY: ")
    assert load({"RADSHARE_DATA_DIR": str(tmp_path), "RADSHARE_DEMO": "1"}).dicom_accept_any is True
    assert load({"RADSHARE_DATA_DIR": str(tmp_path)}).dicom_accept_any is False
    demo_closed = load(
        {"RADSHARE_DATA_DIR": str(tmp_path), "RADSHARE_DEMO": "1", "RADSHARE_DICOM_ACCEPT_ANY": "0"}
    )
    assert demo_closed.dicom_accept_any is False


def test_public_items_mask_secrets_and_passwords(tmp_path: Path) -> None:
    cfg = load(
        {
            "RADSHARE_DATA_DIR": str(tmp_path),
            "RADSHARE_SECRET_KEY": GOOD_SECRET,
            "RADSHARE_DATABASE_URL": "postgres://radshare:Db-Pa55word@db.example.org:5432/radshare",
            "RADSHARE_STORAGE_URL": "file:///srv/radshare/storage?shared=1",
            "RADSHARE_EMAIL_URL": "smtp://mailer:M41l-Pa55@relay.example.org:587?starttls=1",
        }
    )
    shown = dict(cfg.public_items())
    text = "\n".join(f"{k} {v}" for k, v in shown.items())
    assert GOOD_SECRET not in text
    assert "Db-Pa55word" not in text
    assert "M41l-Pa55" not in text
    assert shown["RADSHARE_SECRET_KEY"] == "(set, from environment)"
    assert shown["RADSHARE_DATABASE_URL"] == "postgres://radshare:***@db.example.org:5432/radshare"
    assert shown["RADSHARE_EMAIL_URL"] == "smtp://mailer:***@relay.example.org:587?starttls=1"


# --- the console script ---------------------------------------------------------------------------


def test_radshare_config_bad_value_is_one_stderr_line_and_exit_2(tmp_path: Path) -> None:
    done = run_radshare("config", env=radshare_env(tmp_path, dicom_port="abc"))
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(
        "radshare: configuration error: RADSHARE_DICOM_PORT='abc': must be a whole number"
    )
    assert "Traceback" not in done.stderr


def test_console_script_reports_every_bad_value(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("radshare")
    if not script.exists():
        pytest.skip("the radshare console script is not installed next to this Python")
    done = subprocess.run(
        [str(script), "config"],
        env=radshare_env(tmp_path, dicom_port="abc", role="nowhere", demo="perhaps"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 3, done.stderr
    assert all(line.startswith("radshare: configuration error: RADSHARE_") for line in lines)
    assert {line.split(": ")[2].split("=")[0] for line in lines} == {
        "RADSHARE_DICOM_PORT",
        "RADSHARE_ROLE",
        "RADSHARE_DEMO",
    }


def test_radshare_config_never_prints_secrets(tmp_path: Path) -> None:
    env = radshare_env(
        tmp_path,
        secret_key=GOOD_SECRET,
        database_url="postgres://radshare:Db-Pa55word@127.0.0.1:1/radshare",
        storage_url=f"file://{tmp_path / 'storage'}?shared=1",
        email_url="smtp://mailer:M41l-Pa55@127.0.0.1:1",
        sms_url="cm://C0ffee-T0ken@gw.messaging.cm.com",
    )
    done = run_radshare("config", env=env)
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "RADSHARE_DICOM_PORT" in output
    assert "RADSHARE_SECRET_KEY" in output
    for secret in (GOOD_SECRET, "Db-Pa55word", "M41l-Pa55", "C0ffee-T0ken"):
        assert secret not in output


def test_radshare_config_never_prints_a_generated_secret(tmp_path: Path) -> None:
    done = run_radshare("config", env=radshare_env(tmp_path))
    assert done.returncode == 0, done.stderr
    generated = (tmp_path / "secret_key").read_text(encoding="ascii").strip()
    assert len(generated) >= 32
    assert generated not in done.stdout + done.stderr
    assert f"(set, from {tmp_path.resolve() / 'secret_key'})" in done.stdout


# --- e-mail and SMS settings ------------------------------------------------------------------------------------


def test_message_settings_are_parsed(tmp_path: Path) -> None:
    body = '{"apiKey": "k", "msisdn": "{to}", "message": "{text}", "originator": "{sender}"}'
    cfg = load(
        {
            "RADSHARE_DATA_DIR": str(tmp_path),
            "RADSHARE_EMAIL_URL": "smtps://mailer:pw@relay.example.org",
            "RADSHARE_EMAIL_FROM": ' "Hospital A, radiology" <noreply@hospital-a.nl> ',
            "RADSHARE_SMS_URL": "cm://00000000-0000-0000-0000-000000000000@",
            "RADSHARE_SMS_SENDER": " Hospital A ",
            "RADSHARE_SMS_BODY": body,
        }
    )
    assert cfg.email_url == "smtps://mailer:pw@relay.example.org"
    assert cfg.email_from == '"Hospital A, radiology" <noreply@hospital-a.nl>'
    assert cfg.sms_url == "cm://00000000-0000-0000-0000-000000000000@"
    assert cfg.sms_sender == "Hospital A"
    assert cfg.sms_body == body
    assert load({"RADSHARE_DATA_DIR": str(tmp_path), "RADSHARE_SMS_SENDER": "+3197010203040"}).sms_sender == (
        "+3197010203040"
    )


@pytest.mark.parametrize(
    "url",
    [
        "console://",
        "file:///var/lib/radshare/sms.jsonl",
        "https://user:pass@sms.example.org/v1/send?channel=sms",
        "http://127.0.0.1:9000/send",
        "cm://TOKEN@gw.messaging.cm.com",
        "cm://TOKEN@127.0.0.1:9000?tls=0",
    ],
)
def test_sms_url_forms_are_accepted(tmp_path: Path, url: str) -> None:
    assert load({"RADSHARE_DATA_DIR": str(tmp_path), "RADSHARE_SMS_URL": url}).sms_url == url


def test_email_url_cafile_must_exist(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    url = f"smtp://relay.example.org?starttls=1&cafile={ca}"
    assert load({"RADSHARE_DATA_DIR": str(tmp_path), "RADSHARE_EMAIL_URL": url}).email_url == url


def test_cm_plain_http_only_to_this_machine_and_the_error_hides_the_token(tmp_path: Path) -> None:
    problems = problems_of(
        {
            "RADSHARE_DATA_DIR": str(tmp_path),
            "RADSHARE_SMS_URL": "cm://Pr0duct-T0ken@gw.messaging.cm.com?tls=0",
        }
    )
    assert len(problems) == 1
    assert problems[0].startswith("RADSHARE_SMS_URL='cm://***@gw.messaging.cm.com?tls=0': ")
    assert "Pr0duct-T0ken" not in problems[0]


def test_a_bad_smtp_url_does_not_echo_its_password(tmp_path: Path) -> None:
    problems = problems_of(
        {"RADSHARE_DATA_DIR": str(tmp_path), "RADSHARE_EMAIL_URL": "smtp://mailer:M41l-Pa55@relay:port"}
    )
    assert problems == [
        "RADSHARE_EMAIL_URL='smtp://mailer:***@relay:port': the port in the smtp:// URL is not a number"
    ]


def test_message_urls_default_to_the_console_outside_demo_mode(tmp_path: Path) -> None:
    cfg = load({"RADSHARE_DATA_DIR": str(tmp_path)})
    assert cfg.email_url == "console://"
    assert cfg.sms_url == "console://"


def test_demo_mode_keeps_messages_in_the_outbox_folder(tmp_path: Path) -> None:
    cfg = load({"RADSHARE_DATA_DIR": str(tmp_path), "RADSHARE_DEMO": "1"})
    outbox = tmp_path.resolve() / "outbox"
    assert cfg.email_url == f"file://{outbox / 'mail'}"
    assert cfg.sms_url == f"file://{outbox / 'sms.jsonl'}"
    chosen = load(
        {
            "RADSHARE_DATA_DIR": str(tmp_path),
            "RADSHARE_DEMO": "1",
            "RADSHARE_EMAIL_URL": "console://",
            "RADSHARE_SMS_URL": "file:///tmp/elsewhere.jsonl",
        }
    )
    assert chosen.email_url == "console://"
    assert chosen.sms_url == "file:///tmp/elsewhere.jsonl"


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        (None, "radshare <noreply@localhost>"),
        ("https://radshare.hospital-a.nl", "radshare <noreply@radshare.hospital-a.nl>"),
        ("http://10.1.2.3:8000", "radshare <noreply@localhost>"),
    ],
)
def test_email_from_default_comes_from_the_base_url(
    tmp_path: Path, base_url: str | None, expected: str
) -> None:
    env = {"RADSHARE_DATA_DIR": str(tmp_path)}
    if base_url:
        env["RADSHARE_BASE_URL"] = base_url
    assert load(env).email_from == expected


def test_email_from_default_that_is_no_address_asks_for_the_setting(tmp_path: Path) -> None:
    problems = problems_of({"RADSHARE_DATA_DIR": str(tmp_path), "RADSHARE_BASE_URL": "https://radshare_test"})
    assert len(problems) == 1
    assert problems[0].startswith("RADSHARE_EMAIL_FROM: ")


def test_sms_body_fills_in_json_escaped_values_once() -> None:
    from radshare.core.config import SMS_BODY_DEFAULT, fill_sms_body

    text = 'Code "123456"\\ {to}\nbye \u00e9'
    filled = fill_sms_body(SMS_BODY_DEFAULT, {"to": "+31612345678", "text": text, "reference": "rs-sms-1"})
    assert json.loads(filled) == {"to": "+31612345678", "text": text, "reference": "rs-sms-1"}


def test_public_items_mask_gateway_credentials(tmp_path: Path) -> None:
    cfg = load(
        {
            "RADSHARE_DATA_DIR": str(tmp_path),
            "RADSHARE_EMAIL_URL": "smtps://mailer:M41l-Pa55@relay.example.org",
            "RADSHARE_SMS_URL": "cm://C0ffee-T0ken@gw.messaging.cm.com",
            "RADSHARE_SMS_BODY": '{"api_key": "B0dy-K3y", "to": "{to}", "text": "{text}", "channel": "sms"}',
        }
    )
    shown = dict(cfg.public_items())
    assert shown["RADSHARE_EMAIL_URL"] == "smtps://mailer:***@relay.example.org"
    assert shown["RADSHARE_SMS_URL"] == "cm://***@gw.messaging.cm.com"
    assert (
        shown["RADSHARE_SMS_BODY"] == '{"api_key": "***", "to": "{to}", "text": "{text}", "channel": "sms"}'
    )
    text = "\n".join(shown.values())
    for secret in ("M41l-Pa55", "C0ffee-T0ken", "B0dy-K3y"):
        assert secret not in text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://gw-user:Gw-Pa55@sms.example.org/send", "https://gw-user:***@sms.example.org/send"),
        ("https://Api-K3y@sms.example.org/send", "https://***@sms.example.org/send"),
        (
            "https://sms.example.org/send?channel=sms&api_key=Api-K3y&Token=T0k",
            "https://sms.example.org/send?channel=sms&api_key=***&Token=***",
        ),
        ("http://127.0.0.1:9000/send", "http://127.0.0.1:9000/send"),
    ],
)
def test_public_items_mask_http_gateway_credentials(tmp_path: Path, url: str, shown: str) -> None:
    cfg = load({"RADSHARE_DATA_DIR": str(tmp_path), "RADSHARE_SMS_URL": url})
    assert dict(cfg.public_items())["RADSHARE_SMS_URL"] == shown


def test_no_tracked_file_lives_under_var() -> None:
    """The data folder is the installation's own: a key or database in git would be every clone's."""
    root = Path(__file__).resolve().parents[2]
    git = shutil.which("git")
    if git is None or not (root / ".git").exists():
        pytest.fail("this test needs the git work tree and git")
    tracked = subprocess.run(
        [git, "ls-files", "--", "var"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()
    assert tracked == []


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    load({"RADSHARE_DATA_DIR": str(tmp_path)})
    key_file = tmp_path / "secret_key"
    key_file.chmod(0o640)
    problems = problems_of({"RADSHARE_DATA_DIR": str(tmp_path)})
    assert len(problems) == 1
    assert "readable by others" in problems[0]
    assert key_file.read_text(encoding="ascii").strip() not in problems[0]
    # The command line: one clear line and exit 2.
    done = run_radshare("config", env=radshare_env(tmp_path))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "readable by others" in done.stderr


def test_a_published_key_is_refused_and_the_demo_makes_a_fresh_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    published = secrets.token_urlsafe(48)
    monkeypatch.setattr(
        "radshare.core.config.secret_key.LEAKED_SECRET_KEYS",
        frozenset({hashlib.sha256(published.encode()).hexdigest()}),
    )
    key_file = tmp_path / "secret_key"
    key_file.write_text(published + "\n", encoding="ascii")
    key_file.chmod(0o600)
    problems = problems_of({"RADSHARE_DATA_DIR": str(tmp_path)})
    assert problems == [
        f"RADSHARE_SECRET_KEY: the key file {key_file} holds a key that was published once; delete it"
    ]
    env_problems = problems_of({"RADSHARE_DATA_DIR": str(tmp_path / "x"), "RADSHARE_SECRET_KEY": published})
    assert env_problems == ["RADSHARE_SECRET_KEY: this key was published once; generate a new one"]
    demo = load({"RADSHARE_DATA_DIR": str(tmp_path), "RADSHARE_DEMO": "1"})
    assert demo.secret_key != published
    assert key_file.read_text(encoding="ascii").strip() == demo.secret_key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_the_once_committed_key_is_on_the_list() -> None:
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in config.LEAKED_SECRET_KEYS)
    assert len(config.LEAKED_SECRET_KEYS) >= 1
