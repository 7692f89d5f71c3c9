"""A recipient's session is written when something changed, not on every page and image (docs/architecture.md
"Sessions"), while the idle timeout still ends it after 30 minutes, at most a minute later (docs/security.md A6)."""

from __future__ import annotations

import datetime as dt
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from radshare.core.sessions import SLIDE_EVERY
from radshare.imaging.models import InstanceRender
from radshare.recipients import session
from tests.recipients.conftest import Recipient

pytestmark = pytest.mark.django_db

SESSION_TABLE = Session._meta.db_table


def session_writes(queries: CaptureQueriesContext) -> list[str]:
    return [
        q["sql"]
        for q in queries.captured_queries
        if SESSION_TABLE in q["sql"] and not q["sql"].lstrip().upper().startswith("SELECT")
    ]


def pages(recipient: Recipient) -> list[str]:
    """The study list, a study in the viewer and one of its preview images."""
    study = recipient.studies[0]
    render = InstanceRender.objects.filter(instance__series__study=study).values_list("pk", flat=True)[0]
    return [
        reverse("recipients:studies"),
        reverse("viewer:study", args=[study.pk]),
        reverse("viewer:image", args=[render, 0, "preview"]),
    ]


def get(client: Client, url: str) -> int:
    return int(client.get(url).status_code)


def stored_expiry(client: Client) -> dt.datetime:
    return Session.objects.get(session_key=client.cookies[settings.SESSION_COOKIE_NAME].value).expire_date


def test_pages_and_images_within_a_minute_write_no_session_row(recipient: Recipient) -> None:
    client = recipient.client
    urls = pages(recipient)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        for url in urls:
            assert get(client, url) == 200  # the session's first requests: "seen" is fresh
        clock.shift(SLIDE_EVERY - timedelta(seconds=5))
        with CaptureQueriesContext(connection) as queries:
            for url in urls * 3:
                assert get(client, url) == 200
        assert session_writes(queries) == []
        assert all(
            settings.SESSION_COOKIE_NAME not in client.get(url).cookies for url in urls
        )  # no new cookie

        # Past the minute, the next request writes "seen" once; the ones right after it write nothing again.
        clock.shift(timedelta(seconds=10))
        with CaptureQueriesContext(connection) as queries:
            assert get(client, urls[2]) == 200
        assert len(session_writes(queries)) == 1
        assert client.session[session.KEY]["seen"] == pytest.approx(timezone.now().timestamp())
        assert stored_expiry(client) == timezone.now() + session.IDLE_ENDS
        with CaptureQueriesContext(connection) as queries:
            for url in urls:
                assert get(client, url) == 200
        assert session_writes(queries) == []


def test_the_idle_timeout_ends_the_session_after_30_minutes_at_most_one_later(recipient: Recipient) -> None:
    client = recipient.client
    studies, image = pages(recipient)[0], pages(recipient)[2]
    with time_machine.travel(timezone.now(), tick=False) as clock:
        assert get(client, studies) == 200
        # Active again 50 s later: within the minute, so "seen" is not written and lags the real activity ...
        clock.shift(timedelta(seconds=50))
        assert get(client, image) == 200
        # ... yet 30 minutes after that last activity the session still works: never earlier than 30 minutes.
        clock.shift(session.IDLE)
        assert get(client, studies) == 200
        # 30 minutes of nothing after that request, plus less than the minute of slack: still in.
        clock.shift(session.IDLE + SLIDE_EVERY - timedelta(seconds=1))
        assert get(client, image) == 200
        # Idle for 30 minutes and one more: ended, for pages and images alike.
        clock.shift(session.IDLE_ENDS + timedelta(seconds=1))
        response = client.get(studies)
        assert response.status_code == 302
        assert response["Location"] == reverse("recipients:start")
        assert get(client, image) == 302
        assert session.KEY not in client.session


def test_the_session_row_outlives_the_idle_check_until_the_page_says_it_timed_out(
    recipient: Recipient,
) -> None:
    """The row and cookie expire with the idle check (``IDLE_ENDS``), so the start page can still tell a timeout."""
    client = recipient.client
    with time_machine.travel(timezone.now(), tick=False) as clock:
        clock.shift(SLIDE_EVERY + timedelta(seconds=1))
        assert get(client, pages(recipient)[0]) == 200  # writes "seen" and the recipient's expiry
        assert stored_expiry(client) == timezone.now() + session.IDLE_ENDS
        assert client.session.get_expiry_age() == int(session.IDLE_ENDS.total_seconds())
