"""Shared fixtures. Real components only: a real DICOM AE on loopback, real DCMTK, real databases."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django_otp.oath import TOTP

from radshare.core.config import Config

REQUIRE_ALL = os.environ.get("RADSHARE_REQUIRE_ALL") == "1"


def require(condition: bool, what: str) -> None:
    """Skip when a component is missing; in CI (RADSHARE_REQUIRE_ALL=1) fail instead."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required component missing: {what}", pytrace=False)
    pytest.skip(f"component missing: {what}")


def require_program(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"`{name}` on PATH")
    assert path is not None
    return path


def free_port() -> int:
    """A free TCP port on loopback (as pynetdicom's tests do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_with(**overrides: Any) -> Config:
    """The current configuration with some values replaced (keys are setting names, any case)."""
    current: Config = django_settings.RADSHARE
    return dataclasses.replace(current, **{k.lower(): v for k, v in overrides.items()})


@pytest.fixture(autouse=True)
def _storage_root(settings: Any, tmp_path: Path) -> Iterator[Path]:
    """Each test stores its files in its own folder (its own ``RADSHARE_STORAGE_URL``), and starts with an empty
    ingest id cache and the synchronous ingest path."""
    from radshare.studies import services

    root = tmp_path / "storage"
    # ?shared=1: the processes some tests start share this folder, and on PostgreSQL a shared database asks
    # for it (docs/operations.md). An SCP started in this process takes the synchronous path unless the test asks
    # for journal mode (the ``scp`` fixture's "journal"): journal mode spawns an indexer that reads its database
    # from the environment, not from this test's settings.
    settings.RADSHARE = config_with(storage_url=f"file://{root}?shared=1", ingest_journal=False)
    services._ids.clear()
    yield root
    services._ids.clear()


@pytest.fixture
def storage_root(_storage_root: Path) -> Path:
    """The folder this test's storage writes to, for tests of the files themselves (their layout, a damaged one)."""
    return _storage_root


def storage_dir() -> Path:
    """The folder of the storage in use (tests always use a ``file://`` one): where a test looks at files."""
    from radshare.core.storage import FileSystemStorage, get_storage

    storage = get_storage()
    assert isinstance(storage, FileSystemStorage)
    return storage.root


@pytest.fixture(autouse=True)
def _fast_password_hashing(request: pytest.FixtureRequest, settings: Any) -> None:
    """Argon2 costs ~0.3 s a hash by design; tests that are not about hashing use a fast hasher.
    Tests marked ``argon2`` (and every subprocess) keep the real configuration."""
    if request.node.get_closest_marker("argon2") is None:
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def radshare_config(settings: Any) -> Any:
    """Call with keyword overrides to change ``settings.RADSHARE`` for one test."""

    def apply(**overrides: Any) -> Config:
        settings.RADSHARE = config_with(**overrides)
        return settings.RADSHARE

    return apply


@pytest.fixture
def sms_file(radshare_config: Any, tmp_path: Path) -> Path:
    """E-mails and SMS messages go to files under ``tmp_path``; the SMS file's path (read with
    ``tests.recipients.conftest.sms_codes``)."""
    path = tmp_path / "sms.jsonl"
    radshare_config(sms_url=f"file://{path}", email_url=f"file://{tmp_path / 'mail'}")
    return path


@pytest.fixture
def organisation(db: None) -> Any:
    """An organisation whose senders log in with a password only: most tests are not about the second login step.
    Those that are use ``two_factor_organisation`` (tests/security/test_two_factor.py)."""
    from radshare.organisations.services import create_organisation

    return create_organisation(
        "hospital-a", "Hospital A", contact_phone="+31 20 123 4567", require_two_factor=False
    )


@pytest.fixture
def other_organisation(db: None) -> Any:
    from radshare.organisations.services import create_organisation

    return create_organisation("hospital-b", "Hospital B", require_two_factor=False)


@pytest.fixture
def two_factor_organisation(db: None) -> Any:
    """An organisation as one is made outside demo mode: its senders pass a second login step (TOTP)."""
    from radshare.organisations.services import create_organisation

    return create_organisation("hospital-t", "Hospital T", contact_phone="+31 20 765 4321")


def totp_code(device: Any, at: float | None = None) -> str:
    """The code an authenticator app shows for ``device`` at ``at`` (now), as django-otp computes it; never a
    step already used (django-otp refuses a code twice), so two logins within 30 seconds both work."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits)  # an app knows of no drift
    totp.time = time.time() if at is None else at
    if totp.t() <= device.last_t:  # the app's next code: still within the ±1 step django-otp allows
        totp.time = (device.last_t + 1) * device.step + device.t0
    return f"{totp.token():0{device.digits}d}"


def pass_second_factor(client: Any, user: Any, *, site: str = "portal") -> Any:
    """Pass the second login step for real on ``client``, whose session passed the password: set up an app on the
    setup page when the account has none, else type the app's code. Returns the step's response (a redirect)."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    base = "/admin/two-factor/" if site == "admin" else "/portal/two-factor/"
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    url = base
    if device is None:
        url = f"{base}setup/"
        assert client.get(url).status_code == 200
        device = TOTPDevice.objects.get(user=user, confirmed=False)
    response = client.post(url, {"code": totp_code(device)})
    assert response.status_code == 302, response.content.decode()[:2000]
    return response


@pytest.fixture
def sender(organisation: Any) -> Any:
    from radshare.organisations.services import create_sender

    return create_sender(organisation, "alice", "correct horse battery staple")


@pytest.fixture
def scp(
    request: pytest.FixtureRequest,
    transactional_db: None,
    radshare_config: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Any]:
    """radshare's storage SCP running in this process on a free loopback port. Parametrised indirectly with
    ``"journal"``, it runs in journal mode, its indexer process pointed at this test's database and storage.

    ``transactional_db``: the SCP's association threads use their own database connections, so the data
    must be committed for real (and is flushed after the test).
    """
    from radshare.studies.scp import StorageSCP
    from tests.runtime.processes import database_url  # late import: it needs Django's settings

    port = free_port()
    radshare_config(dicom_port=port, dicom_bind="127.0.0.1", dicom_accept_any=False)
    if getattr(request, "param", "") == "journal":
        radshare_config(ingest_journal=True, data_dir=str(tmp_path / "scp"))
        # The indexer is a spawned process: it reads its settings from the environment.
        monkeypatch.setenv("RADSHARE_DATABASE_URL", database_url())
        monkeypatch.setenv("RADSHARE_STORAGE_URL", django_settings.RADSHARE.storage_url)
        monkeypatch.setenv("RADSHARE_SECRET_KEY", django_settings.RADSHARE.secret_key)
        monkeypatch.setenv("RADSHARE_DATA_DIR", str(tmp_path / "scp"))
    server = StorageSCP(port=port)
    server.start(block=False)
    try:
        yield server
    finally:
        associations = server.server.active_associations
        server.shutdown()
        # End the association threads before the database is flushed: each writes its audit entry as it
        # closes, which would otherwise land in the next test's tables (shutdown() does not wait for them).
        for assoc in associations:
            assoc.join(timeout=10)
            if assoc.is_alive():  # a peer a failed test left connected
                assoc.abort()
                assoc.join(timeout=10)
