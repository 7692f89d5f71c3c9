"""The recipient's way in (docs/requirements.md S4.1-S4.4): the code, then terms + date of birth, then an SMS
code, then the
studies. Each step has its own page with one ``<h1>``; the code leaves the URL at once (A2)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from radshare.audit.actions import Action
from radshare.audit.queries import share_visits
from radshare.core.dates import time_zone_place
from radshare.recipients import access, session
from radshare.recipients.access import SmsResult, Step
from radshare.recipients.forms import BirthDateForm, CodeForm, SmsCodeForm
from radshare.recipients.services import refused_on_device, share_studies
from radshare.recipients.session import Stage, recipient_required
from radshare.shares import onward
from radshare.shares.models import Share
from radshare.shares.phones import mask_phone
from radshare.shares.services import mark_opened

NOT_READY = (Share.Status.RETRIEVING, Share.Status.PREPARING, Share.Status.FAILED)


def _page(
    request: HttpRequest, template: str, share: Share | None = None, status: int = 200, **context: Any
) -> HttpResponse:
    context.setdefault("organisation", share.organisation if share else None)
    context["share"] = share
    return render(request, template, context, status=status)


def _throttled(request: HttpRequest) -> HttpResponse:
    return _page(request, "recipients/throttled.html", status=429)


@require_http_methods(["GET", "POST"])
def start(request: HttpRequest) -> HttpResponse:
    """The start page; ``/?code=...`` (the link) and the typed code both land here."""
    typed = request.POST.get("code") if request.method == "POST" else request.GET.get("code")
    if typed is None:
        if session.session_share(request, Stage.IN) is not None:
            return redirect("recipients:studies")
        if not session.timed_out(request):
            return _page(request, "recipients/start.html", form=CodeForm())
        messages.info(
            request,
            _(
                "To protect the images, you were logged out after 30 minutes without activity. Open the link "
                "in the e-mail or letter again, or type its code below."
            ),
        )
        return session.forget_logged_in(_page(request, "recipients/start.html", form=CodeForm()))
    if access.client_throttled(request, Step.CODE):
        return _throttled(request)
    form = CodeForm({"code": typed})
    if request.method == "POST" and not form.is_valid():
        return _page(request, "recipients/start.html", form=form, status=422)
    share = access.find_share(request, typed)
    if share is None:
        return redirect("recipients:invalid")  # the same for unknown, expired and revoked codes (A1)
    session.open_share(request, share)
    return session.forget_logged_in(redirect("recipients:birth_date"))  # the code leaves the URL (A2)


def _pending(request: HttpRequest, stage: str) -> Share | HttpResponse:
    """The session's share at ``stage`` of the login, or where to send the browser instead.

    A locked share is not told apart at the code and date step (docs/security.md A1): its code opens the date
    step like any other, and the lock shows only once a date of birth is submitted (``birth_date``)."""
    state = session.current(request)
    if state is None:
        return redirect("recipients:start")
    share = (
        Share.objects.select_related("organisation", "patient").filter(pk=int(state.get("share", 0))).first()
    )
    if share is None:
        session.end(request)
        return redirect("recipients:invalid")
    if not share.is_live():  # ended since its code was typed: the page says so, and whom to ask
        session.share_ended(request, share)
        return redirect("recipients:ended")
    if share.status in NOT_READY:
        return redirect("recipients:preparing")
    if share.is_locked() and (state.get("stage") != Stage.BIRTH_DATE or state.get("lock_shown")):
        return redirect("recipients:locked")
    if state.get("stage") == Stage.IN:
        return redirect("recipients:studies")
    if state.get("stage") != stage:
        step = "birth_date" if state.get("stage") == Stage.BIRTH_DATE else "sms_code"
        return redirect(f"recipients:{step}")
    session.touch(request, share)
    return share


def _show_lock(request: HttpRequest) -> HttpResponse:
    session.remember(request, lock_shown=True)
    return redirect("recipients:locked")


@require_http_methods(["GET", "POST"])
def birth_date(request: HttpRequest) -> HttpResponse:
    share = _pending(request, Stage.BIRTH_DATE)
    if not isinstance(share, Share):
        return share  # where the browser goes instead
    form = BirthDateForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        if access.client_throttled(request, Step.BIRTH_DATE):
            return _throttled(request)
        if share.is_locked():  # the date is not even compared: a locked share cannot be probed
            access.refuse_locked(request, share)
            return _show_lock(request)
        check = access.check_birth_date(request, share, form.cleaned_data["birth_date"])
        if check.locked:
            return _show_lock(request)
        if check.ok:
            session.advance(request, Stage.SMS_CODE)
            if not access.send_sms_code(request, share):
                messages.warning(
                    request, _("A code was sent a moment ago. Use that one, or wait a few minutes.")
                )
            return redirect("recipients:sms_code")
        form.add_error("birth_date", _wrong_birth_date(form.cleaned_data["birth_date"], check.tries_left))
    return _page(
        request, "recipients/birth_date.html", share, status=422 if form.errors else 200, form=form, step=1
    )


def _wrong_birth_date(typed: dt.date, tries_left: int) -> str:
    """The date as it was read (so a swapped day and month shows) and the tries left (docs/security.md A3)."""
    return ngettext(
        "This date of birth (%(date)s) does not match. You can try %(n)s more time.",
        "This date of birth (%(date)s) does not match. You can try %(n)s more times.",
        tries_left,
    ) % {"date": date_format(typed, "j F Y"), "n": tries_left}


@require_http_methods(["GET", "POST"])
def sms_code(request: HttpRequest) -> HttpResponse:
    share = _pending(request, Stage.SMS_CODE)
    if not isinstance(share, Share):
        return share  # where the browser goes instead
    form = SmsCodeForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        if access.client_throttled(request, Step.SMS_CODE):
            return _throttled(request)
        check = access.check_sms_code(request, share, form.cleaned_data["code"])
        if check.result == SmsResult.OK:
            session.advance(request, Stage.IN)
            mark_opened(share)
            return session.mark_logged_in(redirect("recipients:studies"))
        if check.result == SmsResult.LOCKED:
            return redirect("recipients:locked")
        wrong = check.result == SmsResult.WRONG
        form.add_error("code", _wrong_sms_code(check, share) if wrong else str(SMS_MESSAGES[check.result]))
    return _page(
        request,
        "recipients/sms_code.html",
        share,
        status=422 if form.errors else 200,
        form=form,
        step=2,
        phone=mask_phone(share.phone),
        minutes=int(access.SMS_CODE_VALID.total_seconds() // 60),
    )


def _wrong_sms_code(check: access.SmsCheck, share: Share) -> str:
    """How many tries are left, and what comes after them: a new code, or a lock only the sender lifts (A4)."""
    if check.share_tries_left <= check.code_tries_left:
        n = check.share_tries_left
        return ngettext(
            "This code is not right. You can try %(n)s more time; after that the link is locked until %(name)s "
            "unlocks it.",
            "This code is not right. You can try %(n)s more times; after that the link is locked until %(name)s "
            "unlocks it.",
            n,
        ) % {"n": n, "name": share.organisation.name}
    n = check.code_tries_left
    return ngettext(
        "This code is not right. Check the SMS and try again: you can try this code %(n)s more time.",
        "This code is not right. Check the SMS and try again: you can try this code %(n)s more times.",
        n,
    ) % {"n": n}


SMS_MESSAGES = {
    SmsResult.EXPIRED: gettext_lazy(
        "This code has expired (a code works 5 minutes). Ask for a new code below."
    ),
    SmsResult.USED: gettext_lazy("This code has been used already. Ask for a new code below."),
    SmsResult.TOO_MANY: gettext_lazy("Too many wrong tries with this code. Ask for a new code below."),
}


@require_POST
def new_sms_code(request: HttpRequest) -> HttpResponse:
    share = _pending(request, Stage.SMS_CODE)
    if not isinstance(share, Share):
        return share  # where the browser goes instead
    if access.send_sms_code(request, share):
        messages.success(request, _("A new code is on its way. It can take a minute to arrive."))
    else:
        messages.error(
            request,
            _("You asked for several codes in a short time. Wait 15 minutes, then ask for a new one."),
        )
    return redirect("recipients:sms_code")


@require_safe
def invalid(request: HttpRequest) -> HttpResponse:
    return _page(request, "recipients/invalid.html", days=settings.RADSHARE.share_validity_days)


@require_safe
def ended(request: HttpRequest) -> HttpResponse:
    """The share ended (expired or revoked) while its session lasted: say so without telling which, and name the
    organisation to ask for a new share (docs/requirements.md S4.9; docs/security.md A7)."""
    organisation = session.ended_organisation(request)
    if organisation is None:
        return redirect("recipients:start")
    page = _page(
        request,
        "recipients/ended.html",
        organisation=organisation,
        days=settings.RADSHARE.share_validity_days,
    )
    return session.forget_logged_in(page)


def _session_share_any_state(request: HttpRequest) -> Share | None:
    state = session.current(request)
    if state is None:
        return None
    return Share.objects.select_related("organisation").filter(pk=int(state.get("share", 0))).first()


@require_safe
def locked(request: HttpRequest) -> HttpResponse:
    share = _session_share_any_state(request)
    if share is None or not share.is_locked() or share.has_ended:
        return redirect("recipients:start")
    state = session.current(request) or {}
    if state.get("stage") == Stage.BIRTH_DATE and not state.get("lock_shown"):
        return redirect("recipients:birth_date")  # not before a date of birth was given (A1)
    held = share.is_held
    return _page(
        request, "recipients/locked.html", share, held=held, until=share.locked_until, zone=time_zone_place()
    )


@require_safe
def preparing(request: HttpRequest) -> HttpResponse:
    share = _session_share_any_state(request)
    if share is None or share.has_ended:
        return redirect("recipients:start")
    if share.status not in NOT_READY:
        return redirect("recipients:birth_date")
    return _page(request, "recipients/preparing.html", share, failed=share.status == Share.Status.FAILED)


@require_safe
def terms(request: HttpRequest) -> HttpResponse:
    return _page(request, "recipients/terms.html", _session_share_any_state(request))


@require_POST
def logout(request: HttpRequest) -> HttpResponseRedirect:
    share = session.session_share(request)
    if share is not None:
        session.record_recipient(Action.RECIPIENT_LOGOUT, request, share)
    session.end(request)
    messages.success(request, _("You are logged out."))
    return session.forget_logged_in(redirect("recipients:start"))


@require_safe
@recipient_required
def studies(request: HttpRequest, share: Share) -> HttpResponse:
    shown = share_studies(share)
    session.record_recipient(
        Action.RECIPIENT_STUDIES_LIST, request, share, study_uids=[s.study_instance_uid for s in shown]
    )
    return _page(
        request,
        "recipients/studies.html",
        share,
        logged_in=True,
        studies=shown,
        downloads_offered=not refused_on_device(request),
        care_provider=share.recipient_type == Share.RecipientType.CARE_PROVIDER,
        # Onward sharing (docs/architecture.md "Onward shares"): what this patient passed on, or who passed it on.
        onward_offered=onward.offered(share),
        onward_more=onward.refusal(share) is None,
        onward_shares=onward.onward_shares(share) if onward.offered(share) else [],
        onward_limit=Share.ONWARD_MAX,
        # When and from where this share was opened and downloaded (docs/security.md A19): this share only.
        visits=share_visits(share.organisation_id, share.patient_id, share.pk, share.created_at),
    )
