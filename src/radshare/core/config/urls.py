"""Settings written as a URL: the site's address, the database, e-mail, SMS and storage.

Each parser checks the scheme, the parts that scheme needs (a host, a port that is a number, an absolute path) and
its query options: an unknown or repeated option is refused, since a typo must not be ignored. ``url_flag`` reads
a 1/0 option of a URL that has passed these checks, for the e-mail and SMS backends.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import SplitResult, parse_qsl, urlsplit

from radshare.core.config.parsers import boolean


def base_url(raw: str) -> str:
    value = raw.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL, e.g. https://radshare.example.org")
    if parts.query or parts.fragment:
        raise ValueError("must not hold a query or fragment")
    return value


def database_url(raw: str) -> str:
    value = raw.strip()
    scheme = urlsplit(value).scheme
    if scheme not in {"sqlite", "postgres", "postgresql"}:
        raise ValueError("must start with sqlite:/// or postgres://")
    if scheme == "sqlite" and not value.startswith("sqlite:///"):
        raise ValueError("a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path")
    return value


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
        return boolean(query[name])
    except ValueError:
        raise ValueError(f"?{name}= must be 1 or 0") from None


def _file_url(parts: SplitResult, kind: str, example: str) -> None:
    if not parts.path or parts.netloc not in {"", "localhost"}:
        raise ValueError(f"a file:// {kind} URL needs an absolute path (three slashes), e.g. {example}")


def url_flag(url: str, name: str, default: bool) -> bool:
    """A 1/0 option of a validated message URL (``?starttls=1``, ``?tls=0``)."""
    return _url_flag(dict(parse_qsl(urlsplit(url).query)), name, default)


def email_url(raw: str) -> str:
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


def sms_url(raw: str) -> str:
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


def storage_url(raw: str) -> str:
    value = raw.strip()
    parts = urlsplit(value)
    if parts.scheme == "s3":
        from radshare.core.storage.s3 import S3Storage  # late import: the storage package reads settings

        S3Storage.from_url(value)  # its own rules for the bucket and the options; contacts nothing
        return value
    if parts.scheme != "file" or not parts.path:
        raise ValueError("must be file:///absolute/dir or s3://bucket/prefix?endpoint_url=...&region=...")
    _file_url(parts, "storage", "file:///var/lib/radshare/storage")
    # ?shared=1 says every process on every machine sees this same folder (one machine, or NFS); the
    # configuration asks for it when the database is shared (see derive.py), see docs/operations.md.
    _url_flag(_url_query(parts, ("shared",), "file://"), "shared", False)
    return value
