"""The notice to a sender whose logins were blocked by wrong passwords (docs/security.md A26)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from radshare.delivery.content import login_locked_email
from radshare.organisations.services import LockScope

UNTIL = datetime(2026, 3, 9, 13, 5, tzinfo=UTC)  # 14:05 in Amsterdam


@pytest.mark.parametrize("scope", list(LockScope))
def test_the_notice_names_account_address_and_end_and_says_what_to_do(scope: LockScope) -> None:
    mail = login_locked_email("alice", "203.0.113.5", UNTIL, scope, "en")
    for part in (mail.text, mail.html):
        assert "alice" in part
        assert "203.0.113.5" in part
        assert "14:05" in part
        assert "9 March 2026" in part
        assert "administrator" in part
    assert ("slowed down" in mail.subject) == (scope == LockScope.ACCOUNT)


def test_the_three_kinds_of_lock_are_told_apart() -> None:
    texts = {login_locked_email("alice", "203.0.113.5", UNTIL, scope, "en").text for scope in LockScope}
    assert len(texts) == 3  # the address cap alone is no one account's lock, so it is never sent


def test_the_notice_follows_the_language_given() -> None:
    mail = login_locked_email("alice", "203.0.113.5", UNTIL, LockScope.ACCOUNT_AND_ADDRESS, "nl")
    assert "9 maart 2026" in mail.text


def test_the_html_escapes_the_username() -> None:
    mail = login_locked_email("<b>alice</b>", "203.0.113.5", UNTIL, LockScope.DEVICE, "en")
    assert "<b>" not in mail.html
    assert "&lt;b&gt;alice&lt;/b&gt;" in mail.html
