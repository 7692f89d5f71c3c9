"""radshare behind the committed nginx configuration (deploy/nginx/radshare.conf), over TLS with a throwaway CA
(trustme), as docs/operations.md "TLS proxy" tells an operator to run it: Debian's nginx in front of ``radshare web``
and ``radshare worker``.

The client connects from 127.0.0.2 (loopback, but not the proxy's address), so radshare must take the client's
address from ``X-Forwarded-For`` as nginx completes it, and ignore what the client itself forged there.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest

from tests.cli_runner import migrated_data_dir, radshare_env, run_radshare, start_radshare, stop_group
from tests.conftest import free_port
from tests.downloads.test_download_memory import rss_kb
from tests.recipients.conftest import sms_codes

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "deploy" / "nginx" / "radshare.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HOST = "share.test"
CLIENT = "127.0.0.2"  # not the proxy: the proxy is 127.0.0.1
IMAGES = 600  # 512x512 16-bit CT: a DICOM ZIP of about 300 MB
LIMIT_MB = 50

pytestmark = [
    pytest.mark.once,
    pytest.mark.skipif(
        not Path(NGINX).exists() and os.environ.get("RADSHARE_REQUIRE_ALL") != "1",
        reason="nginx is not installed (apt-get install nginx)",
    ),
]

SETUP = """
import datetime as dt, json
from pydicom.uid import generate_uid
from radshare.imaging.services import render_pending_now
from radshare.organisations.services import create_organisation
from radshare.shares.codes import format_code, generate_code
from radshare.shares.services import create_share, prepare
from radshare.studies.models import Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import FakePatient, ct_series, encode

patient = FakePatient("TLS1", "Proxy^Test", dt.date(1970, 1, 1))
org = create_organisation("tls", "Proxy Hospital")
study_uid, series_uid = generate_uid(), generate_uid()
for batch in range({images} // 100):
    for i, ds in enumerate(ct_series(patient, count=100, size=512, study_uid=study_uid)):
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = batch * 100 + i + 1
        store_instance(org, encode(ds), source="upload")
render_pending_now(parallel=True)
study = Study.objects.get(study_instance_uid=study_uid)
new = create_share(org, [study.pk], recipient_type="patient", phone="0612345678", delivery="url", language="en")
assert prepare(new.share.pk) == "ready"
wrong = format_code(generate_code())
print(json.dumps({{"code": new.code, "birth_date": "01-01-1970", "wrong": wrong}}))
"""


def site_config(web_port: int, http_port: int, tls_port: int, chain: Path, key: Path, log: Path) -> str:
    """The committed site file with its site values replaced (each must be there: the file is what we test)."""
    text = SITE.read_text()
    replacements = {
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{web_port};",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{tls_port} ssl http2;",
        "share.hospital.example": HOST,
        "/etc/ssl/radshare/fullchain.pem": str(chain),
        "/etc/ssl/radshare/privkey.pem": str(key),
        "/var/log/nginx/radshare.log": str(log),
    }
    for old, new in replacements.items():
        assert old in text, f"deploy/nginx/radshare.conf no longer has {old!r}: update this test with it"
        text = text.replace(old, new)
    return text


@dataclass
class Site:
    tls_port: int
    http_port: int
    context: ssl.SSLContext
    info: dict[str, str]
    sms: Path
    pids: dict[str, list[int]]
    cookies: dict[str, str] = field(default_factory=dict)


def wait_until(what: str, check: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} did not come up"
        time.sleep(0.2)


def answers(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    import trustme

    tmp = tmp_path_factory.mktemp("tls")
    web_port, http_port, tls_port = free_port(), free_port(), free_port()
    sms = tmp / "sms.jsonl"
    settings = {
        "base_url": f"https://{HOST}:{tls_port}",
        "trusted_proxies": "127.0.0.1",
        "http_port": str(web_port),
        "sms_url": f"file://{sms}",
        "email_url": f"file://{tmp / 'mail'}",
        "log_level": "WARNING",
    }
    data_dir = migrated_data_dir(tmp / "radshare", **settings)
    env = radshare_env(data_dir, **settings)
    made = run_radshare("shell", "-c", SETUP.format(images=IMAGES), env=env, timeout=600)
    assert made.returncode == 0, made.stderr
    info = json.loads(made.stdout.strip().splitlines()[-1])

    ca = trustme.CA()
    cert = ca.issue_cert(HOST, "127.0.0.1")
    chain, key = tmp / "fullchain.pem", tmp / "privkey.pem"
    chain.write_bytes(b"".join(pem.bytes() for pem in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key))
    nginx_dir = tmp / "nginx"
    nginx_dir.mkdir()
    (nginx_dir / "radshare.conf").write_text(
        site_config(web_port, http_port, tls_port, chain, key, nginx_dir / "access.log")
    )
    user = "user root;" if os.geteuid() == 0 else ""
    temp = " ".join(
        f"{kind}_temp_path {nginx_dir / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (nginx_dir / "nginx.conf").write_text(
        f"{user}\nworker_processes 1;\npid {nginx_dir / 'nginx.pid'};\nerror_log {nginx_dir / 'error.log'};\n"
        f"events {{}}\nhttp {{\n  {temp}\n  include {nginx_dir / 'radshare.conf'};\n}}\n"
    )
    checked = subprocess.run(
        [NGINX, "-t", "-p", str(nginx_dir), "-c", str(nginx_dir / "nginx.conf")], **_quiet()
    )
    assert checked.returncode == 0, checked.stderr

    web = start_radshare("web", env=env, log=tmp / "web.log")
    worker = start_radshare("worker", env=env, log=tmp / "worker.log")
    nginx = subprocess.Popen(
        [NGINX, "-p", str(nginx_dir), "-c", str(nginx_dir / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until("radshare web", lambda: answers(web_port))
        context = ssl.create_default_context()
        ca.configure_trust(context)
        wait_until("nginx", lambda: (nginx_dir / "nginx.pid").exists())
        workers = [int(p) for p in _children(nginx.pid)]
        yield Site(
            tls_port, http_port, context, info, sms, {"web": [web.pid], "nginx": [nginx.pid, *workers]}
        )
    finally:
        for process in (nginx, web, worker):
            stop_group(process)


def _quiet() -> dict[str, Any]:
    return {"capture_output": True, "text": True, "timeout": 30}


def _children(pid: int) -> list[str]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return found.stdout.split()


def request(
    site: Site,
    method: str,
    path: str,
    *,
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[http.client.HTTPResponse, bytes]:
    """One request over TLS from the client's address, with the cookies so far (and those it sets kept)."""
    connection = http.client.HTTPSConnection(
        "127.0.0.1", site.tls_port, context=site.context, timeout=120, source_address=(CLIENT, 0)
    )
    origin = f"https://{HOST}:{site.tls_port}"
    sent = {"Host": f"{HOST}:{site.tls_port}", "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0"}
    if site.cookies:
        sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in site.cookies.items())
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form)
        sent |= {
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": origin,
            "Referer": origin + path,
        }
    connection.request(method, path, body=body, headers={**sent, **(headers or {})})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    for header in response.headers.get_all("Set-Cookie") or []:
        for name, morsel in SimpleCookie(header).items():
            site.cookies[name] = morsel.value
    return response, data


def csrf(page: bytes) -> str:
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match is not None
    return match[1].decode()


def test_the_recipient_logs_in_over_https_with_secure_cookies_and_hsts(site: Site) -> None:
    site.cookies.clear()
    response, _ = request(site, "GET", f"/?code={site.info['code']}")
    assert response.status == 302
    assert response.headers["Location"] == "/r/birth-date"
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    [session] = [h for h in response.headers.get_all("Set-Cookie") or [] if h.startswith("__Host-sessionid=")]
    flags = {part.strip().split("=")[0].lower() for part in session.split(";")[1:]}
    assert {"secure", "httponly", "samesite", "path"} <= flags
    assert "samesite=lax" in session.lower()
    assert "domain=" not in session.lower()  # __Host-: host only, path /

    _, page = request(site, "GET", "/r/birth-date")
    form = {"csrfmiddlewaretoken": csrf(page), "accept_terms": "on", "birth_date": site.info["birth_date"]}
    response, _ = request(site, "POST", "/r/birth-date", form=form)
    assert response.status == 302, response.headers
    assert response.headers["Location"] == "/r/sms-code"
    wait_until("the SMS", lambda: site.sms.exists() and sms_codes(site.sms), timeout=30)
    _, page = request(site, "GET", "/r/sms-code")
    form = {"csrfmiddlewaretoken": csrf(page), "code": sms_codes(site.sms)[-1]}
    response, _ = request(site, "POST", "/r/sms-code", form=form)
    assert response.headers["Location"] == "/r/studies"
    response, page = request(site, "GET", "/r/studies")
    assert response.status == 200
    assert b"Proxy Hospital" in page

    plain = http.client.HTTPConnection("127.0.0.1", site.http_port, timeout=10)
    plain.request("GET", "/r/studies", headers={"Host": HOST})
    redirect = plain.getresponse()
    assert redirect.status == 301
    assert redirect.headers["Location"].startswith(f"https://{HOST}/")


def test_a_300_mb_zip_streams_through_with_flat_memory_and_resumes(site: Site) -> None:
    if "__Host-sessionid" not in site.cookies:
        test_the_recipient_logs_in_over_https_with_secure_cookies_and_hsts(site)
    pids = [pid for pids in site.pids.values() for pid in pids]
    response, _ = request(site, "HEAD", "/r/download/dicom.zip")
    assert response.status == 200
    length = int(response.headers["Content-Length"])
    assert length > 250 << 20
    before = {pid: rss_kb(pid) for pid in pids}

    connection = http.client.HTTPSConnection(
        "127.0.0.1", site.tls_port, context=site.context, timeout=300, source_address=(CLIENT, 0)
    )
    cookie = "; ".join(f"{k}={v}" for k, v in site.cookies.items())
    connection.request(
        "GET", "/r/download/dicom.zip", headers={"Host": f"{HOST}:{site.tls_port}", "Cookie": cookie}
    )
    response = connection.getresponse()
    assert response.status == 200
    assert response.headers["Strict-Transport-Security"]
    whole = hashlib.sha256()
    tail = hashlib.sha256()
    resume_at = length * 9 // 10
    received = 0
    peak = dict(before)
    while piece := response.read(1 << 20):
        whole.update(piece)
        if received + len(piece) > resume_at:
            tail.update(piece[max(0, resume_at - received) :])
        received += len(piece)
        if received % (32 << 20) < (1 << 20):
            peak = {pid: max(peak[pid], rss_kb(pid)) for pid in pids}
    connection.close()
    assert received == length
    for pid in pids:
        assert (peak[pid] - before[pid]) / 1024 < LIMIT_MB, (
            f"process {pid} grew by {(peak[pid] - before[pid]) // 1024} MB"
        )

    response, data = request(site, "GET", "/r/download/dicom.zip", headers={"Range": f"bytes={resume_at}-"})
    assert response.status == 206
    assert response.headers["Content-Range"] == f"bytes {resume_at}-{length - 1}/{length}"
    assert hashlib.sha256(data).hexdigest() == tail.hexdigest()  # the resumed end is the same bytes


def test_a_forged_forwarded_address_does_not_escape_the_throttle(site: Site) -> None:
    """The client forges X-Forwarded-For on every try; nginx appends the address it really came from, and radshare
    counts the wrong codes against that one: the 21st in 15 minutes is refused."""
    statuses = []  # runs last: it leaves this client throttled
    for n in range(21):
        site.cookies.clear()
        forged = {"X-Forwarded-For": f"203.0.113.{n + 1}"}
        response, _ = request(site, "GET", f"/?code={site.info['wrong']}", headers=forged)
        statuses.append(response.status)
    assert statuses[:20] == [302] * 20  # each to the neutral "not valid" page
    assert statuses[20] == 429
