"""Every ``RADSHARE_*`` setting, declared once: its name, default, parser and help text.

The README's table of settings and ``radshare config`` are both made from ``SETTINGS`` (a test checks the README
against it); ``Config`` has one typed field per entry, in the same order. A default of None is worked out from
other settings after parsing (``derive``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from radshare.core.config.parsers import (
    ae_title,
    bind,
    boolean,
    choice,
    email_from,
    hosts,
    int_range,
    key_list,
    log_level,
    proxies,
    sms_sender,
    text,
)
from radshare.core.config.sms_template import SMS_BODY_DEFAULT, sms_body
from radshare.core.config.urls import base_url, database_url, email_url, sms_url, storage_url

PREFIX = "RADSHARE_"


@dataclass(frozen=True)
class Setting:
    """One ``RADSHARE_<name>`` variable: ``parse`` turns its text into the value, or raises ``ValueError``."""

    name: str
    default: str | None  # None: derived from other settings (see ``derive``)
    parse: Callable[[str], Any]
    help: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "DATA_DIR",
        "./var",
        text,
        "Folder for the SQLite database, stored files and the generated secret key.",
    ),
    Setting(
        "DATABASE_URL",
        None,
        database_url,
        "`sqlite:///path` or `postgres://user:pass@host:5432/db`. Default: SQLite in the data dir.",
    ),
    Setting(
        "DATABASE_POOL_SIZE",
        "16",
        int_range(2, 500),
        "PostgreSQL: connections each process (web, SCP, worker) holds at most. A request that finds them all "
        "busy waits up to 10 s for one, then gets a 503. The SCP holds one per association in progress.",
    ),
    Setting(
        "SECRET_KEY",
        None,
        text,
        "Signs sessions and keys code hashes. Required (the same on every machine) with PostgreSQL outside demo "
        "mode; otherwise generated into the data dir on first run.",
        secret=True,
    ),
    Setting(
        "OLD_SECRET_KEYS",
        "",
        key_list,
        "Earlier secret keys (comma-separated), newest first: what they made still verifies and decrypts until "
        "`radshare keys rotate` has moved it to the current key; then drop them.",
        secret=True,
    ),
    Setting(
        "DEMO",
        "false",
        boolean,
        "Demo mode: demo data may be loaded, any DICOM caller files into the demo organisation. Never in production.",
    ),
    Setting(
        "ROLE",
        "all",
        choice("all", "public", "internal"),
        "Which URL groups a web process serves: `public` (recipient pages), `internal` (portal, API, admin), `all`.",
    ),
    Setting(
        "BASE_URL",
        None,
        base_url,
        "Public address of the recipient site. Default: `http://localhost:<HTTP_PORT>`.",
    ),
    Setting(
        "ALLOWED_HOSTS",
        "",
        hosts,
        "Extra host names the web server answers to (comma-separated), e.g. the portal's internal name. "
        "The BASE_URL host and localhost are always allowed.",
    ),
    Setting("HTTP_BIND", "127.0.0.1", bind, "Address the web server listens on."),
    Setting("HTTP_PORT", "8000", int_range(1, 65535), "Port the web server listens on."),
    Setting(
        "WEB_WORKERS",
        "0",
        int_range(0, 64),
        "Web server processes (uvicorn workers) of `radshare web` and `radshare serve`; 0: as many as the cores it "
        "may use.",
    ),
    Setting(
        "TRUSTED_PROXIES",
        "",
        proxies,
        "Comma-separated proxy addresses/networks whose `X-Forwarded-For` (client address) and "
        "`X-Forwarded-Proto` (https) are believed; from anyone else they are ignored.",
    ),
    Setting(
        "METRICS_ALLOW",
        "",
        proxies,
        "Comma-separated addresses/networks that may read `/metrics` (Prometheus); empty: nobody (404).",
    ),
    Setting("DICOM_AE_TITLE", "RADSHARE", ae_title, "AE title of radshare's storage SCP."),
    Setting(
        "DICOM_BIND",
        "127.0.0.1",
        bind,
        "Address the DICOM storage SCP listens on (`0.0.0.0` for the network).",
    ),
    Setting("DICOM_PORT", "11112", int_range(1, 65535), "Port of the DICOM storage SCP."),
    Setting("DICOM_MAX_ASSOCIATIONS", "16", int_range(1, 256), "Concurrent DICOM associations accepted."),
    Setting(
        "DICOM_ACCEPT_ANY",
        None,
        boolean,
        "Let any calling AE store into the demo organisation. Default: on in demo mode, off otherwise; "
        "refused outside demo mode.",
    ),
    Setting(
        "INGEST_JOURNAL",
        "true",
        boolean,
        "Journal mode of the SCP: a C-STORE is answered once it is in a journal on the SCP's machine "
        "(`<DATA_DIR>/journal`, fsynced), and a process of the SCP's own files it within a second; ingest runs at "
        "the pace of a bare SCP. Off: each instance is indexed before it is answered (slower; nothing to keep "
        "on the SCP's machine).",
    ),
    Setting(
        "EMAIL_URL",
        None,
        email_url,
        "`console://`, `file:///dir` (one .eml file a message), `smtp://user:pass@host:port?starttls=1` or "
        "`smtps://user:pass@host:port`. Default: `console://`; in demo mode `file://<DATA_DIR>/outbox/mail`.",
    ),
    Setting(
        "EMAIL_FROM",
        None,
        email_from,
        "Sender of e-mails, e.g. `Hospital A <noreply@hospital-a.nl>`. Default: `radshare <noreply@BASE_URL host>`.",
    ),
    Setting(
        "SMS_URL",
        None,
        sms_url,
        "`console://`, `file:///path/sms.jsonl` (one JSON object a line), an HTTP gateway "
        "`https://user:pass@host/path` or CM.com `cm://PRODUCT_TOKEN@gw.messaging.cm.com`. Default: `console://`; "
        "in demo mode `file://<DATA_DIR>/outbox/sms.jsonl`.",
    ),
    Setting(
        "SMS_SENDER",
        "radshare",
        sms_sender,
        "Sender shown on the phone: up to 11 letters/digits, or a phone number like `+3197010203040`.",
    ),
    Setting(
        "SMS_BODY",
        SMS_BODY_DEFAULT,
        sms_body,
        "JSON body posted to an HTTP SMS gateway; `{to}`, `{text}`, `{reference}`, `{sender}` are filled in.",
    ),
    Setting(
        "STORAGE_URL",
        None,
        storage_url,
        "Where instances live: `file:///dir`. Default: `<DATA_DIR>/storage`.",
    ),
    Setting(
        "SHARE_VALIDITY_DAYS", "14", int_range(1, 365), "Days a share link works, counted from creation."
    ),
    Setting("DOWNLOADS_PER_DAY", "10", int_range(1, 1000), "ZIP downloads allowed per share per day."),
    Setting("DOWNLOAD_ON_MOBILE", "false", boolean, "Offer downloads on phones and tablets."),
    Setting(
        "RENDER_PROCESSES",
        "0",
        int_range(0, 256),
        "Processes a worker renders images with; 0: as many as the cores it may use.",
    ),
    Setting("UPLOAD_MAX_MB", "2048", int_range(1, 1024 * 1024), "Largest upload in the portal, in MB."),
    Setting("BSN_ISSUER", "NLMINBIZA", text, "Issuer of Patient ID that marks a BSN in Other Patient IDs."),
    Setting("RECIPIENT_DICOMWEB", "false", boolean, "Share-scoped read-only DICOMweb for recipients."),
    Setting("UNSHARED_RETENTION_DAYS", "14", int_range(1, 3650), "Days a study nobody shared is kept."),
    Setting("AUDIT_RETENTION_YEARS", "5", int_range(1, 100), "Years audit entries are kept (NEN 7513)."),
    Setting("LOG_LEVEL", "INFO", log_level, "Log level: DEBUG, INFO, WARNING or ERROR."),
    Setting(
        "LOG_FORMAT",
        "plain",
        choice("plain", "json"),
        "`plain` (one line of text an entry) or `json` (one JSON object a line, for a log collector).",
    ),
)
