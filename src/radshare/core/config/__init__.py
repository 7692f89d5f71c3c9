"""radshare's configuration: ``RADSHARE_*`` environment variables, parsed and validated once.

Every setting is declared once in ``SETTINGS`` (name, default, parser, help); the README's table and
``radshare config`` are both made from it. ``load()`` collects *all* bad values before failing, so an
operator sees every problem in one run, one line each, and returns a ``Config``: a frozen dataclass with one
typed field per setting, so mypy checks every ``settings.RADSHARE.<name>`` (a test keeps fields and
``SETTINGS`` in step).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import secrets
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qs, parse_qsl, urlsplit, urlunsplit

PREFIX = "RADSHARE_"

# Values that look like a secret but are not one (copied from a README, left from a template).
PLACEHOLDER_SECRETS = frozenset(
    {
        "",
        "changeme",
        "change-me",
        "secret",
        "secret-key",
        "secretkey",
        "insecure",
        "dev",
        "test",
        "xxx",
        "todo",
    }
)
MIN_SECRET_LENGTH = 32
# SHA-256 of keys that were once public (a key file committed to the repository by mistake): never used again.
LEAKED_SECRET_KEYS = frozenset({"511e77b521d3ac2d3c303556b96fede9ec27e273580c65667b51dc246d673036"})


def _leaked(key: str) -> bool:
    return hashlib.sha256(key.strip().encode()).hexdigest() in LEAKED_SECRET_KEYS


class ConfigError(Exception):
    """One or more settings are invalid; ``problems`` holds one line per setting."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"must be a whole number from {low} to {high}") from None
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}")
        return value

    return parse


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("must be true or false (1/0, yes/no, on/off)")


def _ae_title(raw: str) -> str:
    value = raw.strip()
    if not 1 <= len(value) <= 16:
        raise ValueError("must be 1 to 16 characters (DICOM PS3.5 AE VR)")
    if any(not (32 <= ord(c) < 127) or c == "\\" for c in value):
        raise ValueError("may hold only printable ASCII characters, no backslash (DICOM PS3.5 AE VR)")
    return value


def _base_url(raw: str) -> str:
    value = raw.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL, e.g. https://radshare.example.org")
    if parts.query or parts.fragment:
        raise ValueError("must not hold a query or fragment")
    return value


def _database_url(raw: str) -> str:
    value = raw.strip()
    scheme = urlsplit(value).scheme
    if scheme not in {"sqlite", "postgres", "postgresql"}:
        raise ValueError("must start with sqlite:/// or postgres://")
    if scheme == "sqlite" and not value.startswith("sqlite:///"):
        raise ValueError("a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path")
    return value


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of: {', '.join(choices)}")
        return value

    return parse


def _url_port(parts: SplitResult, kind: str) -> None:
    try:
        _ = parts.port
    except ValueError:
        raise ValueError(f"the port in the {kind} URL is not a number") from None


def _url_query(parts: SplitResult, allowed: tuple[str, ...], kind: str) -> dict[str, str]:
    """The URL's query as a dict; an unknown or repeated option is an error (a typo must not be ignored)."""
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = dict(pairs)
    for name, _value in pairs:
        if name not in allowed:
            hint = f"options: {', '.join(allowed)}" if allowed else "it takes no options"
            raise ValueError(f"unknown option {name!r} in the {kind} URL ({hint})")
    if len(query) != len(pairs):
        raise ValueError(f"an option is repeated in the {kind} URL")
    return query


def _url_flag(query: Mapping[str, str], name: str, default: bool) -> bool:
    if name not in query:
        return default
    try:
        return _bool(query[name])
    except ValueError:
        raise ValueError(f"?{name}= must be 1 or 0") from None


def _file_url(parts: SplitResult, kind: str, example: str) -> None:
    if not parts.path or parts.netloc not in {"", "localhost"}:
        raise ValueError(f"a file:// {kind} URL needs an absolute path (three slashes), e.g. {example}")


def url_flag(url: str, name: str, default: bool) -> bool:
    """A 1/0 option of a validated message URL (``?starttls=1``, ``?tls=0``)."""
    return _url_flag(dict(parse_qsl(urlsplit(url).query)), name, default)


def _email_url(raw: str) -> str:
    value = raw.strip()
    parts = urlsplit(value)
    schemes = ("console", "file", "smtp", "smtps")
    if parts.scheme not in schemes:
        raise ValueError(f"email URL must start with one of: {', '.join(s + '://' for s in schemes)}")
    if parts.scheme == "file":
        _file_url(parts, "email", "file:///var/lib/radshare/outbox/mail")
    elif parts.scheme in {"smtp", "smtps"}:
        if not parts.hostname:
            raise ValueError("an smtp:// URL needs a host, e.g. smtp://relay.example.org:587?starttls=1")
        _url_port(parts, "smtp://")
        allowed = ("starttls", "cafile") if parts.scheme == "smtp" else ("cafile",)
        query = _url_query(parts, allowed, f"{parts.scheme}://")
        _url_flag(query, "starttls", False)
        cafile = query.get("cafile")
        if cafile is not None and not Path(cafile).is_file():
            raise ValueError("?cafile= must name a readable file of CA certificates (PEM)")
    return value


def _sms_url(raw: str) -> str:
    value = raw.strip()
    parts = urlsplit(value)
    schemes = ("console", "file", "http", "https", "cm")
    if parts.scheme not in schemes:
        raise ValueError(f"sms URL must start with one of: {', '.join(s + '://' for s in schemes)}")
    if parts.scheme == "file":
        _file_url(parts, "sms", "file:///var/lib/radshare/outbox/sms.jsonl")
    elif parts.scheme in {"http", "https"}:
        if not parts.hostname:
            raise ValueError(
                "an http(s):// SMS gateway URL needs a host, e.g. https://user:pass@sms.example.org/send"
            )
        _url_port(parts, "gateway")
    elif parts.scheme == "cm":
        if not parts.username:
            raise ValueError("a cm:// URL holds the product token: cm://PRODUCT_TOKEN@gw.messaging.cm.com")
        _url_port(parts, "cm://")
        tls = _url_flag(_url_query(parts, ("tls",), "cm://"), "tls", True)
        if not tls and parts.hostname not in {"127.0.0.1", "::1", "localhost"}:
            raise ValueError("?tls=0 (plain HTTP) is for a test gateway on this machine only")
    return value


def _email_from(raw: str) -> str:
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    value = raw.strip()
    _name, address = parseaddr(value)
    try:
        # parseaddr repairs some mistakes (a space in the domain) silently: the address must be there as typed.
        if not address or address not in value or any(c in value for c in "\r\n"):
            raise ValidationError("empty")
        validate_email(address)
    except ValidationError:
        raise ValueError(
            'must be an e-mail address, optionally with a name: "Hospital A <noreply@hospital-a.nl>"'
        ) from None
    return value


def _sms_sender(raw: str) -> str:
    value = raw.strip()
    if re.fullmatch(r"\+[1-9][0-9]{6,14}", value):
        return value
    if re.fullmatch(r"[A-Za-z0-9 ]{1,11}", value) and any(c.isalpha() for c in value):
        return value
    raise ValueError(
        "must be a name of 1 to 11 letters, digits or spaces (with at least one letter), "
        "or a phone number in international form, e.g. +3197010203040"
    )


SMS_BODY_DEFAULT = '{"to": "{to}", "text": "{text}", "reference": "{reference}"}'
SMS_BODY_FIELDS = ("to", "text", "reference", "sender")
_SMS_BODY_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def fill_sms_body(template: str, fields: Mapping[str, str]) -> str:
    """The SMS gateway's request body: each ``{name}`` replaced by its value, escaped for a JSON string.

    One pass, so a text that happens to contain ``{to}`` is not substituted again."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in fields:
            return match.group(0)
        return json.dumps(fields[name], ensure_ascii=False)[1:-1]

    return _SMS_BODY_PLACEHOLDER.sub(value, template)


def _sms_body(raw: str) -> str:
    value = raw.strip()
    names = set(_SMS_BODY_PLACEHOLDER.findall(value))
    unknown = sorted(names - set(SMS_BODY_FIELDS))
    if unknown:
        raise ValueError(
            f"unknown placeholder {{{unknown[0]}}}; use {', '.join('{' + f + '}' for f in SMS_BODY_FIELDS)}"
        )
    if not {"to", "text"} <= names:
        raise ValueError("must contain {to} and {text}, e.g. " + SMS_BODY_DEFAULT)
    # Values that only stay valid JSON inside a JSON string: a placeholder outside quotes is caught here.
    dummy = {
        "to": "+31612345678",
        "text": 'a "code"\\ 123\nline',
        "reference": "rs-sms-1",
        "sender": "radshare",
    }
    try:
        json.loads(fill_sms_body(value, dummy))
    except ValueError:
        raise ValueError(
            'is not valid JSON once filled in; put each placeholder inside a JSON string, e.g. "{text}"'
        ) from None
    return value


def _storage_url(raw: str) -> str:
    value = raw.strip()
    parts = urlsplit(value)
    if parts.scheme != "file" or not parts.path:
        # Object storage (s3://) arrives with the production storage work; refuse it clearly
        # instead of silently writing to the wrong place.
        raise ValueError("must be file:///absolute/dir (object storage is not supported in this version)")
    return value


def _proxies(raw: str) -> tuple[str, ...]:
    nets = []
    for item in (p.strip() for p in raw.split(",")):
        if not item:
            continue
        try:
            nets.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ValueError(
                f"{item!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/24)"
            ) from None
    return tuple(nets)


def _bind(raw: str) -> str:
    value = raw.strip()
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("must be an IP address to listen on, e.g. 127.0.0.1 or 0.0.0.0") from None
    return value


def _hosts(raw: str) -> tuple[str, ...]:
    hosts = tuple(h.strip().lower() for h in raw.split(",") if h.strip())
    for host in hosts:
        if not all(c.isalnum() or c in ".-:[]*" for c in host.lstrip(".")):
            raise ValueError(f"{host!r} is not a host name (e.g. radshare.example.org or .example.org)")
    return hosts


def _log_level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return value


def _text(raw: str) -> str:
    return raw.strip()


@dataclass(frozen=True)
class Setting:
    name: str
    default: str | None  # None: derived from other settings (see ``_derive``)
    parse: Callable[[str], Any]
    help: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "DATA_DIR",
        "./var",
        _text,
        "Folder for the SQLite database, stored files and the generated secret key.",
    ),
    Setting(
        "DATABASE_URL",
        None,
        _database_url,
        "`sqlite:///path` or `postgres://user:pass@host:5432/db`. Default: SQLite in the data dir.",
    ),
    Setting(
        "DATABASE_POOL_SIZE",
        "16",
        _int_range(2, 500),
        "PostgreSQL: connections each process (web, SCP, worker) holds at most. A request that finds them all "
        "busy waits up to 10 s for one, then gets a 503. The SCP holds one per association in progress.",
    ),
    Setting(
        "SECRET_KEY",
        None,
        _text,
        "Signs sessions and keys code hashes. Required (the same on every machine) with PostgreSQL outside demo "
        "mode; otherwise generated into the data dir on first run.",
        secret=True,
    ),
    Setting(
        "DEMO",
        "false",
        _bool,
        "Demo mode: demo data may be loaded, any DICOM caller files into the demo organisation. Never in production.",
    ),
    Setting(
        "ROLE",
        "all",
        _choice("all", "public", "internal"),
        "Which URL groups a web process serves: `public` (recipient pages), `internal` (portal, API, admin), `all`.",
    ),
    Setting(
        "BASE_URL",
        None,
        _base_url,
        "Public address of the recipient site. Default: `http://localhost:<HTTP_PORT>`.",
    ),
    Setting(
        "ALLOWED_HOSTS",
        "",
        _hosts,
        "Extra host names the web server answers to (comma-separated), e.g. the portal's internal name. "
        "The BASE_URL host and localhost are always allowed.",
    ),
    Setting("HTTP_BIND", "127.0.0.1", _bind, "Address the web server listens on."),
    Setting("HTTP_PORT", "8000", _int_range(1, 65535), "Port the web server listens on."),
    Setting(
        "TRUSTED_PROXIES",
        "",
        _proxies,
        "Comma-separated proxy addresses/networks whose `X-Forwarded-For` (client address) and "
        "`X-Forwarded-Proto` (https) are believed; from anyone else they are ignored.",
    ),
    Setting("DICOM_AE_TITLE", "RADSHARE", _ae_title, "AE title of radshare's storage SCP."),
    Setting(
        "DICOM_BIND",
        "127.0.0.1",
        _bind,
        "Address the DICOM storage SCP listens on (`0.0.0.0` for the network).",
    ),
    Setting("DICOM_PORT", "11112", _int_range(1, 65535), "Port of the DICOM storage SCP."),
    Setting("DICOM_MAX_ASSOCIATIONS", "16", _int_range(1, 256), "Concurrent DICOM associations accepted."),
    Setting(
        "DICOM_ACCEPT_ANY",
        None,
        _bool,
        "Let any calling AE store into the demo organisation. Default: on in demo mode, off otherwise; "
        "refused outside demo mode.",
    ),
    Setting(
        "EMAIL_URL",
        None,
        _email_url,
        "`console://`, `file:///dir` (one .eml file a message), `smtp://user:pass@host:port?starttls=1` or "
        "`smtps://user:pass@host:port`. Default: `console://`; in demo mode `file://<DATA_DIR>/outbox/mail`.",
    ),
    Setting(
        "EMAIL_FROM",
        None,
        _email_from,
        "Sender of e-mails, e.g. `Hospital A <noreply@hospital-a.nl>`. Default: `radshare <noreply@BASE_URL host>`.",
    ),
    Setting(
        "SMS_URL",
        None,
        _sms_url,
        "`console://`, `file:///path/sms.jsonl` (one JSON object a line), an HTTP gateway "
        "`https://user:pass@host/path` or CM.com `cm://PRODUCT_TOKEN@gw.messaging.cm.com`. Default: `console://`; "
        "in demo mode `file://<DATA_DIR>/outbox/sms.jsonl`.",
    ),
    Setting(
        "SMS_SENDER",
        "radshare",
        _sms_sender,
        "Sender shown on the phone: up to 11 letters/digits, or a phone number like `+3197010203040`.",
    ),
    Setting(
        "SMS_BODY",
        SMS_BODY_DEFAULT,
        _sms_body,
        "JSON body posted to an HTTP SMS gateway; `{to}`, `{text}`, `{reference}`, `{sender}` are filled in.",
    ),
    Setting(
        "STORAGE_URL",
        None,
        _storage_url,
        "Where instances live: `file:///dir`. Default: `<DATA_DIR>/storage`.",
    ),
    Setting(
        "SHARE_VALIDITY_DAYS", "14", _int_range(1, 365), "Days a share link works, counted from creation."
    ),
    Setting("DOWNLOADS_PER_DAY", "10", _int_range(1, 1000), "ZIP downloads allowed per share per day."),
    Setting("DOWNLOAD_ON_MOBILE", "false", _bool, "Offer downloads on phones and tablets."),
    Setting(
        "RENDER_PROCESSES",
        "0",
        _int_range(0, 256),
        "Processes a worker renders images with; 0: one fewer than the machine's cores (at least one).",
    ),
    Setting("UPLOAD_MAX_MB", "2048", _int_range(1, 1024 * 1024), "Largest upload in the portal, in MB."),
    Setting("BSN_ISSUER", "NLMINBIZA", _text, "Issuer of Patient ID that marks a BSN in Other Patient IDs."),
    Setting("RECIPIENT_DICOMWEB", "false", _bool, "Share-scoped read-only DICOMweb for recipients."),
    Setting("UNSHARED_RETENTION_DAYS", "14", _int_range(1, 3650), "Days a study nobody shared is kept."),
    Setting("AUDIT_RETENTION_YEARS", "5", _int_range(1, 100), "Years audit entries are kept (NEN 7513)."),
    Setting("LOG_LEVEL", "INFO", _log_level, "Log level: DEBUG, INFO, WARNING or ERROR."),
)


@dataclass(frozen=True, kw_only=True)
class Config:
    """The validated settings, one typed field per entry of ``SETTINGS`` (same names, lower case, same order).

    ``load()`` makes it; ``settings.RADSHARE`` holds it. Frozen: a test changes it with ``dataclasses.replace``.
    """

    data_dir: str
    database_url: str
    database_pool_size: int
    secret_key: str
    demo: bool
    role: str
    base_url: str
    allowed_hosts: tuple[str, ...]
    http_bind: str
    http_port: int
    trusted_proxies: tuple[str, ...]
    dicom_ae_title: str
    dicom_bind: str
    dicom_port: int
    dicom_max_associations: int
    dicom_accept_any: bool
    email_url: str
    email_from: str
    sms_url: str
    sms_sender: str
    sms_body: str
    storage_url: str
    share_validity_days: int
    downloads_per_day: int
    download_on_mobile: bool
    render_processes: int
    upload_max_mb: int
    bsn_issuer: str
    recipient_dicomweb: bool
    unshared_retention_days: int
    audit_retention_years: int
    log_level: str
    # Not a setting: where ``secret_key`` came from (the environment or a key file), for ``radshare config``.
    secret_key_source: str

    def public_items(self) -> list[tuple[str, str]]:
        """Effective settings for display, secrets masked."""
        rows = []
        for setting in SETTINGS:
            value = getattr(self, setting.name.lower())
            if setting.secret:
                shown = f"(set, from {self.secret_key_source})"
            elif isinstance(value, bool):
                shown = "true" if value else "false"
            elif isinstance(value, tuple):
                shown = ",".join(value) or "(none)"
            else:
                shown = _shown(setting.name, str(value))
            rows.append((PREFIX + setting.name, shown))
        return rows


# Query options and JSON fields whose name holds one of these carry a credential (``?api_key=``, ``"token"``).
_SECRET_WORDS = ("key", "token", "secret", "pass", "auth", "sig")


def _is_secret_name(name: str) -> bool:
    return any(word in name.lower() for word in _SECRET_WORDS)


def _mask_url_password(value: str) -> str:
    """The URL with its password, a token in the user part and credential-like query options replaced by ***."""
    parts = urlsplit(value)
    if not parts.scheme or "://" not in value:
        return value
    netloc, query = parts.netloc, parts.query
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        # A cm:// product token is the user part; so is an API key in an http(s) URL without a password.
        if user and (parts.scheme == "cm" or (parts.scheme in {"http", "https"} and not password)):
            user = "***"
        if password:
            password = "***"  # noqa: S105 - the mask, not a password
        netloc = f"{user}{colon}{password}@{hostport}"
    if query:
        items = [item.partition("=") for item in query.split("&")]
        query = "&".join(
            f"{k}{eq}***" if eq and v and _is_secret_name(k) else f"{k}{eq}{v}" for k, eq, v in items
        )
    if (netloc, query) == (parts.netloc, parts.query):
        return value
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _mask_json_secrets(value: str) -> str:
    """An SMS body template with the string value of each credential-like field replaced by ***."""

    def mask(match: re.Match[str]) -> str:
        return f'{match.group(1)}"***"' if _is_secret_name(match.group(2)) else match.group(0)

    return re.sub(r'("((?:[^"\\]|\\.)*)"\s*:\s*)"(?:[^"\\]|\\.)*"', mask, value)


def _shown(name: str, value: str) -> str:
    """A setting's value as it may be printed: in ``radshare config`` and in configuration errors."""
    return _mask_json_secrets(value) if name == "SMS_BODY" else _mask_url_password(value)


def _derive(values: dict[str, Any], env: Mapping[str, str], problems: list[str]) -> None:
    data_dir = Path(values["DATA_DIR"]).expanduser().resolve()
    values["DATA_DIR"] = str(data_dir)
    if values.get("DATABASE_URL") is None:
        values["DATABASE_URL"] = f"sqlite:///{data_dir / 'radshare.sqlite3'}"
    if values.get("BASE_URL") is None:
        values["BASE_URL"] = f"http://localhost:{values.get('HTTP_PORT', 8000)}"
    if values.get("STORAGE_URL") is None:
        values["STORAGE_URL"] = f"file://{data_dir / 'storage'}"
    if values.get("DICOM_ACCEPT_ANY") is None:
        values["DICOM_ACCEPT_ANY"] = bool(values.get("DEMO"))
    elif values["DICOM_ACCEPT_ANY"] and not values.get("DEMO"):
        problems.append(f"{PREFIX}DICOM_ACCEPT_ANY: may only be on in demo mode ({PREFIX}DEMO=1)")
    associations, pool = values.get("DICOM_MAX_ASSOCIATIONS"), values.get("DATABASE_POOL_SIZE")
    postgres = not str(values["DATABASE_URL"]).startswith("sqlite")
    if postgres and associations is not None and pool is not None and associations > pool:
        problems.append(
            f"{PREFIX}DICOM_MAX_ASSOCIATIONS: {associations} is more than {PREFIX}DATABASE_POOL_SIZE ({pool}); "
            "each association holds a database connection: raise the pool size or lower the associations"
        )
    # Demo mode keeps what would be sent in files, for the demo outbox page; elsewhere the console.
    outbox = data_dir / "outbox"
    for name, demo_target in (("EMAIL_URL", outbox / "mail"), ("SMS_URL", outbox / "sms.jsonl")):
        if values.get(name) is None and PREFIX + name not in env:
            values[name] = f"file://{demo_target}" if values.get("DEMO") else "console://"
    if values.get("EMAIL_FROM") is None and PREFIX + "EMAIL_FROM" not in env:
        host = urlsplit(values["BASE_URL"]).hostname or "localhost"
        if _is_ip(host):
            host = "localhost"
        default_from = f"radshare <noreply@{host}>"
        try:
            values["EMAIL_FROM"] = _email_from(default_from)
        except ValueError:
            problems.append(
                f"{PREFIX}EMAIL_FROM: the default {default_from!r} (from {PREFIX}BASE_URL) is not a valid "
                'address; set it, e.g. "Hospital A <noreply@hospital-a.nl>"'
            )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _secret_key(values: dict[str, Any], env: Mapping[str, str], problems: list[str], create: bool) -> str:
    raw = env.get(PREFIX + "SECRET_KEY")
    is_sqlite = str(values.get("DATABASE_URL", "")).startswith("sqlite")
    if raw is not None:
        key = raw.strip()
        if (
            key.lower() in PLACEHOLDER_SECRETS
            or key.startswith("django-insecure")
            or len(key) < MIN_SECRET_LENGTH
        ) and not values.get("DEMO"):
            problems.append(
                f"{PREFIX}SECRET_KEY: looks like a placeholder; use at least {MIN_SECRET_LENGTH} random characters "
                "(e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
            )
        if _leaked(key):
            problems.append(f"{PREFIX}SECRET_KEY: this key was published once; generate a new one")
        values["SECRET_KEY"] = key
        return "environment"
    if not (values.get("DEMO") or is_sqlite):
        problems.append(
            f"{PREFIX}SECRET_KEY: must be set (the same on every machine) when the database is shared; "
            "it is only generated automatically in demo mode or with SQLite on one machine"
        )
        values["SECRET_KEY"] = ""
        return "missing"
    path = Path(values["DATA_DIR"]) / "secret_key"
    if path.exists() and values.get("DEMO") and create and _leaked(path.read_text(encoding="ascii")):
        path.unlink()  # demo data only: a fresh key is generated below (share codes made with the old one end)
    if path.exists():
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            problems.append(
                f"{PREFIX}SECRET_KEY: the key file {path} is readable by others; `chmod 600 {path}` "
                "(and check who could read it: if anyone, generate a new key)"
            )
        key = path.read_text(encoding="ascii").strip()
        if _leaked(key):
            problems.append(
                f"{PREFIX}SECRET_KEY: the key file {path} holds a key that was published once; delete it"
            )
        values["SECRET_KEY"] = key
    elif create:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        # O_EXCL: two processes starting at once must not write different keys.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            key = path.read_text(encoding="ascii").strip()
        else:
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(key + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        values["SECRET_KEY"] = key
    else:
        values["SECRET_KEY"] = ""
    return f"{path}"


def load(env: Mapping[str, str] | None = None, *, create_secret: bool = True) -> Config:
    """Parse every ``RADSHARE_*`` variable; raise ``ConfigError`` listing each bad one."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    problems: list[str] = []
    known = {PREFIX + s.name for s in SETTINGS} | {PREFIX + "REQUIRE_ALL"}
    for setting in SETTINGS:
        if setting.name == "SECRET_KEY":
            continue
        raw = env.get(PREFIX + setting.name, setting.default)
        if raw is None:
            values[setting.name] = None
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            problems.append(f"{PREFIX}{setting.name}={_shown(setting.name, raw)!r}: {exc}")
            values[setting.name] = None
    for name in sorted(env):
        if name.startswith(PREFIX) and name not in known:
            problems.append(f"{name}: unknown setting (see the README's table of RADSHARE_* settings)")
    _derive(values, env, problems)
    source = _secret_key(values, env, problems, create=create_secret and not problems)
    if problems:
        raise ConfigError(problems)
    return Config(**{name.lower(): value for name, value in values.items()}, secret_key_source=source)


# A request waits this long for a pooled connection before it is answered 503 (docs/security.md R7).
POOL_TIMEOUT_SECONDS = 10


def database_settings(url: str, data_dir: Path, pool_size: int = 16) -> dict[str, Any]:
    """Django DATABASES['default'] from a URL (SQLite: WAL + synchronous=FULL, docs/security.md R2).

    PostgreSQL connections come from a pool of at most ``pool_size`` per process (docs/security.md R7). Under
    ASGI each request may run in a new thread; persistent per-thread connections (``CONN_MAX_AGE``) then pile up
    until the server refuses everyone. With the pool a thread's connection goes back at the end of each request
    (``CONN_MAX_AGE`` 0), and a burst waits its turn instead.
    """
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_absolute():
            path = Path.cwd() / path
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(path),
            "OPTIONS": {
                # IMMEDIATE: writers queue for the lock at BEGIN instead of failing on upgrade.
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
            },
            "TEST": {"NAME": str(data_dir / "test.sqlite3")},
        }
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    options: dict[str, Any] = {}
    if "sslmode" in query:
        options["sslmode"] = query["sslmode"]
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/") or "radshare",
        "USER": parts.username or "",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "CONN_MAX_AGE": 0,  # required with a pool: each close hands the connection back
        # The pool checks a connection before handing it out, so a restarted server costs no failed request.
        "OPTIONS": {
            **options,
            "pool": {"min_size": 1, "max_size": pool_size, "timeout": POOL_TIMEOUT_SECONDS, "max_idle": 300},
        },
    }
