"""Fixtures for tests that run radshare's processes against real peers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import free_port
from tests.delivery.test_outbox import SmtpServer


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server on loopback that accepts everything; the processes under test are pointed at it."""
    server = SmtpServer(free_port())
    server.start()
    yield server
    server.stop()
