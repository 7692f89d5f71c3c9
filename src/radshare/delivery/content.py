"""What each outbound message says: one function per message, its words in a template folder named after it,
``templates/delivery/<message>/`` (``subject.txt``, ``body.txt`` and, for e-mail, ``body.html``):

- ``share_email``: the recipient's e-mail with the link (``share_email/``);
- ``sms_code_text``: the recipient's SMS with the login code (``sms_code/``);
- ``share_opened_email``, ``share_locked_email``, ``share_revoked_email``: the notices to the sender who made a
  share (``share_opened/``, ``share_locked/``, ``share_revoked/``);
- ``login_locked_email``: the notice that wrong passwords blocked logins to a sender's account (``login_locked/``).

It also owns ``share_texts``, the translated sentences the share e-mail and the letter (``letter.py``) share.

docs/requirements.md S2.5/S2.7, docs/security.md A20: the recipient's texts name the organisation, give the link
and the steps, and (e-mail only) the last 3 digits of the patient's BSN. Nothing else about the patient or the
studies goes into them; that is why the builders below are given the share and read only its organisation,
language, recipient type, expiry and those 3 digits, and why the templates get those texts, not the share.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import formats, timezone, translation
from django.utils.translation import gettext, ngettext

from radshare.organisations.services import LockScope
from radshare.shares.codes import format_code, share_url
from radshare.shares.models import Share

SMS_CODE_VALID_MINUTES = 5  # docs/security.md A4; named in the steps
SMS_MAX_CHARS = 160  # one GSM-7 segment

Medium = Literal["email", "letter"]


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class Contact:
    label: str
    value: str
    href: str  # "" when the value is not linked


@dataclass(frozen=True)
class ShareTexts:
    """The texts of the e-mail and the letter, translated into the share's language."""

    language: str
    organisation: str
    contacts: tuple[Contact, ...]
    url: str
    code: str  # XXXX-XXXX-XXXX
    start_url: str
    title: str
    greeting: str
    intro: str
    needs: tuple[str, ...]
    steps: tuple[str, ...]
    code_fallback: str
    expiry: str
    keep: str
    security: str
    questions: str
    confidential: str


def one_line(text: str) -> str:
    """Organisation names end up in subjects and headings: no line breaks, no runs of spaces."""
    return " ".join(text.split())


def _local(moment: datetime) -> datetime:
    return timezone.localtime(moment, ZoneInfo(settings.TIME_ZONE))


def expiry_text(share: Share, language: str) -> str:
    """The last day the link works, in the organisation's time zone: "9 December 2026" / "9 december 2026"."""
    with translation.override(language):
        return formats.date_format(_local(share.expires_at), "j F Y")


def expiry_time_text(share: Share) -> str:
    """The time of day the link stops working, 24-hour clock (the same in both languages)."""
    return _local(share.expires_at).strftime("%H:%M")


def contacts(share: Share) -> tuple[Contact, ...]:
    """The organisation's contact details that are filled in, with links for e-mail and web page."""
    org = share.organisation
    found: list[Contact] = []
    if org.contact_phone.strip():
        found.append(Contact(gettext("Phone"), one_line(org.contact_phone), ""))
    if org.contact_email.strip():
        found.append(
            Contact(gettext("E-mail"), org.contact_email.strip(), f"mailto:{org.contact_email.strip()}")
        )
    if org.contact_url.strip():
        found.append(Contact(gettext("Web page"), org.contact_url.strip(), org.contact_url.strip()))
    return tuple(found)


def share_texts(share: Share, code: str, medium: Medium) -> ShareTexts:
    """Everything the e-mail (``medium="email"``) or the letter says, in ``share.language``."""
    with translation.override(share.language):
        return _share_texts(share, code, medium)


def _share_texts(share: Share, code: str, medium: Medium) -> ShareTexts:
    """``share_texts`` in the active language: who it is for, the steps, the expiry, and the fixed sentences."""
    org = one_line(share.organisation.name)
    patient = share.recipient_type != Share.RecipientType.CARE_PROVIDER
    audience = _onward_texts(org, share.passed_on_by) if share.is_onward else _audience_texts(org, patient)
    expiry, keep = _expiry_texts(share, org, patient)
    start_url = settings.RADSHARE.base_url
    return ShareTexts(
        language=share.language,
        organisation=org,
        contacts=contacts(share),
        url=share_url(code),
        code=format_code(code),
        start_url=start_url,
        title=audience.title,
        greeting=audience.greeting,
        intro=audience.intro,
        needs=audience.needs,
        steps=_steps(patient, medium),
        code_fallback=gettext("If the link does not open, go to %(start)s and type this code:")
        % {"start": start_url},
        expiry=expiry,
        keep=keep,
        security=gettext(
            "Three things are needed to open the images: this link, the date of birth, and the code sent by "
            "SMS to the registered phone. So a link that reaches the wrong person gives no access."
        ),
        questions=gettext(
            "Do you have questions about these images or this link? Please contact %(organisation)s."
        )
        % {"organisation": org},
        confidential=(
            gettext("This e-mail gives access to medical images. Please keep it to yourself.")
            if medium == "email"
            else gettext("This letter gives access to medical images. Please keep it in a safe place.")
        ),
    )


@dataclass(frozen=True)
class _Audience:
    """The sentences that differ between a patient and a care provider, before the steps."""

    title: str
    greeting: str
    intro: str
    needs: tuple[str, ...]


def _audience_texts(organisation: str, patient: bool) -> _Audience:
    """Title, greeting, introduction and what the recipient needs: for the patient, or for their care provider."""
    values = {"organisation": organisation}
    phone = (
        gettext(
            "The phone with the number that %(organisation)s registered for these images: a code is sent to it "
            "by text message (SMS)."
        )
        % values
    )
    if patient:
        return _Audience(
            title=gettext("Your images from %(organisation)s") % values,
            greeting=gettext("Dear Sir or Madam,"),
            intro=gettext(
                "%(organisation)s has shared medical images with you. You can look at them in your web browser "
                "and save a copy."
            )
            % values,
            needs=(gettext("Your date of birth."), phone),
        )
    return _Audience(
        title=gettext("Images of your patient from %(organisation)s") % values,
        greeting=gettext("Dear colleague,"),
        intro=gettext(
            "%(organisation)s has shared medical images of one of your patients with you, with the patient's "
            "consent."
        )
        % values,
        needs=(gettext("Your patient's date of birth."), phone),
    )


def _onward_texts(organisation: str, name: str) -> _Audience:
    """docs/architecture.md "Onward shares": the patient passed their share on to a care provider. Who passed it on
    is the name the patient typed (never a name from the images), and where the images come from."""
    values = {"organisation": organisation, "name": one_line(name) or "?"}
    return _Audience(
        title=gettext("Images of %(organisation)s passed on to you by a patient") % values,
        greeting=gettext("Dear colleague,"),
        intro=gettext(
            "%(name)s, a patient of %(organisation)s, has passed on their medical images to you. The name is as "
            "the patient typed it."
        )
        % values,
        needs=(
            gettext("The patient's date of birth: ask %(name)s for it.") % values,
            gettext(
                "The phone with the number the patient gave for you: a code is sent to it by text message (SMS)."
            ),
        ),
    )


def _steps(patient: bool, medium: Medium) -> tuple[str, ...]:
    """How to open the images: the link (or the QR code), the date of birth, the SMS code, what comes next."""
    if medium == "email":
        first = gettext("Open the link in this e-mail.")
    elif settings.RADSHARE.download_on_mobile:
        first = gettext(
            "Scan the QR code with the camera of your phone, or type the link into the address bar of your web "
            "browser."
        )
    else:
        # A letter is read on paper and its QR code scanned with a phone, where downloading does not work.
        first = gettext(
            "Scan the QR code with the camera of your phone to look at the images, or type the link into the "
            "address bar of your web browser. To download the images you need a computer: type the link there."
        )
    if patient:
        dob = gettext("Accept the terms of use and enter your date of birth.")
        last = gettext(
            "You now see your images. Choose View to look at them in your browser, or Download to save a copy: "
            "as JPEG (ordinary pictures, for yourself) or as DICOM (the original files, for another care "
            "provider)."
        )
    else:
        dob = gettext("Accept the terms of use and enter your patient's date of birth.")
        last = gettext(
            "You now see the list of studies. Choose Download and then DICOM to get the original images, and "
            "open them in a DICOM viewer or import them into your PACS. View shows the images in your browser."
        )
    sms = ngettext(
        "You receive a text message (SMS) with a 6-digit code. Enter this code; it is valid for %(minutes)d "
        "minute.",
        "You receive a text message (SMS) with a 6-digit code. Enter this code; it is valid for %(minutes)d "
        "minutes.",
        SMS_CODE_VALID_MINUTES,
    ) % {"minutes": SMS_CODE_VALID_MINUTES}
    return (first, dob, sms, last)


def _expiry_texts(share: Share, organisation: str, patient: bool) -> tuple[str, str]:
    """Until when the link works, and the advice to download before then."""
    expiry = gettext(
        "The link works until %(date)s at %(time)s. After that, ask %(organisation)s for a new link if you "
        "still need the images."
    ) % {
        "date": expiry_text(share, share.language),
        "time": expiry_time_text(share),
        "organisation": organisation,
    }
    keep = (
        gettext("Would you like to keep the images? Download them before that date.")
        if patient
        else gettext("Download the images before that date if you need to keep them.")
    )
    if not settings.RADSHARE.download_on_mobile:
        keep += " " + gettext("Downloading works on a computer, not on a phone or tablet.")
    return expiry, keep


def _bsn_texts(share: Share, organisation: str) -> tuple[str, str]:
    """The BSN line and the check it allows; e-mail only (docs/requirements.md S2.5)."""
    digits = share.patient.bsn_last3 if share.patient is not None else ""
    if not digits:
        return gettext("Last 3 digits of the patient's BSN (citizen service number): unknown"), ""
    return (
        gettext("Last 3 digits of the patient's BSN (citizen service number): %(digits)s")
        % {"digits": digits},
        gettext(
            "With these digits you can check that this e-mail is about the right person. If they do not match, "
            "do not use the link and let %(organisation)s know."
        )
        % {"organisation": organisation},
    )


# --- Rendering a message's templates --------------------------------------------------------------------


def _render(message: str, part: str, context: Mapping[str, object]) -> str:
    """One part (``subject.txt``, ``body.txt``, ``body.html``) of ``templates/delivery/<message>/``, rendered in
    the active language."""
    return render_to_string(f"delivery/{message}/{part}", dict(context))


def _subject(message: str, context: Mapping[str, object]) -> str:
    """A subject is one line, whatever the template's or the organisation name's line breaks."""
    return one_line(_render(message, "subject.txt", context))


def _plain(text: str) -> str:
    """Template whitespace out of a plain-text part: no trailing spaces, at most one empty line in a row, none
    at either end."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    tidy: list[str] = []
    for line in lines:
        if line or (tidy and tidy[-1]):
            tidy.append(line)
    return "\n".join(tidy)


# --- To recipients ------------------------------------------------------------------------------------------


def share_email(share: Share, code: str) -> RenderedEmail:
    """The notification e-mail to the recipient, in share.language, for share.recipient_type."""
    with translation.override(share.language):
        texts = _share_texts(share, code, "email")
        care_provider = share.recipient_type == Share.RecipientType.CARE_PROVIDER
        subject = _subject(
            "share_email", {"t": texts, "care_provider": care_provider, "onward": share.is_onward}
        )
        bsn, bsn_check = _bsn_texts(share, texts.organisation)
        context = {"t": texts, "subject": subject, "bsn": bsn, "bsn_check": bsn_check}
        text = _plain(_render("share_email", "body.txt", context)) + "\n"
        html = _render("share_email", "body.html", context)
    return RenderedEmail(subject=subject, text=text, html=html)


# GSM 03.38: the basic set counts one, the extension set two (escape + character); anything else would turn the
# SMS into UCS-2, with 70 characters a segment.
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION = frozenset("^{}\\[~]|€")
# Typographic quotes, dashes and the ellipsis, and a tab: their plain look-alikes.
_GSM7_SUBSTITUTES = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2013": "-",
    "\u2014": "-",
    "\u2026": "...",
    "\t": " ",
}


def _gsm7(text: str) -> str:
    """``text`` in GSM-7 characters: typographic punctuation made plain, accents dropped where GSM-7 has none."""
    out: list[str] = []
    for char in text:
        if char in _GSM7_BASIC or char in _GSM7_EXTENSION:
            out.append(char)
        elif char in _GSM7_SUBSTITUTES:
            out.append(_GSM7_SUBSTITUTES[char])
        else:
            plain = "".join(
                c for c in unicodedata.normalize("NFKD", char) if c in _GSM7_BASIC or c in _GSM7_EXTENSION
            )
            out.append(plain or "?")
    return "".join(out)


def gsm7_length(text: str) -> int:
    """Septets ``text`` takes in an SMS (extension characters take two)."""
    return sum(2 if c in _GSM7_EXTENSION else 1 for c in text)


def sms_code_text(
    organisation_name: str, code: str, minutes: int, language: str, *, onward: bool = False
) -> str:
    """The SMS with the recipient's login code (``sms_code/body.txt``): the code, how long it is valid and the
    organisation's name, nothing else (A4, A20); for an onward share, that a patient passed the images on
    (docs/architecture.md "Onward shares"), without a name. One GSM-7 segment: a long organisation name is
    shortened to fit."""
    with translation.override(language):

        def message(name: str) -> str:
            context = {"code": code, "organisation": name, "minutes": minutes, "onward": onward}
            return _gsm7(_plain(_render("sms_code", "body.txt", context)))

        name = _gsm7(one_line(organisation_name))
        room = SMS_MAX_CHARS - gsm7_length(message(""))
        if gsm7_length(name) > room:
            name = name[: max(room - 3, 0)]
            while gsm7_length(name) > max(room - 3, 0):
                name = name[:-1]
            name = name.rstrip() + "..."
        return message(name)


# --- To senders ---------------------------------------------------------------------------------------------


def share_opened_email(share_id: int, url: str, language: str) -> RenderedEmail:
    """docs/requirements.md B6.7: the recipient opened share ``share_id`` for the first time (``share_opened/``).
    The share's number and ``url``, the link to its page, are all it says about the share."""
    return _share_notice("share_opened", share_id, url, language)


def share_locked_email(share_id: int, url: str, language: str) -> RenderedEmail:
    """docs/security.md A3: wrong attempts locked share ``share_id`` (``share_locked/``); what the sender can do.
    The share's number and ``url``, the link to its page, are all it says about the share."""
    return _share_notice("share_locked", share_id, url, language)


def share_revoked_email(share_id: int, url: str, language: str) -> RenderedEmail:
    """docs/architecture.md "Corrections from the PACS": share ``share_id`` was revoked because one of its studies
    moved to another patient (``share_revoked/``). The share's number and ``url``, the link to its page, are all it
    says about the share: no patient, old or new."""
    return _share_notice("share_revoked", share_id, url, language)


def _share_notice(message: str, share_id: int, url: str, language: str) -> RenderedEmail:
    """A notice about a share to its sender."""
    with translation.override(language):
        return _notice(message, {"id": share_id, "url": url})


def _notice(message: str, context: Mapping[str, object], end: str = "") -> RenderedEmail:
    """A notice to a sender, in the active language. The catalogue holds each notice's body as one text,
    paragraphs and all, so ``body.html`` is that text's paragraphs (with a web address as a link); ``end`` closes
    the plain text."""
    text = _plain(_render(message, "body.txt", context))
    html = _render(message, "body.html", {"text": text}).strip()
    return RenderedEmail(subject=_subject(message, context), text=text + end, html=html)


def _when(moment: datetime) -> dict[str, str]:
    """A moment as a notice gives it: its date and time of day where the organisation is."""
    local = _local(moment)
    return {"date": formats.date_format(local, "j F Y"), "time": local.strftime("%H:%M")}


def login_locked_email(
    username: str, address: str, until: datetime, scope: str, language: str
) -> RenderedEmail:
    """The notice that wrong passwords blocked (or slowed down) logins to the account ``username``
    (docs/security.md A26; ``login_locked/``): from where, until when, and what to do. It holds no password and
    no other secret."""
    with translation.override(language):
        context = {
            "slowed_down": scope == LockScope.ACCOUNT,
            "device": scope == LockScope.DEVICE,
            "username": username,
            "address": address or "?",
            **_when(until),
        }
        return _notice("login_locked", context, end="\n")


def email_changed_email(username: str, cleared: bool, when: datetime, language: str) -> RenderedEmail:
    """To a sender's old address: the account's notice address was changed or removed (docs/security.md A26;
    ``email_changed/``). It names neither the new address nor anything else of the account."""
    with translation.override(language):
        return _notice("email_changed", {"cleared": cleared, "username": username, **_when(when)}, end="\n")
