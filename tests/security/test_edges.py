"""Hardened edges: refused API keys throttled per client address across processes, with a bounded audit trail
(docs/security.md A11), and request bodies capped before anything reads them (core/middleware.py::BodyLimit),
over a real socket to a real ``radshare web``."""

from __future__ import annotations

import datetime as dt
import re
import select
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import requests
import time_machine
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from radshare.api import throttle
from radshare.api.models import RefusedMinute
from radshare.api.tasks import report_refused_keys
from radshare.audit.models import AuditEvent
from radshare.core import middleware
from radshare.organisations.models import ApiKey, Organisation
from radshare.organisations.services import create_api_key, create_organisation, create_sender
from radshare.studies.models import Instance
from radshare.studies.synthetic import FakePatient, ct_series, encode

URL = "/api/v1/studies?patient_id=P1"
SCANNER = "203.0.113.7"
PACS = "203.0.113.8"
MB = 1024 * 1024
ANNA = FakePatient("P100", "Jansen^Anna", dt.date(1968, 3, 14), sex="F")


def bearer(key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def wrong(key: str) -> str:
    return key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")


def refused_entries() -> list[AuditEvent]:
    entries = AuditEvent.objects.filter(action__in=["api.auth.failed", "api.auth.throttled"])
    return sorted(entries, key=lambda e: str(e.detail["minute"]))


@pytest.fixture
def key(organisation: Organisation) -> str:
    return create_api_key(organisation, "PACS")[1]


# --- refused keys, in this process ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_wrong_keys_from_one_address_are_throttled_and_others_are_not(key: str) -> None:
    scanner, pacs = Client(REMOTE_ADDR=SCANNER), Client(REMOTE_ADDR=PACS)
    with time_machine.travel(timezone.now().replace(second=5), tick=False) as clock:
        answers = [scanner.get(URL, **bearer(wrong(key))) for _ in range(throttle.LIMIT + 5)]  # type: ignore[arg-type]
        assert [a.status_code for a in answers] == [401] * throttle.LIMIT + [429] * 5
        refused = answers[-1]
        assert refused.json() == {
            "code": "too_many_requests",
            "message": "Too many requests with a wrong API key from this address; try again in 595 seconds.",
        }
        # The minute's failures leave the window 10 minutes after it began.
        assert refused["Retry-After"] == "595"
        # Refused before any key is looked at: the right key from there is refused too, and not used.
        assert scanner.get(URL, **bearer(key)).status_code == 429  # type: ignore[arg-type]
        assert ApiKey.objects.get().last_used_at is None
        # A working key elsewhere is not slowed down, and its successes count for nothing.
        assert [pacs.get(URL, **bearer(key)).status_code for _ in range(throttle.LIMIT + 5)] == [200] * 25  # type: ignore[arg-type]

        clock.shift(timedelta(minutes=9, seconds=50))  # 9:55 after the failures' minute began
        assert scanner.get(URL, **bearer(key)).status_code == 429  # type: ignore[arg-type]
        clock.shift(timedelta(seconds=10))
        assert scanner.get(URL, **bearer(key)).status_code == 200  # type: ignore[arg-type]
        assert scanner.get(URL, **bearer(wrong(key))).status_code == 401  # type: ignore[arg-type]

        # One entry a minute with its counts (the burst's, and the one refusal 9 minutes later), none for the
        # good requests, written by the next refused request once their minutes are over. Its own minute is not.
        assert throttle.report_closed_minutes() == 0
        burst, later = refused_entries()
        assert (burst.action, burst.outcome, burst.client_address) == (
            "api.auth.throttled",
            "denied",
            SCANNER,
        )
        assert {k: burst.detail[k] for k in ("failures", "throttled", "reason")} == {
            "failures": throttle.LIMIT,
            "throttled": 6,
            "reason": "unknown, malformed or revoked key",
        }
        assert (later.action, later.detail["failures"], later.detail["throttled"]) == (
            "api.auth.throttled",
            0,
            1,
        )
        for entry in (burst, later):
            assert key not in repr(entry.__dict__)
            assert key[:11] not in repr(entry.__dict__)
        # The periodic job reports it once its minute is over.
        assert report_refused_keys.call() == 0
        clock.shift(timedelta(minutes=1, seconds=10))
        assert report_refused_keys.call() == 1
        assert [(e.action, e.detail["failures"]) for e in refused_entries()][-1] == ("api.auth.failed", 1)


@pytest.mark.django_db
def test_a_steady_scanner_leaves_one_entry_a_minute(key: str) -> None:
    """25 wrong keys a minute for 21 minutes: throttled all along, and the trail grows by one entry a minute, whose
    counts add up to every request."""
    scanner = Client(REMOTE_ADDR=SCANNER)
    minutes, per_minute = 21, 25  # three windows of ten minutes begin in it
    with time_machine.travel(timezone.now().replace(second=0), tick=False) as clock:
        statuses = []
        for _minute in range(minutes):
            for _ in range(per_minute):
                statuses.append(scanner.get(URL, **bearer(wrong(key))).status_code)  # type: ignore[arg-type]
                clock.shift(timedelta(seconds=60 / per_minute))
            throttle.report_closed_minutes()  # as each later request or the periodic job would
        entries = refused_entries()
        assert len(entries) <= minutes
        clock.shift(timedelta(minutes=2))
        throttle.report_closed_minutes()
        entries = refused_entries()
    assert len(entries) == minutes
    assert sum(e.detail["failures"] + e.detail["throttled"] for e in entries) == minutes * per_minute
    # Only 20 failures in any 10 minutes had their key checked at all: the rest never reached a key.
    assert sum(e.detail["failures"] for e in entries) == statuses.count(401) == throttle.LIMIT * 3
    assert statuses.count(429) == minutes * per_minute - statuses.count(401)


@pytest.mark.django_db
def test_addresses_behind_a_trusted_proxy_are_counted_apart(radshare_config: Any, key: str) -> None:
    radshare_config(trusted_proxies=("10.0.0.1",))
    proxy = Client(REMOTE_ADDR="10.0.0.1")
    for _ in range(throttle.LIMIT):
        proxy.get(URL, HTTP_X_FORWARDED_FOR=SCANNER, **bearer(wrong(key)))  # type: ignore[arg-type]
    assert proxy.get(URL, HTTP_X_FORWARDED_FOR=SCANNER, **bearer(key)).status_code == 429  # type: ignore[arg-type]
    assert proxy.get(URL, HTTP_X_FORWARDED_FOR=PACS, **bearer(key)).status_code == 200  # type: ignore[arg-type]
    # An X-Forwarded-For from anyone else is not believed: that peer is counted as itself.
    stranger = Client(REMOTE_ADDR="192.0.2.50")
    assert stranger.get(URL, HTTP_X_FORWARDED_FOR=PACS, **bearer(wrong(key))).status_code == 401  # type: ignore[arg-type]
    assert set(RefusedMinute.objects.values_list("client_address", flat=True)) == {SCANNER, "192.0.2.50"}


# --- over a socket, across processes --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_limit_holds_across_web_processes(start_web: Callable[..., int]) -> None:
    """Two web processes on one database: wrong keys sent to either count together."""
    organisation = create_organisation("edges", "Edges Hospital")
    plain = create_api_key(organisation, "PACS")[1]
    ports = [start_web(trusted_proxies="127.0.0.1") for _ in range(2)]

    def get(port: int, address: str, token: str) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": address}
        return requests.get(f"http://127.0.0.1:{port}{URL}", headers=headers, timeout=10)

    statuses = [get(ports[i % 2], SCANNER, wrong(plain)).status_code for i in range(throttle.LIMIT + 4)]
    assert statuses == [401] * throttle.LIMIT + [429] * 4
    for port in ports:
        refused = get(port, SCANNER, plain)
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 600
        assert refused.json()["code"] == "too_many_requests"
        assert get(port, PACS, plain).status_code == 200
    throttle.report_closed_minutes(timezone.now() + timedelta(minutes=2))  # the processes may have done some
    entries = refused_entries()
    assert len(entries) == RefusedMinute.objects.filter(client_address=SCANNER).count() <= 2  # one a minute
    assert sum(e.detail["failures"] for e in entries) == throttle.LIMIT
    assert sum(e.detail["throttled"] for e in entries) == 4 + len(ports)


def raw_answer(sock: socket.socket, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Read an HTTP answer until the server closes the connection."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass  # the server closed with the unread body in its buffer: what came before still counts
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def post_head(port: int, path: str, *headers: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Accept-Language: en", *headers, "", ""]
    sock.sendall("\r\n".join(head).encode())
    return sock


def assert_security_headers(headers: dict[str, str]) -> None:
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"
    assert "no-store" in headers["cache-control"]


def test_the_upload_views_exist() -> None:
    """The body limit names the views that take files; a renamed one would fall back to the small limit."""
    for name in middleware.UPLOAD_VIEWS:
        path = reverse(name, kwargs={"pk": 1}) if name == "imaging:report_attach" else reverse(name)
        assert middleware.body_limit(path) > middleware.BODY_LIMIT
    assert middleware.body_limit("/") == middleware.body_limit("/no/such/page") == middleware.BODY_LIMIT


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
def test_a_large_body_is_refused_before_it_is_read(start_web: Callable[..., int]) -> None:
    """50 MB announced to an ordinary page or the API: the answer is a 413 before a byte of the body is sent (so
    nothing of it can have been written anywhere); a 50 MB body without a length is cut off near the limit."""
    port = start_web(upload_max_mb=8)
    for path, expect_json in (("/", False), ("/r/birth-date", False), ("/api/v1/shares", True)):
        started = time.monotonic()
        sock = post_head(port, path, f"Content-Length: {50 * MB}", "Content-Type: application/octet-stream")
        with sock:
            status, headers, body = raw_answer(sock)
        assert status == 413, (path, body[:300])
        assert time.monotonic() - started < 5
        assert headers["connection"] == "close"
        assert_security_headers(headers)
        if expect_json:
            assert body == b'{"code": "too_large", "message": "The request body is larger than 4 MB."}'
        else:
            assert b"Too much data sent" in body
            assert b"Traceback" not in body

    # A client that waits for "100 Continue" before sending the body gets the refusal instead.
    sock = post_head(port, "/", f"Content-Length: {50 * MB}", "Expect: 100-continue")
    with sock:
        status, _, _ = raw_answer(sock)
    assert status == 413

    # Chunked, no length announced: read up to the limit, then refused; the client is stopped long before 50 MB.
    sock = post_head(port, "/", "Transfer-Encoding: chunked", "Content-Type: application/octet-stream")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    piece = b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024)
    sent = 0
    with sock:
        while sent < 50 * MB:
            readable, writable, _ = select.select([sock], [sock], [], 10)
            if readable:
                break
            if writable:
                try:
                    sock.sendall(piece)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += 64 * 1024
        status, headers, _ = raw_answer(sock)
    assert status == 413
    assert sent < 25 * MB, sent
    assert_security_headers(headers)

    # A small POST still reaches its page (and its CSRF check) as before.
    assert requests.post(f"http://127.0.0.1:{port}/", data={"code": "x"}, timeout=10).status_code == 403


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
def test_an_upload_within_its_own_limit_still_works(start_web: Callable[..., int]) -> None:
    """The portal's upload takes RADSHARE_UPLOAD_MAX_MB (8 here, plus room for the multipart framing), not the
    4 MB of other pages; beyond that it is refused before its body is read."""
    organisation = create_organisation("upload", "Upload Hospital", require_two_factor=False)
    sender = create_sender(organisation, "alice", "correct horse battery staple")
    port = start_web(upload_max_mb=8)
    browser = requests.Session()
    login = Client()
    login.force_login(sender)  # a session in the shared database: the web process reads it
    cookie = login.cookies[settings.SESSION_COOKIE_NAME]
    browser.cookies.set(cookie.key, cookie.value)
    page = browser.get(f"http://127.0.0.1:{port}/portal/upload/", timeout=10)
    assert page.status_code == 200, page.text[:500]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token is not None

    series = ct_series(ANNA, count=12, size=512)
    files = [("files", (f"ct/{i:02}.dcm", encode(ds))) for i, ds in enumerate(series)]
    size = sum(len(f[1][1]) for f in files)
    assert middleware.BODY_LIMIT < size < 8 * MB
    answer = browser.post(
        f"http://127.0.0.1:{port}/portal/upload/",
        data={"csrfmiddlewaretoken": token.group(1)},
        files=files,
        headers={"Accept-Language": "en"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text[:500]
    assert Instance.objects.filter(organisation=organisation).count() == 12

    sock = post_head(port, "/portal/upload/", f"Content-Length: {30 * MB}")
    with sock:
        status, _, _ = raw_answer(sock)
    assert status == 413
