"""The sender's "send again" and the letter (portal), and the demo outbox (``/dev/outbox/``, demo mode only):
the e-mails and SMS messages radshare sent, newest first, read from the file backends, so one person can walk the
whole flow in a browser on one machine."""

from __future__ import annotations

import email
import email.policy
import json
import re
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST, require_safe

from radshare.audit.actions import Action
from radshare.delivery import services
from radshare.delivery.forms import ResendForm
from radshare.delivery.letter import letter_response
from radshare.organisations.auth import sender_required
from radshare.organisations.models import Organisation
from radshare.shares.services import ShareError
from radshare.shares.views import act_on, actor_of, share_for_sender

MAX_SHOWN = 100
_EML_NAME = re.compile(r"^[A-Za-z0-9._-]+\.eml$")


@dataclass(frozen=True)
class Mail:
    name: str
    to: str
    subject: str
    date: str
    text: str


def _demo_only() -> None:
    if not settings.RADSHARE.demo:
        raise Http404


def _file_path(url: str) -> Path | None:
    parts = urlsplit(url)
    return Path(parts.path) if parts.scheme == "file" else None


def _parse(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)  # noqa: S101 - the default policy makes EmailMessage
    return message


def _body(message: EmailMessage, kind: str) -> str:
    part = message.get_body(preferencelist=(kind,))
    return str(part.get_content()) if part is not None else ""


def _mails(directory: Path | None) -> list[Mail]:
    if directory is None or not directory.is_dir():
        return []
    files = sorted(directory.glob("*.eml"), key=lambda p: (p.stat().st_mtime, p.name), reverse=True)
    mails = []
    for path in files[:MAX_SHOWN]:
        message = _parse(path)
        mails.append(
            Mail(
                path.name,
                str(message["To"]),
                str(message["Subject"]),
                str(message["Date"]),
                _body(message, "plain"),
            )
        )
    return mails


def _sms(path: Path | None) -> list[dict[str, Any]]:
    if path is None or not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()[-MAX_SHOWN:]
    messages = []
    for line in reversed(lines):
        try:
            messages.append(json.loads(line))
        except ValueError:
            continue  # a line being written right now
    return messages


@require_safe
def outbox(request: HttpRequest) -> HttpResponse:
    _demo_only()
    email_dir = _file_path(settings.RADSHARE.email_url)
    sms_file = _file_path(settings.RADSHARE.sms_url)
    return render(
        request,
        "delivery/outbox.html",
        {
            "mails": _mails(email_dir),
            "sms_messages": _sms(sms_file),
            "email_url": settings.RADSHARE.email_url if email_dir is None else "",
            "sms_url": settings.RADSHARE.sms_url if sms_file is None else "",
        },
    )


@require_safe
def outbox_html(request: HttpRequest, name: str) -> HttpResponse:
    """One e-mail's HTML part as the recipient's mail program would show it."""
    _demo_only()
    directory = _file_path(settings.RADSHARE.email_url)
    if directory is None or not _EML_NAME.match(name) or not (directory / name).is_file():
        raise Http404
    response = HttpResponse(_body(_parse(directory / name), "html"), content_type="text/html; charset=utf-8")
    # The e-mail's inline styles need their own policy; nothing in it may run or load anything.
    response["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return response


@require_POST
@sender_required
def share_resend(request: HttpRequest, organisation: Organisation, pk: int) -> HttpResponse:
    share = share_for_sender(request, organisation, pk, Action.PORTAL_SHARE_RESEND)
    form = ResendForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Enter a valid e-mail address."))
        return redirect("shares:detail", share.pk)
    return act_on(
        request, share, services.resend, _("The e-mail will be sent again."), email=form.cleaned_data["email"]
    )


@require_safe
@sender_required
def share_letter(request: HttpRequest, organisation: Organisation, pk: int) -> HttpResponse:
    share = share_for_sender(request, organisation, pk, Action.PORTAL_SHARE_LETTER)
    try:
        return letter_response(share, actor_of(request))
    except ShareError as exc:
        messages.error(request, str(exc.message))
        return redirect("shares:detail", share.pk)
