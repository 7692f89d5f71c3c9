"""What of a setting's value may be shown: in ``radshare config`` and in configuration errors.

Passwords and tokens in a URL's user part, credential-like query options (``?api_key=``) and credential-like
fields of the SMS body template (``"token": "..."``) are replaced by ``***``.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

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


def masked(name: str, value: str) -> str:
    """A setting's value as it may be printed: in ``radshare config`` and in configuration errors."""
    return _mask_json_secrets(value) if name == "SMS_BODY" else _mask_url_password(value)
