"""The viewer's tests run as a logged-in recipient: the ``recipient`` fixture of tests/recipients/conftest.py."""

from __future__ import annotations

from tests.recipients.conftest import recipient

__all__ = ["recipient"]
