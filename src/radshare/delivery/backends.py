"""Delivering e-mail and SMS, the way ``RADSHARE_EMAIL_URL`` and ``RADSHARE_SMS_URL`` say.

Each failure is a ``DeliveryError`` that says whether trying again later may help; the outbox (docs/security.md R3)
decides what to do with it. Its reason is shown to senders and written to the log, so it never holds an address,
a phone number, a code or any other part of a message (docs/security.md A21), nor what a server answered (a refusal
often quotes the address).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import http.client
import json
import logging
import os
import re
import smtplib
import socket
import ssl
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit, urlunsplit

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.console import EmailBackend as ConsoleEmailBackend
from django.core.mail.backends.smtp import EmailBackend as SmtpEmailBackend

from radshare.core.config import fill_sms_body, url_flag
from radshare.core.files import fsync_folder

logger = logging.getLogger(__name__)

TIMEOUT = 15  # seconds a mail server or SMS gateway gets to answer
# Django names each mailer; ours are made from RADSHARE_EMAIL_URL, not from settings.MAILERS.
MAILER_ALIAS = "radshare"
CM_HOST = "gw.messaging.cm.com"
CM_PATH = "/v1.0/message"
MAX_ANSWER_BYTES = 64 * 1024  # of a gateway's answer: enough for an error report, not a memory hazard


class DeliveryError(Exception):
    """A message could not be handed over. ``temporary``: the same message may well go through later."""

    def __init__(self, reason: str, *, temporary: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.temporary = temporary


# --- e-mail -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmailMessage:
    to: str
    subject: str
    text: str
    html: str  # sent as multipart/alternative with the text part
    # The full Message-ID header value, <...>; the same on every attempt, so that copies can be told apart.
    message_id: str
    reply_to: str = ""  # the organisation's contact e-mail, when it has one
    language: str = "nl"  # Content-Language


def send_email(message: EmailMessage, url: str | None = None) -> None:
    """Send one e-mail by ``url`` (default ``RADSHARE_EMAIL_URL``); raise ``DeliveryError`` when it fails."""
    parts = urlsplit(settings.RADSHARE.email_url if url is None else url)
    email = _django_message(message)
    if parts.scheme == "file" and parts.path:
        _write_eml(Path(parts.path), message.message_id, email)
    elif parts.scheme == "console":
        ConsoleEmailBackend(alias=MAILER_ALIAS, stream=sys.stdout).send_messages([email])
    elif parts.scheme in {"smtp", "smtps"}:
        _send_smtp(parts, email)
    else:
        raise DeliveryError("RADSHARE_EMAIL_URL is not a valid e-mail URL", temporary=False)
    logger.info("e-mail handed over (Message-ID %s)", message.message_id)


def _django_message(message: EmailMessage) -> EmailMultiAlternatives:
    email = EmailMultiAlternatives(
        subject=message.subject,
        body=message.text,
        from_email=settings.RADSHARE.email_from,
        to=[message.to],
        reply_to=[message.reply_to] if message.reply_to else None,
        # Our own Message-ID, so that a copy sent again after an unclear failure is recognised downstream.
        headers={"Message-ID": message.message_id, "Content-Language": message.language},
    )
    email.attach_alternative(message.html, "text/html")
    try:
        email.message()  # builds every header now: a line break in one is refused here, not halfway a session
    except ValueError:
        raise DeliveryError("the message has an invalid address or header", temporary=False) from None
    return email


def _write_eml(directory: Path, message_id: str, email: EmailMultiAlternatives) -> None:
    """One complete message a file, ``<UTC time>-<message id>.eml``, that appears whole or not at all."""
    data = email.message().as_bytes()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    safe_id = re.sub(r"[^A-Za-z0-9._-]+", "_", message_id.strip("<> "))[:100] or "message"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".", suffix=".tmp")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            Path(tmp).replace(directory / f"{stamp}-{safe_id}.eml")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_folder(directory)
    except OSError as exc:
        raise DeliveryError(f"could not write the e-mail file ({_errno_name(exc)})", temporary=True) from None


class _SmtpBackend(SmtpEmailBackend):
    """Django's SMTP backend, checking the server's certificate against ``?cafile=`` when that is given."""

    def __init__(self, *, cafile: str | None, **kwargs: Any) -> None:
        self.cafile = cafile
        super().__init__(**kwargs)

    @cached_property
    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cafile)


def _send_smtp(parts: SplitResult, email: EmailMultiAlternatives) -> None:
    if not parts.hostname:
        raise DeliveryError("the smtp:// URL has no host", temporary=False)
    query = dict(parse_qsl(parts.query))
    backend = _SmtpBackend(
        alias=MAILER_ALIAS,
        host=parts.hostname,
        port=parts.port,  # None: 465 for smtps, 587 with STARTTLS, else 25 (Django's defaults)
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        use_ssl=parts.scheme == "smtps",
        use_tls=parts.scheme == "smtp" and url_flag(parts.geturl(), "starttls", False),
        timeout=TIMEOUT,
        cafile=query.get("cafile"),
    )
    try:
        sent = backend.send_messages([email])
    except (smtplib.SMTPException, OSError) as exc:  # first: a certificate error is a ValueError too
        raise _smtp_error(exc) from None
    except ValueError:  # an address Django cannot put in an SMTP envelope
        raise DeliveryError("the message has an invalid address", temporary=False) from None
    finally:
        # A login or STARTTLS that failed leaves a half-open session behind; the outcome is known already.
        with contextlib.suppress(smtplib.SMTPException, OSError):
            backend.close()
    if not sent:
        raise DeliveryError("the message has no recipient", temporary=False)


def _smtp_error(exc: Exception) -> DeliveryError:
    """What an SMTP failure means for a retry: 4xx and network trouble pass, 5xx and bad credentials do not."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _text in exc.recipients.values()]
        return _smtp_reply("refused the recipient", codes[0] if codes else 550)
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return _smtp_reply("refused the sender address (RADSHARE_EMAIL_FROM)", exc.smtp_code)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return _smtp_reply("refused the user name or password", exc.smtp_code)
    if isinstance(exc, smtplib.SMTPDataError):
        return _smtp_reply("refused the message", exc.smtp_code)
    if isinstance(exc, smtplib.SMTPResponseException):
        return _smtp_reply("answered with an error", exc.smtp_code)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return DeliveryError("the mail server does not offer STARTTLS or AUTH as configured", temporary=False)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return DeliveryError("the mail server closed the connection", temporary=True)
    if isinstance(exc, smtplib.SMTPException):
        return DeliveryError("the mail server failed", temporary=True)
    return _network_error(exc, "the mail server")


def _smtp_reply(what: str, code: int) -> DeliveryError:
    return DeliveryError(f"the mail server {what} ({code})", temporary=400 <= code < 500)


# --- SMS ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmsMessage:
    to: str  # E.164, e.g. "+31612345678"
    text: str
    reference: str  # our stable id for the gateway, e.g. "rs-sms-123"; ASCII, at most 32 characters


def send_sms(message: SmsMessage, url: str | None = None) -> None:
    """Send one SMS by ``url`` (default ``RADSHARE_SMS_URL``); raise ``DeliveryError`` when it fails."""
    parts = urlsplit(settings.RADSHARE.sms_url if url is None else url)
    if parts.scheme == "console":
        # A development aid: the code is meant to be read here. Never through logging (docs/security.md A21).
        text = " ".join(message.text.splitlines())
        sys.stdout.write(
            f"SMS to {message.to} from {settings.RADSHARE.sms_sender} [{message.reference}]: {text}\n"
        )
        sys.stdout.flush()
    elif parts.scheme == "file" and parts.path:
        _append_jsonl(Path(parts.path), message)
    elif parts.scheme in {"http", "https"}:
        _send_http_gateway(parts, message)
    elif parts.scheme == "cm":
        _send_cm(parts, message)
    else:
        raise DeliveryError("RADSHARE_SMS_URL is not a valid SMS URL", temporary=False)
    logger.info("SMS handed over (reference %s)", message.reference)


def _append_jsonl(path: Path, message: SmsMessage) -> None:
    record = {
        "to": message.to,
        "text": message.text,
        "sender": settings.RADSHARE.sms_sender,
        "reference": message.reference,
        "sent_at": datetime.now(UTC).isoformat(),
    }
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # O_APPEND and one write() a line: lines of workers writing at once do not interleave.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.write(fd, line) != len(line):
                raise OSError(errno.EIO, "short write")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise DeliveryError(f"could not write the SMS file ({_errno_name(exc)})", temporary=True) from None


def _send_http_gateway(parts: SplitResult, message: SmsMessage) -> None:
    """POST ``RADSHARE_SMS_BODY`` filled in; user:pass in the URL becomes HTTP Basic auth."""
    fields = {
        "to": message.to,
        "text": message.text,
        "reference": message.reference,
        "sender": settings.RADSHARE.sms_sender,
    }
    body = fill_sms_body(settings.RADSHARE.sms_body, fields).encode()
    headers = {"Content-Type": "application/json"}
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
    target = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path or "/", parts.query, ""))
    status, _answer = _post(target, body, headers, "the SMS gateway")
    _check_status(status, "the SMS gateway")


def _send_cm(parts: SplitResult, message: SmsMessage) -> None:
    """CM.com's Business Messaging API (JSON): https://developers.cm.com/messaging/docs/integration."""
    token = unquote(parts.username or "")
    tls = url_flag(parts.geturl(), "tls", True)
    target = urlunsplit(
        ("https" if tls else "http", parts.netloc.rpartition("@")[2] or CM_HOST, CM_PATH, "", "")
    )
    body = {
        "messages": {
            "authentication": {"productToken": token},
            "msg": [
                {
                    "allowedChannels": ["SMS"],  # not WhatsApp or another channel the account may have
                    "from": _cm_number(settings.RADSHARE.sms_sender),
                    "to": [{"number": _cm_number(message.to)}],
                    "body": {"type": "auto", "content": message.text},  # auto: Unicode when the text needs it
                    "minimumNumberOfMessageParts": 1,
                    "maximumNumberOfMessageParts": 8,
                    "reference": message.reference,
                }
            ],
        }
    }
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-CM-PRODUCTTOKEN": token,  # CM's recommended way; the body carries it too, as in CM's examples
    }
    status, answer = _post(target, json.dumps(body, ensure_ascii=False).encode(), headers, "CM.com")
    if 200 <= status < 300:
        # A 200 can still reject a message; its errorCode is a number, its text may quote the phone number.
        rejected = [m for m in _cm_messages(answer) if str(m.get("status", "")).lower() == "rejected"]
        if rejected:
            code = rejected[0].get("messageErrorCode")
            raise DeliveryError(f"CM.com rejected the message (error {code})", temporary=False)
        return
    if 400 <= status < 500 and status not in _TEMPORARY_HTTP:
        code = _cm_error_code(answer)
        detail = f"error {code}" if code is not None else f"HTTP {status}"
        raise DeliveryError(f"CM.com refused the message ({detail})", temporary=False)
    _check_status(status, "CM.com")


def _cm_number(number: str) -> str:
    """CM wants international numbers as 00<country><number>, without +."""
    return "00" + number[1:] if number.startswith("+") else number


def _cm_answer(answer: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(answer)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _cm_messages(answer: bytes) -> list[dict[str, Any]]:
    messages = _cm_answer(answer).get("messages")
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def _cm_error_code(answer: bytes) -> int | None:
    parsed = _cm_answer(answer)
    codes = [parsed.get("errorCode")] + [m.get("messageErrorCode") for m in _cm_messages(answer)]
    return next((c for c in codes if isinstance(c, int) and c), None)


# --- HTTP -----------------------------------------------------------------------------------------------------

# Answers that mean "not now" rather than "never".
_TEMPORARY_HTTP = frozenset({408, 425, 429})


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirected POST would go on as a GET without its body (or carry the credentials elsewhere)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _post(url: str, body: bytes, headers: dict[str, str], peer: str) -> tuple[int, bytes]:
    """POST and return (status, the first bytes of the answer); network trouble raises ``DeliveryError``."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - URL from our config
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        try:
            with opener.open(request, timeout=TIMEOUT) as response:
                return int(response.status), response.read(MAX_ANSWER_BYTES)
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read(MAX_ANSWER_BYTES)
    except urllib.error.URLError as exc:
        reason = exc.reason if isinstance(exc.reason, BaseException) else OSError(str(exc.reason))
        raise _network_error(reason, peer) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _network_error(exc, peer) from None


def _check_status(status: int, peer: str) -> None:
    if 200 <= status < 300:
        return
    if 300 <= status < 400:
        raise DeliveryError(
            f"{peer} answered with a redirect (HTTP {status}); check the URL", temporary=False
        )
    raise DeliveryError(
        f"{peer} answered HTTP {status}", temporary=status >= 500 or status in _TEMPORARY_HTTP
    )


# --- shared ---------------------------------------------------------------------------------------------------


def _network_error(exc: BaseException, peer: str) -> DeliveryError:
    if isinstance(exc, ssl.SSLCertVerificationError):
        # Not a passing fault: a wrong host, an expired certificate or a missing CA needs the operator.
        return DeliveryError(f"the certificate of {peer} could not be verified", temporary=False)
    if isinstance(exc, ssl.SSLError):
        return DeliveryError(f"TLS with {peer} failed", temporary=True)
    if isinstance(exc, TimeoutError):
        return DeliveryError(f"{peer} did not answer within {TIMEOUT} s", temporary=True)
    if isinstance(exc, ConnectionRefusedError):
        return DeliveryError(f"{peer} refused the connection", temporary=True)
    if isinstance(exc, socket.gaierror):
        return DeliveryError(f"the name of {peer} could not be resolved", temporary=True)
    if isinstance(exc, http.client.HTTPException):
        return DeliveryError(f"{peer} broke off the exchange", temporary=True)
    if isinstance(exc, OSError):
        return DeliveryError(f"could not reach {peer} ({_errno_name(exc)})", temporary=True)
    return DeliveryError(f"could not reach {peer}", temporary=True)


def _errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, "error")
