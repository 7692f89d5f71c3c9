"""The recipient's session (docs/security.md A6, docs/architecture.md "Sessions"): bound to one share, with
idle and absolute
timeouts that never reach beyond the share's end. Expiry, revocation and locks are checked on every request (A7).

The session holds only the share id, the login stage and two timestamps: never the code, a date or a number.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.shortcuts import redirect
from django.utils import timezone

from radshare.audit.actions import Action
from radshare.audit.services import ActorType, record
from radshare.shares.models import Share

KEY = "recipient"
IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=12)


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
        "stage": Stage.BIRTH_DATE,
        "started": now.timestamp(),
        "seen": now.timestamp(),
    }
    request.session.set_expiry(min(IDLE, share.expires_at - now))


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
    ends here. Does not touch the idle timer (``touch`` does, once the share is known to be usable)."""
    state = request.session.get(KEY)
    if not isinstance(state, dict):
        return None
    now = timezone.now().timestamp()
    if (
        now - float(state["seen"]) > IDLE.total_seconds()
        or now - float(state["started"]) > ABSOLUTE.total_seconds()
    ):
        end(request)
        return None
    return state


def touch(request: HttpRequest, share: Share) -> None:
    """The recipient did something: the idle timer starts again (and the cookie never outlives the share)."""
    now = timezone.now()
    state = dict(request.session[KEY])
    state["seen"] = now.timestamp()
    request.session[KEY] = state
    request.session.set_expiry(min(IDLE, share.expires_at - now))


def session_share(request: HttpRequest, stage: str | None = None) -> Share | None:
    """The share this session is at ``stage`` of (any stage when None), or None when the session has none, timed
    out, or the share can no longer be opened. Touches the idle timer."""
    state = current(request)
    if state is None or (stage is not None and state.get("stage") != stage):
        return None
    share = Share.objects.select_related("organisation").filter(pk=state["share"]).first()
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
            return _to_start(request)
        return view(request, share, *args, **kwargs)

    return wrapper


def _to_start(request: HttpRequest) -> HttpResponseRedirect:
    return redirect("recipients:start")


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
