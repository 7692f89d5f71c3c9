"""The recipient's session (docs/security.md A6, docs/architecture.md "Sessions"): bound to one share, with
idle and absolute timeouts; it gives no access past the share's end. Expiry, revocation and locks are checked on every
request (A7).

The session holds only the share id, its language, the login stage and two timestamps: never the code, a date or a
number. When the share ends during the session, the session ends too and keeps only what the page that says so
needs (``ENDED``): the organisation, to be contacted, and the share's language.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect
from django.utils import timezone

from radshare.audit.actions import Action
from radshare.audit.services import ActorType, record
from radshare.core.sessions import SLIDE_EVERY
from radshare.organisations.models import Organisation
from radshare.shares.models import Share

KEY = "recipient"
ENDED = "recipient_ended"  # the share ended during this session: {"organisation": id, "language": code}
IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=12)
# "seen" is written at most once a SLIDE_EVERY (no write per page or image, core/sessions.py): a session ends after
# IDLE without activity, at most SLIDE_EVERY later, never earlier; its row and cookie live as long.
IDLE_ENDS = IDLE + SLIDE_EVERY
# A cookie without data that outlives the session: "someone logged in here", so that the start page can say the
# session timed out instead of silently asking for a code again (set at login, removed at logout and once said).
WAS_IN = "radshare-recipient-was-in"


class Stage:
    BIRTH_DATE = "birth_date"  # the code was right: terms and date of birth next
    SMS_CODE = "sms_code"  # the date was right: the SMS code next
    IN = "in"  # logged in: the studies


def open_share(request: HttpRequest, share: Share) -> None:
    """A new session for this share alone (no fixation; a sender's session in this browser ends too)."""
    request.session.flush()
    now = timezone.now()
    request.session[KEY] = {
        "share": share.pk,
        "language": share.language,  # the recipient's pages follow it (docs/requirements.md S4.10)
        "stage": Stage.BIRTH_DATE,
        "started": now.timestamp(),
        "seen": now.timestamp(),
    }
    request.session.set_expiry(IDLE_ENDS)


def advance(request: HttpRequest, stage: str) -> None:
    state = dict(request.session[KEY])
    if stage == Stage.IN:
        request.session.cycle_key()  # a new session id at login (A6)
        state["started"] = timezone.now().timestamp()
    state["stage"] = stage
    request.session[KEY] = state


def session_hash(request: HttpRequest) -> str:
    """What rows bound to this browser session (SMS codes, download grants) store: never the session key."""
    key = request.session.session_key or ""
    return hashlib.sha256(b"radshare-recipient-session:" + key.encode()).hexdigest()


def remember(request: HttpRequest, **facts: Any) -> None:
    """Keep a fact about this login in the session (e.g. that the lock was shown)."""
    request.session[KEY] = {**request.session[KEY], **facts}


def end(request: HttpRequest) -> None:
    request.session.flush()


def current(request: HttpRequest) -> dict[str, Any] | None:
    """The session's recipient state at any stage, or None when it has none or timed out: 30 minutes idle from the
    first step on, not only once logged in (docs/security.md A6, A27), and 12 hours in all. A timed-out session
    ends here. Does not touch the idle timer (``touch`` does, once the share is known to be usable). "seen" is at
    most ``SLIDE_EVERY`` old (``touch``), so the session ends between 30 and 31 minutes after the last activity."""
    state = request.session.get(KEY)
    if not isinstance(state, dict):
        return None
    now = timezone.now().timestamp()
    if (
        now - float(state["seen"]) > IDLE_ENDS.total_seconds()
        or now - float(state["started"]) > ABSOLUTE.total_seconds()
    ):
        end(request)
        return None
    return state


def _was_in_cookie() -> str:
    return f"__Host-{WAS_IN}" if settings.SESSION_COOKIE_SECURE else WAS_IN


def mark_logged_in[R: HttpResponseBase](response: R) -> R:
    """The login is complete: remember, beyond the session, that this browser had one (see ``WAS_IN``)."""
    response.set_cookie(
        _was_in_cookie(),
        "1",
        max_age=int(ABSOLUTE.total_seconds()),
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )
    return response


def forget_logged_in[R: HttpResponseBase](response: R) -> R:
    response.delete_cookie(_was_in_cookie(), samesite="Lax")
    return response


def timed_out(request: HttpRequest) -> bool:
    """This browser was logged in, and its session has since ended by itself (30 minutes idle or 12 hours in all):
    not by logging out, and not because the share ended (that has its own page)."""
    was_in = request.COOKIES.get(_was_in_cookie()) == "1"
    return was_in and current(request) is None and ENDED not in request.session


def touch(request: HttpRequest, share: Share) -> None:
    """The recipient did something: the idle timer starts again. Written at most once a ``SLIDE_EVERY``: a page or
    image within a minute of the last write changes nothing, so the request writes no session row
    (core/sessions.py). The cookie may outlive the share by up to IDLE_ENDS: not to give access (every request
    checks the share, A7), but so that the next page can say the link has ended instead of asking for a code."""
    now = timezone.now().timestamp()
    if now - float(request.session[KEY]["seen"]) < SLIDE_EVERY.total_seconds():
        return
    request.session[KEY] = {**request.session[KEY], "seen": now}
    request.session.set_expiry(IDLE_ENDS)


def share_ended(request: HttpRequest, share: Share) -> None:
    """The session's share ended (expired or revoked) while the session lasted: the session ends, and keeps only
    the organisation and the language for the page that says so (``refusal``, ``ended_organisation``)."""
    end(request)
    request.session[ENDED] = {"organisation": share.organisation_id, "language": share.language}
    request.session.set_expiry(IDLE_ENDS)


def ended_organisation(request: HttpRequest) -> Organisation | None:
    """The organisation of the share that ended during this session; None when none did."""
    ended = request.session.get(ENDED)
    if not isinstance(ended, dict):
        return None
    return Organisation.objects.filter(pk=int(ended.get("organisation", 0))).first()


def language(request: HttpRequest) -> str | None:
    """The language of the session's share (also after it ended); None before a share is known."""
    for key in (KEY, ENDED):
        state = request.session.get(key)
        if isinstance(state, dict) and state.get("language"):
            return str(state["language"])
    return None


def session_share(request: HttpRequest, stage: str | None = None) -> Share | None:
    """The share this session is at ``stage`` of (any stage when None), or None when the session has none, timed
    out, or the share can no longer be opened. Touches the idle timer."""
    state = current(request)
    if state is None or (stage is not None and state.get("stage") != stage):
        return None
    share = Share.objects.select_related("organisation").filter(pk=state["share"]).first()
    if share is not None and not share.is_live():
        share_ended(request, share)
        return None
    if share is None or not share.is_openable():
        end(request)
        return None
    if share.is_locked():
        return None
    touch(request, share)
    return share


def stage_of(request: HttpRequest) -> str | None:
    state = request.session.get(KEY)
    return state.get("stage") if isinstance(state, dict) else None


def recipient_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Logged in as the recipient of a live share; the view gets that share (every query is scoped to it)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        share = session_share(request, Stage.IN)
        if share is None:
            return refusal(request)
        return view(request, share, *args, **kwargs)

    return wrapper


def refusal(request: HttpRequest) -> HttpResponseBase:
    """The answer when ``session_share(request, Stage.IN)`` gave no share (``why_refused``): a page load goes to
    the page that says why; any other request (an image, a script's request) gets the status and a line of JSON
    instead of a redirect to a page it cannot show."""
    page, status, message = why_refused(request)
    if is_page_load(request):
        return redirect(page)
    return JsonResponse({"error": message}, status=status)


def why_refused(request: HttpRequest) -> tuple[str, int, str]:
    """Why ``session_share(request, Stage.IN)`` gave no share, as (page, HTTP status, message): the share ended
    during the session (410: the page names the organisation to contact), it is locked (423), or there is no
    logged-in session (401: the start page)."""
    if ENDED in request.session:
        return "recipients:ended", 410, "this link no longer works"
    state = current(request)
    if state is not None and state.get("stage") == Stage.IN:
        # Logged in, within the timeouts and the share live (session_share ended the session otherwise): locked.
        return "recipients:locked", 423, "this link is locked for now"
    return "recipients:start", 401, "not logged in"


def is_page_load(request: HttpRequest) -> bool:
    """A navigation (a link, the address bar, a reload), by Sec-Fetch-Mode; without it (an older browser, a tool),
    an Accept header that asks for HTML or anything, or none."""
    mode = request.headers.get("sec-fetch-mode")
    if mode:
        return mode == "navigate"
    accept = request.headers.get("accept", "")
    return not accept or "text/html" in accept or accept.strip() == "*/*"


def record_recipient(
    action: Action,
    request: HttpRequest,
    share: Share | None,
    *,
    outcome: str = "success",
    study_uids: Iterable[str] = (),
    **detail: Any,
) -> None:
    """One audit entry for a recipient's action (A16): the share by its id and the login method, never the code;
    on behalf of the sender who shared. ``share`` None: a step before any share is known (an unknown code)."""
    record(
        action,
        outcome=outcome,
        request=request,
        actor_type=ActorType.RECIPIENT,
        actor_label=f"share {share.pk}" if share else "",
        organisation=share.organisation_id if share else None,
        patient=share.patient_id if share else None,
        on_behalf_of=share.created_by_id if share else None,
        study_uids=list(study_uids),
        detail={"share": share.pk if share else None, **detail},
    )
