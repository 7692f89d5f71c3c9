"""Sessions that write only when something changed (docs/architecture.md "Sessions", "Performance budget").

Django's ``SESSION_SAVE_EVERY_REQUEST`` writes the session row on every request, to slide its expiry: a write
transaction (with an fsync on SQLite) for each page and each preview image of the viewer. Here a session is saved
when its data changed, or when its stored expiry has fallen more than ``SLIDE_EVERY`` behind the expiry a save
would give it now. So a session still slides (a sender's 8 idle hours, a recipient's 30 minutes,
docs/security.md A6), with at most a minute of slack, and a request that changes nothing writes nothing.

Only a request that reads the session can slide it (a static file, served before the session middleware, never
does).

``SESSION_ENGINE = "radshare.core.sessions"`` (this module's ``SessionStore``) and ``SessionMiddleware`` in
place of Django's, with ``SESSION_SAVE_EVERY_REQUEST = False``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.sessions.backends import db
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

# A session's expiry is written again once it lags this much behind (the slack of every idle timeout).
SLIDE_EVERY = dt.timedelta(minutes=1)


class SessionStore(db.SessionStore):
    """Django's database sessions, remembering the expiry of the row they were read from."""

    stored_expiry: dt.datetime | None = None

    # Django's hooks for reading the row (django-stubs does not declare them).
    def _get_session_from_db(self) -> Any:
        row = super()._get_session_from_db()  # type: ignore[misc]
        self.stored_expiry = row.expire_date if row is not None else None
        return row

    async def _aget_session_from_db(self) -> Any:
        row = await super()._aget_session_from_db()  # type: ignore[misc]
        self.stored_expiry = row.expire_date if row is not None else None
        return row

    def expiry_lags(self) -> bool:
        """The session was read from its row, and a save now would move the row's expiry on by more than
        ``SLIDE_EVERY``."""
        if self.stored_expiry is None or not self.accessed:
            return False
        wanted = timezone.now() + dt.timedelta(seconds=self.get_expiry_age())
        return wanted - self.stored_expiry > SLIDE_EVERY


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's, saving the session when it changed or its expiry lags (``SessionStore.expiry_lags``)."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        session = getattr(request, "session", None)
        if isinstance(session, SessionStore) and not session.modified and session.expiry_lags():
            session.modified = True
        return super().process_response(request, response)
