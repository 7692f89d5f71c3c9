"""Shared fixtures. Real components only: a real DICOM AE on loopback, real DCMTK, real databases."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings

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
    ingest id cache."""
    from radshare.studies import services

    root = tmp_path / "storage"
    settings.RADSHARE = config_with(storage_url=f"file://{root}")
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
def organisation(db: None) -> Any:
    from radshare.organisations.services import create_organisation

    return create_organisation("hospital-a", "Hospital A", contact_phone="+31 20 123 4567")


@pytest.fixture
def other_organisation(db: None) -> Any:
    from radshare.organisations.services import create_organisation

    return create_organisation("hospital-b", "Hospital B")


@pytest.fixture
def sender(organisation: Any) -> Any:
    from radshare.organisations.services import create_sender

    return create_sender(organisation, "alice", "correct horse battery staple")


@pytest.fixture
def scp(transactional_db: None, radshare_config: Any) -> Iterator[Any]:
    """radshare's storage SCP running in this process on a free loopback port.

    ``transactional_db``: the SCP's association threads use their own database connections, so the data
    must be committed for real (and is flushed after the test).
    """
    from radshare.studies.scp import StorageSCP

    port = free_port()
    radshare_config(dicom_port=port, dicom_bind="127.0.0.1", dicom_accept_any=False)
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
