"""radshare behind Debian's nginx as TLS proxy (docs/security.md A13, A25): HSTS on every answer (it was
missing), cookies ``Secure`` and ``__Host-``, and a real form post passing the CSRF checks. Which peers are
believed is tested in tests/core/test_middleware.py."""

from __future__ import annotations

import datetime as dt
import http.client
import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.cli_runner import migrated_data_dir, radshare_env, start_radshare, stop_group
from tests.conftest import free_port, require_program
from tests.runtime.test_serve import START_TIMEOUT, healthz, wait_for

pytestmark = pytest.mark.once
NGINX = "/usr/sbin/nginx"  # Debian's; not on a normal user's PATH

NGINX_CONF = """
daemon off;
worker_processes 1;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        server_name localhost;
        ssl_certificate {dir}/cert.pem;
        ssl_certificate_key {dir}/key.pem;
        location / {{
            proxy_pass http://127.0.0.1:{web_port};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


def self_signed(directory: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path = directory / "cert.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@dataclass
class Proxied:
    tls_port: int
    web_port: int
    context: ssl.SSLContext
    log: Path

    def request(
        self, method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None
    ) -> http.client.HTTPResponse:
        conn = http.client.HTTPSConnection("localhost", self.tls_port, context=self.context, timeout=30)
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        response.read()
        conn.close()
        return response


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[Proxied]:
    nginx = NGINX if Path(NGINX).exists() else require_program("nginx")
    tls_port, web_port = free_port(), free_port()
    proxy_dir = tmp_path / "nginx"
    proxy_dir.mkdir()
    cert = self_signed(proxy_dir)
    (proxy_dir / "nginx.conf").write_text(
        NGINX_CONF.format(dir=proxy_dir, tls_port=tls_port, web_port=web_port)
    )
    settings = {
        "base_url": f"https://localhost:{tls_port}",
        "trusted_proxies": "127.0.0.1",
        "http_port": str(web_port),
        "log_level": "INFO",
    }
    data_dir = migrated_data_dir(tmp_path / "data", **settings)
    log = tmp_path / "web.log"
    web = start_radshare("web", env=radshare_env(data_dir, **settings), log=log)
    proxy = subprocess.Popen(
        [nginx, "-c", str(proxy_dir / "nginx.conf"), "-p", str(proxy_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for("radshare web", lambda: healthz(web_port), START_TIMEOUT, web)
        context = ssl.create_default_context(cafile=str(cert))
        result = Proxied(tls_port, web_port, context, log)
        wait_for("nginx", lambda: result.request("GET", "/healthz").status == 200, 30, proxy)
        yield result
    finally:
        stop_group(proxy)
        stop_group(web)


def test_behind_the_tls_proxy_hsts_secure_cookies_and_a_real_form_post(proxied: Proxied) -> None:
    for path in ("/", "/portal/login/", "/healthz", "/static/radshare/radshare.css", "/no-such-page"):
        response = proxied.request("GET", path)
        assert response.getheader("Strict-Transport-Security") == "max-age=31536000; includeSubDomains", path

    page = proxied.request("GET", "/portal/login/")
    cookies = page.headers.get_all("Set-Cookie") or []
    csrf_cookie = next(c for c in cookies if c.startswith("__Host-csrftoken="))
    assert "Secure" in csrf_cookie
    assert "Path=/" in csrf_cookie
    token = csrf_cookie.split(";", 1)[0].split("=", 1)[1]

    # A browser's form post through the proxy: its Origin is the https site; the CSRF checks pass.
    origin = f"https://localhost:{proxied.tls_port}"
    form = urlencode({"csrfmiddlewaretoken": token, "username": "nobody", "password": "wrong password 1"})
    posted = proxied.request(
        "POST",
        "/portal/login/",
        body=form,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"__Host-csrftoken={token}",
            "Origin": origin,
            "X-Forwarded-For": "198.51.100.7",  # what a client claims: nginx appends the real peer after it
        },
    )
    assert posted.status == 200  # the form again, with its error: the CSRF check passed
    assert posted.getheader("Strict-Transport-Security")

    time.sleep(0.2)
    log = proxied.log.read_text(encoding="utf-8", errors="replace")
    assert re.search(r"POST /portal/login/ 200", log)
    assert "Traceback" not in log
