"""radshare's configuration: ``RADSHARE_*`` environment variables, parsed and validated once.

Every setting is declared once in ``SETTINGS`` (name, default, parser, help); the README's table and
``radshare config`` are both made from it. ``load()`` collects *all* bad values before failing, so an
operator sees every problem in one run, one line each, and returns a ``Config``: a frozen dataclass with one
typed field per setting, so mypy checks every ``settings.RADSHARE.<name>`` (a test keeps fields and
``SETTINGS`` in step).

The parts: ``table`` declares the settings; ``parsers``, ``urls`` and ``sms_template`` parse their values;
``derive`` works out the defaults that depend on other settings and refuses combinations that cannot work;
``secret_key`` finds (or generates) the secret key and refuses a weak one; ``typed`` holds ``Config``;
``masking`` hides credentials in what is printed; ``database`` makes Django's database settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from radshare.core.config.database import POOL_TIMEOUT_SECONDS, database_settings
from radshare.core.config.derive import derive
from radshare.core.config.masking import masked
from radshare.core.config.secret_key import (
    LEAKED_SECRET_KEYS,
    MIN_SECRET_LENGTH,
    PLACEHOLDER_SECRETS,
    resolve_secret_key,
)
from radshare.core.config.sms_template import SMS_BODY_DEFAULT, SMS_BODY_FIELDS, fill_sms_body
from radshare.core.config.table import PREFIX, SETTINGS, Setting
from radshare.core.config.typed import Config
from radshare.core.config.urls import url_flag

__all__ = [
    "LEAKED_SECRET_KEYS",
    "MIN_SECRET_LENGTH",
    "PLACEHOLDER_SECRETS",
    "POOL_TIMEOUT_SECONDS",
    "PREFIX",
    "SETTINGS",
    "SMS_BODY_DEFAULT",
    "SMS_BODY_FIELDS",
    "Config",
    "ConfigError",
    "Setting",
    "database_settings",
    "fill_sms_body",
    "load",
    "url_flag",
]


class ConfigError(Exception):
    """One or more settings are invalid; ``problems`` holds one line per setting."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# Read by the test suite, not by radshare (README "Development"): CI's "fail when a component is missing" and
# the browser journeys' screenshots.
TEST_ONLY = ("REQUIRE_ALL", "SCREENSHOTS")


def load(env: Mapping[str, str] | None = None, *, create_secret: bool = True) -> Config:
    """Parse every ``RADSHARE_*`` variable; raise ``ConfigError`` listing each bad one."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    problems: list[str] = []
    known = {PREFIX + s.name for s in SETTINGS} | {PREFIX + name for name in TEST_ONLY}
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
            problems.append(f"{PREFIX}{setting.name}={masked(setting.name, raw)!r}: {exc}")
            values[setting.name] = None
    for name in sorted(env):
        if name.startswith(PREFIX) and name not in known:
            problems.append(f"{name}: unknown setting (see the README's table of RADSHARE_* settings)")
    derive(values, env, problems)
    source = resolve_secret_key(values, env, problems, create=create_secret and not problems)
    if problems:
        raise ConfigError(problems)
    return Config(**{name.lower(): value for name, value in values.items()}, secret_key_source=source)
