"""The SMS gateway's request body: a JSON template with ``{to}``, ``{text}``, ``{reference}`` and ``{sender}``.

``sms_body`` checks a ``RADSHARE_SMS_BODY`` template once, at start-up; ``fill_sms_body`` fills it in for each
message the HTTP SMS backend sends.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

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


def sms_body(raw: str) -> str:
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
