"""Sessions are saved when they change or when their stored expiry lags a minute (core/sessions.py): a sender's
8 idle hours still slide, without a write per request."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from radshare.core.sessions import SLIDE_EVERY

pytestmark = pytest.mark.django_db

AGE = timedelta(seconds=settings.SESSION_COOKIE_AGE)


def writes(queries: CaptureQueriesContext) -> int:
    table = Session._meta.db_table
    return sum(table in q["sql"] and not q["sql"].lstrip().upper().startswith("SELECT") for q in queries)


def expiry(client: Client) -> Any:
    return Session.objects.get(session_key=client.cookies[settings.SESSION_COOKIE_NAME].value).expire_date


def test_a_senders_session_slides_with_at_most_a_minute_of_slack(sender: Any) -> None:
    client = Client()
    with time_machine.travel(timezone.now(), tick=False) as clock:
        client.force_login(sender)
        assert client.get("/portal/").status_code == 200
        logged_in = timezone.now()
        clock.shift(SLIDE_EVERY - timedelta(seconds=1))
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/portal/").status_code == 200
        assert writes(queries) == 0
        assert expiry(client) == logged_in + AGE

        clock.shift(timedelta(seconds=2))
        with CaptureQueriesContext(connection) as queries:
            response = client.get("/portal/")
        assert response.status_code == 200
        assert writes(queries) == 1
        assert expiry(client) == timezone.now() + AGE
        assert response.cookies[settings.SESSION_COOKIE_NAME]["max-age"] == settings.SESSION_COOKIE_AGE

        # Active every 50 minutes for 10 hours, past the 8 idle hours: still logged in.
        for _ in range(12):
            clock.shift(timedelta(minutes=50))
            assert client.get("/portal/").status_code == 200
        # 8 idle hours and a minute: logged out.
        clock.shift(AGE + SLIDE_EVERY)
        assert client.get("/portal/").status_code == 302
