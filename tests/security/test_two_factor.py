"""The second login step (docs/security.md A9, A26): setting up an authenticator app, logging in with password and
code, wrong codes limited and audited, recovery codes, resets by an organisation admin and by the operator, no
internal page before the step, and operators always passing it."""

from __future__ import annotations

import base64
import io
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.resolvers import RegexPattern, RoutePattern
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from radshare.audit.models import AuditEvent
from radshare.core.middleware import INTERNAL_PREFIXES
from radshare.organisations.models import Organisation, RecoveryCode, Sender
from radshare.organisations.services import (
    MAX_FAILED_PER_ACCOUNT_AND_ADDRESS,
    create_api_key,
    create_sender,
    device_cookie_name,
)
from radshare.runtime.demo import credentials_path, load_demo
from tests.conftest import pass_second_factor, totp_code

PASSWORD = "correct horse battery staple"
OPERATOR_PASSWORD = "operator pass phrase 1"
WRONG = "This code is not right, or it was used already."
THROTTLED = "Too many failed attempts. Wait 15 minutes and try again, or ask your administrator."


def english(address: str = "127.0.0.1") -> Client:
    return Client(headers={"accept-language": "en"}, REMOTE_ADDR=address)


def log_in(client: Client, username: str = "tessa", password: str = PASSWORD) -> Any:
    return client.post("/portal/login/", {"username": username, "password": password})


def actions(**filters: Any) -> list[str]:
    return list(AuditEvent.objects.filter(**filters).order_by("id").values_list("action", flat=True))


def steady_clock() -> None:
    """Codes are worked out for a time step: start a test well inside one, so that it does not end halfway."""
    if time.time() % 30 > 25:
        time.sleep(30 - time.time() % 30 + 0.1)


@pytest.fixture
def tessa(two_factor_organisation: Organisation) -> Sender:
    return create_sender(two_factor_organisation, "tessa", PASSWORD)


def enrol(client: Client) -> tuple[bytes, list[str]]:
    """Set up an app as a person does: read the key from the page, type the app's code, read the recovery codes.
    Returns the key and the codes."""
    page = client.get("/portal/two-factor/setup/?next=/portal/").content.decode()
    assert 'src="data:image/svg+xml' in page  # the QR code, under the CSP's img-src 'self' data:
    secret = re.search(r'id="two-factor-secret"[^>]*>([A-Z2-7 ]+)</code>', page)
    assert secret is not None
    key = base64.b32decode(
        secret.group(1).replace(" ", "") + "=" * (-len(secret.group(1).replace(" ", "")) % 8)
    )
    response = client.post("/portal/two-factor/setup/", {"code": app_code(key), "next": "/portal/"})
    assert response.status_code == 302
    assert response["Location"] == "/portal/two-factor/recovery-codes/?next=/portal/"
    page = client.get(response["Location"]).content.decode()
    codes = re.findall(r"<li><code>([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})</code></li>", page)
    return key, codes


def app_code(key: bytes, steps: int = 0) -> str:
    """What an authenticator app holding ``key`` shows, ``steps`` time steps from now."""
    totp = TOTP(key)
    totp.time = time.time() + 30 * steps
    return f"{totp.token():06d}"


# --- Setting up, logging in ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_set_up_log_out_and_log_in_with_password_and_code(tessa: Sender) -> None:
    steady_clock()
    client = english()
    response = log_in(client)
    assert response["Location"] == "/portal/two-factor/?next=/portal/"
    # The password alone makes no known device: that waits for the second step (docs/security.md A26).
    assert device_cookie_name() not in response.cookies
    assert client.get("/portal/")["Location"] == "/portal/two-factor/?next=/portal/"
    # No app yet: the step sends the sender to set one up.
    assert (
        client.get("/portal/two-factor/?next=/portal/")["Location"]
        == "/portal/two-factor/setup/?next=/portal/"
    )

    key, codes = enrol(client)
    assert len(codes) == 10 == len(set(codes))
    assert RecoveryCode.objects.filter(sender=tessa).count() == 10
    stored = list(RecoveryCode.objects.values_list("code_hash", flat=True))
    assert not any(code in h or code.replace("-", "") in h for code in codes for h in stored)
    # Shown once: the page shows them no more.
    assert codes[0] not in client.get("/portal/two-factor/recovery-codes/").content.decode()
    assert client.get("/portal/").status_code == 200
    assert actions(action__startswith="portal.2fa") == ["portal.2fa.enrolled"]
    assert TOTPDevice.objects.get(user=tessa).confirmed

    client.post("/portal/logout/")
    response = log_in(client)
    assert response["Location"] == "/portal/two-factor/?next=/portal/"
    assert client.get("/portal/").status_code == 302
    # The code that set the app up cannot be used again (django-otp keeps the last time step).
    assert WRONG in client.post("/portal/two-factor/", {"code": app_code(key)}).content.decode()
    response = client.post("/portal/two-factor/", {"code": app_code(key, steps=1), "next": "/portal/"})
    assert response["Location"] == "/portal/"
    assert device_cookie_name() in response.cookies
    assert client.get("/portal/").status_code == 200
    verified = AuditEvent.objects.get(action="portal.2fa.verified")
    assert (verified.actor_id, verified.organisation_id) == (tessa.pk, tessa.organisation_id)


@pytest.mark.django_db
def test_a_code_one_step_late_or_early_works_two_steps_do_not(
    tessa: Sender, two_factor_organisation: Organisation
) -> None:
    steady_clock()
    client = english()
    log_in(client)
    client.get("/portal/two-factor/setup/")
    key = TOTPDevice.objects.get(user=tessa).bin_key
    # Setting up: the app's code from two steps ago is refused, the one from one step ago accepted.
    assert WRONG in client.post("/portal/two-factor/setup/", {"code": app_code(key, -2)}).content.decode()
    assert client.post("/portal/two-factor/setup/", {"code": app_code(key, -1)}).status_code == 302
    # Logging in: a code two steps ahead is refused, one step ahead accepted.
    create_sender(two_factor_organisation, "tom", PASSWORD)
    client = english()
    log_in(client, "tom")
    enrol(client)
    client.post("/portal/logout/")
    log_in(client, "tom")
    key = TOTPDevice.objects.get(user__username="tom").bin_key
    assert WRONG in client.post("/portal/two-factor/", {"code": app_code(key, 2)}).content.decode()
    assert client.post("/portal/two-factor/", {"code": app_code(key, 1)}).status_code == 302


@pytest.mark.django_db
def test_a_sender_without_the_requirement_logs_in_with_a_password(sender: Sender) -> None:
    client = english()
    response = log_in(client, "alice")
    assert response["Location"] == "/portal/"
    assert device_cookie_name() in response.cookies
    assert client.get("/portal/").status_code == 200


@pytest.mark.django_db
def test_the_step_can_be_left_by_logging_out(tessa: Sender) -> None:
    Sender.objects.create_superuser("operator", password=OPERATOR_PASSWORD)
    for login, username, password, login_page in (
        ("/portal/login/", "tessa", PASSWORD, "/portal/login/"),
        ("/admin/login/?next=/admin/", "operator", OPERATOR_PASSWORD, "/admin/login/"),
    ):
        client = english()
        client.post(login, {"username": username, "password": password})
        step = "/admin/two-factor/setup/" if username == "operator" else "/portal/two-factor/setup/"
        page = client.get(step).content.decode()  # no app yet: the setup page
        form = re.search(
            r'<form action="([^"]+)" method="post" class="inline">.*?name="next" value="([^"]+)"', page
        )
        assert form is not None
        response = client.post(form.group(1), {"next": form.group(2)})
        assert response["Location"] == login_page
        assert client.get(step)["Location"].startswith(login_page)
    assert actions(action="portal.logout") == ["portal.logout"] * 2


# --- Wrong codes ----------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_wrong_codes_are_audited_and_limited_per_account_and_address(tessa: Sender) -> None:
    own = english("10.0.0.7")  # tessa's own browser: it set up the app, and is a known device since
    log_in(own)
    pass_second_factor(own, tessa)
    own.post("/portal/logout/")
    other = english("10.0.0.7")  # someone else at that address, who has her password
    log_in(other)
    for _ in range(MAX_FAILED_PER_ACCOUNT_AND_ADDRESS):
        assert WRONG in other.post("/portal/two-factor/", {"code": "000000"}).content.decode()
    failed = AuditEvent.objects.filter(action="portal.2fa.failed")
    assert failed.count() == MAX_FAILED_PER_ACCOUNT_AND_ADDRESS
    assert {(e.outcome, e.actor_id, e.client_address, e.detail["kind"]) for e in failed} == {
        ("failure", tessa.pk, "10.0.0.7", "totp")
    }
    # The eleventh is refused before it is looked at, even when right.
    device = TOTPDevice.objects.get(user=tessa)
    assert THROTTLED in other.post("/portal/two-factor/", {"code": totp_code(device)}).content.decode()
    assert other.get("/portal/").status_code == 302
    throttled = AuditEvent.objects.get(action="portal.2fa.throttled")
    assert (throttled.outcome, throttled.actor_id, throttled.detail["reason"]) == (
        "denied",
        tessa.pk,
        "account_address",
    )
    # Those failures do not keep tessa out: not on her own browser (a known device, counted on its own) ...
    log_in(own)
    pass_second_factor(own, tessa)
    assert own.get("/portal/").status_code == 200
    # ... nor from another address.
    elsewhere = english("10.0.0.8")
    log_in(elsewhere)
    pass_second_factor(elsewhere, tessa)
    assert elsewhere.get("/portal/").status_code == 200


# --- Recovery codes -------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_recovery_code_works_once_and_new_ones_end_the_old(tessa: Sender) -> None:
    client = english()
    log_in(client)
    _key, codes = enrol(client)
    client.post("/portal/logout/")

    log_in(client)
    typed = codes[0].lower().replace("-", " ")  # as a person may type it
    response = client.post("/portal/two-factor/", {"code": typed, "next": "/portal/"})
    assert response["Location"] == "/portal/"
    assert "9 are left" in client.get("/portal/").content.decode()
    used = AuditEvent.objects.get(action="portal.2fa.recovery_used")
    assert (used.actor_id, used.detail) == (tessa.pk, {"left": 9})
    client.post("/portal/logout/")

    log_in(client)
    assert WRONG in client.post("/portal/two-factor/", {"code": codes[0]}).content.decode()
    assert AuditEvent.objects.get(action="portal.2fa.failed").detail["kind"] == "recovery"
    assert client.post("/portal/two-factor/", {"code": codes[1]}).status_code == 302

    # New codes (the old ones end), shown once.
    response = client.post("/portal/two-factor/recovery-codes/", {"next": "/portal/"})
    page = client.get(response["Location"]).content.decode()
    fresh = re.findall(r"<li><code>([0-9A-Z-]{14})</code></li>", page)
    assert len(fresh) == 10
    assert "portal.2fa.recovery_codes" in actions()
    client.post("/portal/logout/")
    log_in(client)
    assert WRONG in client.post("/portal/two-factor/", {"code": codes[2]}).content.decode()
    assert client.post("/portal/two-factor/", {"code": fresh[0]}).status_code == 302


# --- Resets ---------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_organisation_admin_resets_a_sender_who_then_sets_up_again(
    tessa: Sender, two_factor_organisation: Organisation, other_organisation: Organisation
) -> None:
    tessa_client = english()
    log_in(tessa_client)
    pass_second_factor(tessa_client, tessa)
    admin = create_sender(two_factor_organisation, "adam", PASSWORD, admin=True)
    admin_client = english("10.0.0.2")
    log_in(admin_client, "adam")
    pass_second_factor(admin_client, admin)

    page = admin_client.get("/portal/senders/").content.decode()
    assert "tessa" in page
    assert f"/portal/senders/{tessa.pk}/reset-two-factor/" in page
    confirm = admin_client.get(f"/portal/senders/{tessa.pk}/reset-two-factor/")
    assert confirm.status_code == 200
    assert TOTPDevice.objects.filter(user=tessa).exists()  # a GET changes nothing
    response = admin_client.post(f"/portal/senders/{tessa.pk}/reset-two-factor/")
    assert response["Location"] == "/portal/senders/"
    assert not TOTPDevice.objects.filter(user=tessa).exists()
    assert not RecoveryCode.objects.filter(sender=tessa).exists()
    reset = AuditEvent.objects.get(action="portal.2fa.reset")
    assert (reset.actor_id, reset.organisation_id, reset.detail["sender_id"]) == (
        admin.pk,
        two_factor_organisation.pk,
        tessa.pk,
    )

    # Tessa's session, verified before, counts no more: she sets up an app again.
    assert tessa_client.get("/portal/")["Location"] == "/portal/two-factor/?next=/portal/"
    assert tessa_client.get("/portal/two-factor/?next=/portal/")["Location"].startswith(
        "/portal/two-factor/setup/"
    )
    pass_second_factor(tessa_client, tessa)
    assert tessa_client.get("/portal/").status_code == 200

    # Only the admin's own organisation, and only admins.
    stranger = create_sender(other_organisation, "olga", PASSWORD)
    assert admin_client.post(f"/portal/senders/{stranger.pk}/reset-two-factor/").status_code == 404
    denied = AuditEvent.objects.get(action="portal.2fa.reset", outcome="denied")
    assert denied.detail["requested_id"] == stranger.pk
    assert tessa_client.get("/portal/senders/").status_code == 403
    assert tessa_client.post(f"/portal/senders/{admin.pk}/reset-two-factor/").status_code == 403


@pytest.mark.django_db
def test_the_operator_resets_any_account_from_the_command_line(tessa: Sender) -> None:
    client = english()
    log_in(client)
    pass_second_factor(client, tessa)
    out = io.StringIO()
    call_command("sender", "reset-2fa", "tessa", stdout=out)
    assert "reset the second login step of tessa" in out.getvalue()
    assert not TOTPDevice.objects.filter(user=tessa).exists()
    event = AuditEvent.objects.get(action="admin.2fa.reset")
    assert (event.actor_type, event.organisation_id, event.detail["sender_id"]) == (
        "system",
        tessa.organisation_id,
        tessa.pk,
    )
    assert client.get("/portal/").status_code == 302
    with pytest.raises(CommandError, match="no account"):
        call_command("sender", "reset-2fa", "nobody", stdout=io.StringIO())


# --- No page before the step ------------------------------------------------------------------------------------------

SAMPLES = {"int": "1", "str": "x", "slug": "x", "path": "x/1", "uuid": "00000000-0000-0000-0000-000000000001"}
REGEX_SAMPLES = ("1", "x", "organisations", "")


def _regex_example(regex: str) -> str:
    """A path the regex matches: each named group replaced by a sample its own pattern takes."""
    regex = regex.removeprefix("^").removesuffix("$").removesuffix(r"\Z")
    out, i = "", 0
    while (start := regex.find("(?P<", i)) >= 0:
        depth, end = 0, start
        while True:
            depth += {"(": 1, ")": -1}.get(regex[end], 0)
            if depth == 0:
                break
            end += 1
        inner = regex[regex.index(">", start) + 1 : end]
        out += regex[i:start] + next(s for s in REGEX_SAMPLES if re.fullmatch(inner, s))
        i = end + 1
    return out + regex[i:]


def _example(pattern: Any) -> str:
    if isinstance(pattern, RoutePattern):
        return re.sub(r"<(?:(\w+):)?\w+>", lambda m: SAMPLES[m.group(1) or "str"], str(pattern._route))
    assert isinstance(pattern, RegexPattern), pattern
    return _regex_example(pattern._regex)


def internal_paths(resolver: URLResolver | None = None, prefix: str = "/") -> Iterator[str]:
    """One example path of every URL pattern under the internal groups (docs/architecture.md "URLs and
    zoning"), found by walking the URL conf."""
    for entry in (resolver or get_resolver()).url_patterns:
        path = prefix + _example(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from internal_paths(entry, path)
        elif isinstance(entry, URLPattern) and path.startswith(INTERNAL_PREFIXES):
            resolve(path)  # a sample that builds no working path would test nothing
            yield path


OPEN_BEFORE_THE_STEP = {
    "/portal/two-factor/",
    "/portal/two-factor/setup/",
    "/portal/logout/",
    "/admin/two-factor/",
    "/admin/two-factor/setup/",
}


@pytest.mark.django_db
def test_a_password_only_session_reaches_no_internal_page(tessa: Sender) -> None:
    client = english()
    assert log_in(client).status_code == 302
    paths = sorted(set(internal_paths()))
    assert len(paths) > 50  # the walk found the portal, the API and the admin
    assert {"/portal/", "/api/v1/docs", "/admin/"} <= set(paths)
    assert set(paths) >= OPEN_BEFORE_THE_STEP
    for path in paths:
        if path in OPEN_BEFORE_THE_STEP:
            continue
        for method in (client.get, client.post):
            response = method(path)
            step = "/admin/two-factor/" if path.startswith("/admin/") else "/portal/two-factor/"
            assert response.status_code == 403 or (
                response.status_code == 302 and response["Location"].startswith(f"{step}?next=")
            ), (method.__name__, path, response.status_code)
    assert not actions(action__startswith="portal.stud")


@pytest.mark.django_db
def test_the_api_with_a_key_is_unaffected_by_a_pending_session(tessa: Sender) -> None:
    key = create_api_key(tessa.organisation, "PACS")[1]  # type: ignore[arg-type]
    client = english()
    log_in(client)
    response = client.get("/api/v1/studies?patient_id=P1", headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 200
    assert response.json() == []
    assert client.get("/api/v1/studies?patient_id=P1").status_code == 302  # a session alone: sent to its step


# --- Operators ------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_operator_passes_the_step_in_the_admin_even_when_the_organisation_does_not_require_it(
    organisation: Organisation,
) -> None:
    assert not organisation.require_two_factor
    operator = Sender.objects.create_superuser("operator", password=OPERATOR_PASSWORD)
    Sender.objects.filter(pk=operator.pk).update(organisation=organisation)
    client = english()
    login = client.post("/admin/login/?next=/admin/", {"username": "operator", "password": OPERATOR_PASSWORD})
    assert login["Location"] == "/admin/"
    assert client.get("/admin/")["Location"] == "/admin/two-factor/?next=/admin/"
    assert (
        client.get("/admin/two-factor/?next=/admin/")["Location"] == "/admin/two-factor/setup/?next=/admin/"
    )
    assert client.get("/admin/organisations/organisation/").status_code == 302
    pass_second_factor(client, operator, site="admin")
    assert client.get("/admin/").status_code == 200
    assert actions(action__startswith="admin.2fa") == ["admin.2fa.enrolled"]
    # The operator turns the requirement on for the organisation.
    response = client.post(
        f"/admin/organisations/organisation/{organisation.pk}/change/",
        {
            "name": organisation.name,
            "slug": organisation.slug,
            "contact_phone": organisation.contact_phone,
            "is_active": "on",
            "require_two_factor": "on",
            "onward_sharing": organisation.onward_sharing,
            "pacs_nodes-TOTAL_FORMS": "0",
            "pacs_nodes-INITIAL_FORMS": "0",
            "pacs_nodes-MIN_NUM_FORMS": "0",
            "pacs_nodes-MAX_NUM_FORMS": "1000",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    organisation.refresh_from_db()
    assert organisation.require_two_factor
    # django-otp's own admin pages (which would show every app's secret) are not there.
    assert client.get("/admin/otp_totp/totpdevice/").status_code == 404


# --- The demo -----------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_demo_login_needs_no_second_step(radshare_config: Any, tmp_path: Any) -> None:
    radshare_config(demo=True, data_dir=str(tmp_path))
    load_demo()
    username, password = credentials_path().read_text(encoding="utf-8").strip().split(" / ")
    client = english()
    assert log_in(client, username, password)["Location"] == "/portal/"
    assert client.get("/portal/").status_code == 200
