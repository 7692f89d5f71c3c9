"""Every route, found by walking the URL resolver, answers with the security headers (docs/security.md A13) and
refuses a state change without a CSRF token (A12), whoever asks: nobody, a sender, a recipient or an operator.

No list of URLs: a route added later is walked too. Path converters are filled with plausible values (the ids
and UIDs of one organisation's study and share where the parameter's name says what it is, a generic value of
the converter's type otherwise), and each generated path must resolve back to its own route. Whatever the status
(a page, a redirect, a 404, a refusal), the headers must be there.

The one exemption, by design: the REST API (``/api/``) authenticates with a bearer key, which browsers never send
on their own, so its operations skip the CSRF check; they must then ignore the session cookie altogether, so a
logged-in browser's request without a key is a 401 there.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from re import _constants as sre_constants  # the modules behind re (sre_parse, sre_constants until 3.13)
from re import _parser as sre_parse
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.resolvers import RegexPattern, RoutePattern
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from radshare.api import throttle
from radshare.organisations.models import Sender
from radshare.organisations.services import add_pacs_node, create_api_key, create_organisation, create_sender
from radshare.studies.models import Instance
from tests.recipients.conftest import logged_in_client, ready_share
from tests.shares.helpers import ANNA, make_study

UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
API = "/api/"


@dataclass(frozen=True)
class Route:
    path: str  # a concrete path that resolves to this route
    pattern: str  # as declared, for messages
    callback: Any

    @property
    def home(self) -> str:
        """Who uses it: the identity whose requests get furthest (docs/architecture.md "URLs and zoning")."""
        if self.path.startswith("/portal/"):
            return "sender"
        if self.path.startswith("/admin/"):
            return "operator"
        if self.path == "/" or self.path.startswith("/r/"):
            return "recipient"
        return "anonymous"


# --- walking the resolver ------------------------------------------------------------------------------------


def _patterns(resolver: URLResolver, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from _patterns(entry, (*prefix, entry.pattern))
        elif isinstance(entry, URLPattern):
            yield (*prefix, entry.pattern), entry.callback


def _sample_regex(regex: str, values: dict[str, str]) -> str:
    """A string the regular expression matches: named groups take ``values`` where given, repeats one item,
    alternatives the first."""

    def walk(items: Any) -> str:
        out = []
        for op, arg in items:
            if op is sre_constants.LITERAL:
                out.append(chr(arg))
            elif op is sre_constants.SUBPATTERN:
                group, _, _, sub = arg
                name = next((n for n, i in items.state.groupdict.items() if i == group), None)
                out.append(values[name] if name in values else walk(sub))
            elif op is sre_constants.BRANCH:
                out.append(walk(arg[1][0]))
            elif op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT):
                low, _high, sub = arg
                out.append(walk(sub) * max(low, 1))
            elif op is sre_constants.IN:
                negated = any(o is sre_constants.NEGATE for o, _ in arg)
                literals = [a for o, a in arg if o is sre_constants.LITERAL]
                out.append("x" if negated or not literals else chr(literals[0]))
            elif op is sre_constants.ANY:
                out.append("x")
            elif op is sre_constants.AT:
                continue
            else:
                raise AssertionError(f"cannot make a sample for {op} in {regex!r}")
        return "".join(out)

    return walk(sre_parse.parse(regex))


GENERIC = {"int": "1", "str": "x", "slug": "x", "path": "1", "uuid": "00000000-0000-4000-8000-000000000000"}


def _sample_route(route: str, values: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        converter, name = match.group(1) or "str", match.group(2)
        return values.get(name, GENERIC.get(converter, "x"))

    return re.sub(r"<(?:(\w+):)?(\w+)>", fill, route)


def routes(values: dict[str, str]) -> list[Route]:
    found = []
    for chain, callback in _patterns(get_resolver()):
        parts = []
        for pattern in chain:
            if isinstance(pattern, RoutePattern):
                parts.append(_sample_route(str(pattern), values))
            else:
                assert isinstance(pattern, RegexPattern)
                parts.append(_sample_regex(str(pattern).lstrip("^").rstrip("$"), values))
        path = "/" + "".join(parts)
        declared = "".join(str(p) for p in chain)
        match = resolve(path)
        assert match.func is callback or getattr(match.func, "__wrapped__", None) is callback, (
            declared,
            path,
        )
        found.append(Route(path, declared, callback))
    return found


# --- the world the routes are walked in ----------------------------------------------------------------------


@dataclass
class World:
    values: dict[str, str]
    clients: dict[str, Any]  # identity -> a function that makes a fresh client logged in as it


@pytest.fixture
def world(radshare_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    radshare_config(sms_url=f"file://{tmp_path / 'sms.jsonl'}", email_url=f"file://{tmp_path / 'mail'}")
    # Every keyless API request of the walk comes from one address: the throttle (tests/security/test_edges.py)
    # would answer them all 429 before the key is even looked at. Here the question is what the key check says.
    monkeypatch.setattr(throttle, "LIMIT", 10**9)
    organisation = create_organisation("walk", "Walk Hospital", require_two_factor=False)
    sender = create_sender(organisation, "alice", "correct horse battery staple", admin=True)
    operator = Sender.objects.create_superuser("operator", password="operator pass phrase 1")
    study = make_study(organisation, ANNA)
    share, _code = ready_share(organisation, [study], delivery="url", email="")
    instance = Instance.objects.filter(series__study=study).select_related("series").first()
    assert instance is not None
    create_api_key(organisation, "PACS")
    node = add_pacs_node(organisation, "WALKPACS")
    # Plausible values by parameter name; any other parameter gets a generic value of its converter's type.
    values = {
        "pk": str(study.pk),
        "instance_pk": str(instance.pk),
        "render_pk": str(instance.pk),
        "frame": "0",
        "kind": "preview",
        "share_id": str(share.pk),
        "study": study.study_instance_uid,
        "series": instance.series.series_instance_uid,
        "sop": instance.sop_instance_uid,
        "frames": "1",
        "object_id": str(node.pk),
        "app_label": "organisations",
    }

    # Operators always pass a second login step (docs/security.md A9): their sessions here have passed it, as
    # django-otp marks it, so that the walk reaches the admin's views.
    authenticator = TOTPDevice.objects.create(user=operator, name="authenticator app", confirmed=True)

    def as_user(user: Sender) -> Any:
        def make() -> Client:
            client = Client(enforce_csrf_checks=True, headers={"accept-language": "en"})
            client.force_login(user)
            if user.is_superuser:
                session = client.session
                session[DEVICE_ID_SESSION_KEY] = authenticator.persistent_id
                session.save()
            return client

        return make

    def recipient() -> Client:
        client = logged_in_client(share)
        client.handler.enforce_csrf_checks = True
        return client

    clients = {
        "anonymous": lambda: Client(enforce_csrf_checks=True, headers={"accept-language": "en"}),
        "sender": as_user(sender),
        "recipient": recipient,
        "operator": as_user(operator),
    }
    return World(values, clients)


# --- the checks ----------------------------------------------------------------------------------------------


def header_problems(response: Any) -> list[str]:
    problems = []
    csp = response.get("Content-Security-Policy", "")
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    default = directives.get("default-src", [])
    script = directives.get("script-src", default)
    if not csp:
        problems.append("no Content-Security-Policy")
    if not script or {"'unsafe-inline'", "'unsafe-eval'"} & set(script):
        problems.append(f"script-src {script}")
    for name in ("object-src", "base-uri", "frame-ancestors"):
        if directives.get(name, default if name == "object-src" else []) != ["'none'"]:
            problems.append(f"{name} not 'none'")
    expected = {
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
    }
    problems += [f"{h}: {response.get(h)!r}" for h, v in expected.items() if response.get(h) != v]
    if "no-store" not in [d.strip() for d in response.get("Cache-Control", "").split(",")]:
        problems.append(f"Cache-Control: {response.get('Cache-Control')!r}")
    return problems


def call(client: Client, method: str, path: str) -> Any:
    response = client.generic(method, path)
    if response.streaming:  # read to the end: the test client then ends the request as a server would
        for _chunk in response.streaming_content:
            pass
    return response


@pytest.mark.django_db
def test_every_route_answers_with_the_security_headers(world: World) -> None:
    """GET as nobody and as the route's own user (the answers to unsafe methods are checked by the CSRF test)."""
    problems = []
    for route in routes(world.values):
        for identity in {"anonymous", route.home}:
            response = call(world.clients[identity](), "GET", route.path)
            where = f"GET {route.path} ({response.status_code}) as {identity}"
            if response.status_code == 500:
                problems.append(f"{where}: a server error")
            problems += [f"{where}: {problem}" for problem in header_problems(response)]
    assert problems == []


@pytest.mark.django_db
def test_every_state_change_needs_a_csrf_token(world: World, caplog: pytest.LogCaptureFixture) -> None:
    """A POST without a token, from a browser that holds the session of the route's own user (and from one that
    holds none): refused with 403 by the CSRF check (Django logs each such refusal on ``django.security.csrf``)
    before the view runs, and with the security headers. The CSRF check treats every unsafe method and every
    user alike; a view exempt from it must refuse them itself, so there every unsafe method and user is tried."""
    caplog.set_level(logging.WARNING, logger="django.security.csrf")
    problems, walked = [], 0
    for route in routes(world.values):
        exempt = getattr(route.callback, "csrf_exempt", False)
        identities = list(world.clients) if exempt else sorted({"anonymous", route.home})
        for identity in identities:
            for method in UNSAFE if exempt else ("POST",):
                caplog.clear()
                response = call(world.clients[identity](), method, route.path)
                walked += 1
                where = f"{method} {route.path} ({response.status_code}) as {identity}"
                problems += [f"{where}: {problem}" for problem in header_problems(response)]
                problem = csrf_problem(route, identity, response, caplog.records)
                if problem:
                    problems.append(f"{where}: {problem}")
    assert problems == []
    assert walked > 100


def csrf_problem(route: Route, identity: str, response: Any, logged: list[logging.LogRecord]) -> str:
    status = response.status_code
    if not getattr(route.callback, "csrf_exempt", False):
        refused = status == 403 and any(r.name == "django.security.csrf" for r in logged)
        return "" if refused else "not refused by the CSRF check"
    if route.path.startswith(API):
        # Bearer keys only: the session is ignored, so the request has no credential at all.
        return "" if status in (401, 405) else "an API operation must ignore the session"
    if identity == route.home:
        refused = status == 405 or (status == 403 and any(r.name == "django.security.csrf" for r in logged))
        return "" if refused else "a view that checks its own token did not"
    # A view that checks the token itself (the upload parses its own body) after checking who asks: someone it
    # does not serve is refused or sent to log in, before any token matters.
    to_login = status == 302 and "login" in response["Location"]
    return (
        "" if to_login or status in (403, 404, 405) else "a view that checks its own token let a stranger in"
    )
