"""E-mail and SMS backends against real peers: aiosmtpd on loopback (plain, AUTH, STARTTLS, implicit TLS) and a
local HTTP server standing in for an SMS gateway and for CM.com's messaging API."""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import ipaddress
import json
import logging
import ssl
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage as ParsedEmail
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer  # noqa: N811 - aiosmtpd's name is too short to read here
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from radshare.delivery.backends import (
    DeliveryError,
    EmailMessage,
    SmsMessage,
    send_email,
    send_sms,
)
from tests.conftest import free_port

ADDRESS = "patient.one@example.org"
PHONE = "+31612345678"
CODE_TEXT = "Hospital A: your code is 123456"
FROM = "Hospital A <noreply@hospital-a.example>"


def mail(n: int = 1, **overrides: Any) -> EmailMessage:
    fields: dict[str, Any] = {
        "to": ADDRESS,
        "subject": f"Images from Hospital A ({n})",
        "text": f"Open the link: https://radshare.example/?code=ABCD-EFGH-JKM{n}\n",
        "html": f'<p>Open <a href="https://radshare.example/?code=ABCD-EFGH-JKM{n}">the link</a></p>',
        "message_id": f"<rs-{n}.f00dcafe@radshare.example>",
        "reply_to": "radiology@hospital-a.example",
        "language": "en",
    }
    fields.update(overrides)
    return EmailMessage(**fields)


def sms(n: int = 1, **overrides: Any) -> SmsMessage:
    fields: dict[str, Any] = {"to": PHONE, "text": CODE_TEXT, "reference": f"rs-sms-{n}"}
    fields.update(overrides)
    return SmsMessage(**fields)


@pytest.fixture(autouse=True)
def _senders(radshare_config: Any) -> None:
    radshare_config(email_from=FROM, sms_sender="HospitalA")


def parts_of(parsed: ParsedEmail) -> dict[str, str]:
    return {
        part.get_content_type(): str(part.get_content()) for part in parsed.walk() if not part.is_multipart()
    }


def assert_no_personal_data(text: str) -> None:
    for secret in (ADDRESS, PHONE, PHONE.removeprefix("+"), "123456", "ABCD-EFGH"):
        assert secret not in text


# --- e-mail: file and console -----------------------------------------------------------------------------------


def test_file_backend_writes_one_complete_private_eml_per_message(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox" / "mail"  # does not exist yet
    send_email(mail(1), f"file://{outbox}")
    send_email(mail(2), f"file://{outbox}")

    files = sorted(outbox.iterdir())
    assert [f.suffix for f in files] == [".eml", ".eml"]  # no temporary files left behind
    assert stat.S_IMODE(outbox.stat().st_mode) == 0o700
    for n, path in enumerate(files, start=1):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(parsed, ParsedEmail)
        assert parsed["Message-ID"] == f"<rs-{n}.f00dcafe@radshare.example>"
        assert parsed["To"] == ADDRESS
        assert parsed["From"] == FROM
        assert parsed["Reply-To"] == "radiology@hospital-a.example"
        assert parsed["Subject"] == f"Images from Hospital A ({n})"
        assert parsed["Content-Language"] == "en"
        assert parsed["Date"].datetime.tzinfo is not None
        assert parsed.get_content_type() == "multipart/alternative"
        bodies = parts_of(parsed)
        assert bodies["text/plain"] == f"Open the link: https://radshare.example/?code=ABCD-EFGH-JKM{n}\n"
        assert f'href="https://radshare.example/?code=ABCD-EFGH-JKM{n}"' in bodies["text/html"]
    # Named by time first: sorting the names lists them oldest first (the outbox page shows them newest first).
    assert "rs-1.f00dcafe" in files[0].name
    assert "rs-2.f00dcafe" in files[1].name


def test_file_backend_leaves_out_reply_to_when_there_is_none(tmp_path: Path) -> None:
    send_email(mail(reply_to=""), f"file://{tmp_path}")
    (path,) = tmp_path.glob("*.eml")
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert "Reply-To" not in parsed


def test_file_backend_that_cannot_write_is_a_temporary_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(DeliveryError) as caught:
        send_email(mail(), f"file://{blocker}/mail")
    assert caught.value.temporary is True
    assert str(blocker) not in caught.value.reason


def test_a_line_break_in_a_header_is_refused_for_good(tmp_path: Path) -> None:
    with pytest.raises(DeliveryError) as caught:
        send_email(mail(subject="Images\nBcc: someone@example.org"), f"file://{tmp_path}")
    assert caught.value.temporary is False
    assert list(tmp_path.iterdir()) == []


def test_console_backend_prints_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    send_email(mail(), "console://")
    out = capsys.readouterr().out
    assert "Message-ID: <rs-1.f00dcafe@radshare.example>" in out
    assert "Subject: Images from Hospital A (1)" in out


# --- e-mail: SMTP -------------------------------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    @property
    def message(self) -> ParsedEmail:
        parsed = email.message_from_bytes(self.content, policy=email.policy.default)
        assert isinstance(parsed, ParsedEmail)
        return parsed


@dataclass
class Collector:
    """aiosmtpd handler: keeps what arrives; ``rcpt_reply`` makes it refuse recipients."""

    received: list[Received] = field(default_factory=list)
    rcpt_reply: str | None = None
    logins: list[str] = field(default_factory=list)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content or b""
        self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), content))
        return "250 Message accepted for delivery"

    def authenticator(
        self, server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == b"mailer"
            and auth_data.password == b"p@ss w:rd"
        )
        if ok:
            self.logins.append("mailer")
        return AuthResult(success=ok, handled=False)


SmtpServer = Callable[..., tuple[Collector, int]]


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """Start an aiosmtpd server on a free loopback port: ``collector, port = smtp_server(**controller_options)``."""
    controllers: list[Controller] = []

    def start(**options: Any) -> tuple[Collector, int]:
        collector = Collector()
        port = free_port()
        if options.pop("with_auth", False):
            options["authenticator"] = collector.authenticator
        controller = Controller(collector, hostname="127.0.0.1", port=port, **options)
        controller.start()
        controllers.append(controller)
        return collector, port

    yield start
    for controller in controllers:
        controller.stop()


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    server_context: ssl.SSLContext


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA and a server certificate for 127.0.0.1 it signed (what Python's strict verification asks for)."""
    folder = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "radshare test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    chain = folder / "server.pem"
    chain.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain)
    return Pki(ca_file=ca_file, server_context=context)


def assert_delivered(collector: Collector, message: EmailMessage) -> None:
    (received,) = collector.received
    assert received.rcpt_tos == [message.to]
    assert received.mail_from == "noreply@hospital-a.example"
    parsed = received.message
    assert parsed["Message-ID"] == message.message_id
    assert parsed["From"] == FROM
    assert parsed["To"] == message.to
    assert parsed["Reply-To"] == message.reply_to
    assert parsed["Date"] is not None
    on_the_wire = {
        kind: text.replace("\r\n", "\n").strip() for kind, text in parts_of(parsed).items()
    }  # CRLF
    assert on_the_wire == {"text/plain": message.text.strip(), "text/html": message.html.strip()}


def test_smtp_delivers_to_a_real_server(smtp_server: SmtpServer) -> None:
    collector, port = smtp_server()
    message = mail()
    send_email(message, f"smtp://127.0.0.1:{port}")
    assert_delivered(collector, message)


def test_smtp_logs_in_with_the_url_encoded_user_and_password(smtp_server: SmtpServer) -> None:
    collector, port = smtp_server(with_auth=True, auth_require_tls=False)
    message = mail()
    send_email(message, f"smtp://mailer:p%40ss%20w%3Ard@127.0.0.1:{port}")
    assert collector.logins == ["mailer"]
    assert_delivered(collector, message)


def test_smtp_wrong_password_is_a_permanent_error(smtp_server: SmtpServer) -> None:
    collector, port = smtp_server(with_auth=True, auth_require_tls=False)
    with pytest.raises(DeliveryError) as caught:
        send_email(mail(), f"smtp://mailer:wrong@127.0.0.1:{port}")
    assert caught.value.temporary is False
    assert "535" in caught.value.reason
    assert "wrong" not in caught.value.reason
    assert collector.received == []


def test_smtp_starttls_verifies_the_server_against_cafile(smtp_server: SmtpServer, pki: Pki) -> None:
    collector, port = smtp_server(
        with_auth=True, tls_context=pki.server_context, require_starttls=True, auth_require_tls=True
    )
    message = mail()
    send_email(message, f"smtp://mailer:p%40ss%20w%3Ard@127.0.0.1:{port}?starttls=1&cafile={pki.ca_file}")
    assert collector.logins == ["mailer"]
    assert_delivered(collector, message)


def test_smtp_starttls_refuses_a_server_it_cannot_verify(smtp_server: SmtpServer, pki: Pki) -> None:
    collector, port = smtp_server(tls_context=pki.server_context, require_starttls=True)
    with pytest.raises(DeliveryError) as caught:
        send_email(mail(), f"smtp://127.0.0.1:{port}?starttls=1")  # the system's CAs do not know ours
    assert caught.value.temporary is False
    assert "certificate" in caught.value.reason
    assert collector.received == []


def test_smtps_implicit_tls(smtp_server: SmtpServer, pki: Pki) -> None:
    collector, port = smtp_server(ssl_context=pki.server_context)
    message = mail()
    send_email(message, f"smtps://127.0.0.1:{port}?cafile={pki.ca_file}")
    assert_delivered(collector, message)


def test_smtp_server_down_is_a_temporary_error() -> None:
    with pytest.raises(DeliveryError) as caught:
        send_email(mail(), f"smtp://127.0.0.1:{free_port()}")
    assert caught.value.temporary is True
    assert "refused the connection" in caught.value.reason


@pytest.mark.parametrize(
    ("reply", "temporary"),
    [
        ("550 5.1.1 <patient.one@example.org>: mailbox unavailable", False),
        ("451 4.3.0 <patient.one@example.org>: try again later", True),
    ],
)
def test_smtp_recipient_refused(smtp_server: SmtpServer, reply: str, temporary: bool) -> None:
    collector, port = smtp_server()
    collector.rcpt_reply = reply
    with pytest.raises(DeliveryError) as caught:
        send_email(mail(), f"smtp://127.0.0.1:{port}")
    assert caught.value.temporary is temporary
    assert reply[:3] in caught.value.reason
    assert_no_personal_data(caught.value.reason)  # the server's text quotes the address: never passed on


# --- SMS: console and file ----------------------------------------------------------------------------------------


def test_sms_console_prints_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    send_sms(sms(text="Hospital A:\nyour code is 123456"), "console://")
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert PHONE in out
    assert "123456" in out
    assert "rs-sms-1" in out


def test_sms_file_appends_one_json_line_per_message(tmp_path: Path) -> None:
    path = tmp_path / "outbox" / "sms.jsonl"  # its folder does not exist yet
    send_sms(sms(1), f"file://{path}")
    send_sms(sms(2, to="+32470123456", text='Code: 654321 "quoted"\nnext line'), f"file://{path}")

    lines = path.read_bytes().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["to"] == PHONE
    assert first["text"] == CODE_TEXT
    assert first["reference"] == "rs-sms-1"
    assert first["sender"] == "HospitalA"
    sent_at = dt.datetime.fromisoformat(first["sent_at"])
    assert sent_at.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.UTC) - sent_at) < dt.timedelta(minutes=1)
    assert second["to"] == "+32470123456"
    assert second["text"] == 'Code: 654321 "quoted"\nnext line'
    assert second["reference"] == "rs-sms-2"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_sms_file_lines_from_many_threads_do_not_interleave(tmp_path: Path) -> None:
    path = tmp_path / "sms.jsonl"
    long_text = "x" * 5000  # longer than PIPE_BUF: torn writes would show
    threads = [
        threading.Thread(target=send_sms, args=(sms(n, text=long_text), f"file://{path}")) for n in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert sorted(r["reference"] for r in records) == sorted(f"rs-sms-{n}" for n in range(20))


# --- SMS: HTTP gateways -----------------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Gateway:
    """A local HTTP server that records requests and answers ``status`` with ``answer``."""

    port: int
    requests: list[Request] = field(default_factory=list)
    status: int = 200
    answer: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    state = Gateway(port=free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            state.requests.append(
                Request(
                    "POST",
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
            )
            self.send_response(state.status)
            for name, value in state.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(state.answer)))
            self.end_headers()
            self.wfile.write(state.answer)

        do_GET = do_POST  # noqa: N815 - a followed redirect would arrive as a GET

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", state.port), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_http_gateway_posts_the_template_with_basic_auth(gateway: Gateway, radshare_config: Any) -> None:
    radshare_config(
        sms_body='{"apiKey": "k-1", "recipient": "{to}", "message": "{text}", "ref": "{reference}", "from": "{sender}"}'
    )
    text = 'Code "123456"\\ {to}\nbye'  # quotes, backslash, a placeholder and a line break stay text
    send_sms(sms(text=text), f"http://gw-user:s3cr%3Aet@127.0.0.1:{gateway.port}/v2/send?channel=sms")

    (request,) = gateway.requests
    assert request.method == "POST"
    assert request.path == "/v2/send?channel=sms"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"gw-user:s3cr:et").decode()
    assert request.json == {
        "apiKey": "k-1",
        "recipient": PHONE,
        "message": text,
        "ref": "rs-sms-1",
        "from": "HospitalA",
    }


def test_http_gateway_default_template_and_no_auth(gateway: Gateway) -> None:
    send_sms(sms(), f"http://127.0.0.1:{gateway.port}")
    (request,) = gateway.requests
    assert request.path == "/"
    assert "authorization" not in request.headers
    assert request.json == {"to": PHONE, "text": CODE_TEXT, "reference": "rs-sms-1"}


@pytest.mark.parametrize(
    ("status", "temporary"), [(500, True), (503, True), (429, True), (400, False), (401, False), (404, False)]
)
def test_http_gateway_errors(gateway: Gateway, status: int, temporary: bool) -> None:
    gateway.status = status
    gateway.answer = json.dumps({"error": f"bad number {PHONE}"}).encode()
    with pytest.raises(DeliveryError) as caught:
        send_sms(sms(), f"http://127.0.0.1:{gateway.port}/send")
    assert caught.value.temporary is temporary
    assert str(status) in caught.value.reason
    assert_no_personal_data(caught.value.reason)


def test_http_gateway_redirect_is_not_followed(gateway: Gateway) -> None:
    gateway.status = 302
    gateway.headers = {"Location": f"http://127.0.0.1:{gateway.port}/elsewhere"}
    with pytest.raises(DeliveryError) as caught:
        send_sms(sms(), f"http://user:pw@127.0.0.1:{gateway.port}/send")
    assert caught.value.temporary is False
    assert [r.path for r in gateway.requests] == ["/send"]


def test_http_gateway_down_is_a_temporary_error() -> None:
    with pytest.raises(DeliveryError) as caught:
        send_sms(sms(), f"http://127.0.0.1:{free_port()}/send")
    assert caught.value.temporary is True


CM_ACCEPTED = {
    "details": "Created 1 message(s)",
    "errorCode": 0,
    "messages": [
        {
            "to": "0031612345678",
            "status": "Accepted",
            "reference": "rs-sms-1",
            "parts": 1,
            "messageDetails": None,
            "messageErrorCode": 0,
        }
    ],
}


def test_cm_posts_the_business_messaging_json(gateway: Gateway) -> None:
    gateway.answer = json.dumps(CM_ACCEPTED).encode()
    token = "00000000-1111-2222-3333-444444444444"
    send_sms(sms(), f"cm://{token}@127.0.0.1:{gateway.port}?tls=0")

    (request,) = gateway.requests
    assert request.method == "POST"
    assert request.path == "/v1.0/message"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-cm-producttoken"] == token
    assert request.json == {
        "messages": {
            "authentication": {"productToken": token},
            "msg": [
                {
                    "allowedChannels": ["SMS"],
                    "from": "HospitalA",
                    "to": [{"number": "0031612345678"}],
                    "body": {"type": "auto", "content": CODE_TEXT},
                    "minimumNumberOfMessageParts": 1,
                    "maximumNumberOfMessageParts": 8,
                    "reference": "rs-sms-1",
                }
            ],
        }
    }


def test_cm_sender_number_is_written_the_cm_way(gateway: Gateway, radshare_config: Any) -> None:
    radshare_config(sms_sender="+3197010203040")
    gateway.answer = json.dumps(CM_ACCEPTED).encode()
    send_sms(sms(), f"cm://TOKEN@127.0.0.1:{gateway.port}?tls=0")
    assert gateway.requests[0].json["messages"]["msg"][0]["from"] == "003197010203040"


def test_cm_refusal_is_permanent_and_quotes_only_the_error_code(gateway: Gateway) -> None:
    gateway.status = 400
    gateway.answer = json.dumps(
        {
            "details": "Created 0 message(s)",
            "errorCode": 201,
            "messages": [
                {
                    "to": "0031612345678",
                    "status": "Rejected",
                    "reference": "rs-sms-1",
                    "parts": 0,
                    "messageDetails": "Gsm '0031612345678' is not a number.",
                    "messageErrorCode": 303,
                }
            ],
        }
    ).encode()
    with pytest.raises(DeliveryError) as caught:
        send_sms(sms(), f"cm://TOKEN@127.0.0.1:{gateway.port}?tls=0")
    assert caught.value.temporary is False
    assert "201" in caught.value.reason
    assert_no_personal_data(caught.value.reason)
    assert "0031612345678" not in caught.value.reason


def test_cm_bad_token_is_permanent(gateway: Gateway) -> None:
    gateway.status = 400
    gateway.answer = (
        b'{"details": "No account found for the given authentication", "errorCode": 101, "messages": []}'
    )
    with pytest.raises(DeliveryError) as caught:
        send_sms(sms(), f"cm://WRONG@127.0.0.1:{gateway.port}?tls=0")
    assert caught.value.temporary is False
    assert "101" in caught.value.reason
    assert "WRONG" not in caught.value.reason


def test_cm_rejection_inside_a_200_is_permanent(gateway: Gateway) -> None:
    answer = json.loads(json.dumps(CM_ACCEPTED))
    answer["errorCode"] = 201
    answer["messages"][0].update(status="Rejected", messageErrorCode=302)
    gateway.answer = json.dumps(answer).encode()
    with pytest.raises(DeliveryError) as caught:
        send_sms(sms(), f"cm://TOKEN@127.0.0.1:{gateway.port}?tls=0")
    assert caught.value.temporary is False
    assert "302" in caught.value.reason


@pytest.mark.parametrize("status", [500, 502, 429])
def test_cm_server_trouble_is_temporary(gateway: Gateway, status: int) -> None:
    gateway.status = status
    with pytest.raises(DeliveryError) as caught:
        send_sms(sms(), f"cm://TOKEN@127.0.0.1:{gateway.port}?tls=0")
    assert caught.value.temporary is True


def test_cm_down_is_temporary() -> None:
    with pytest.raises(DeliveryError) as caught:
        send_sms(sms(), f"cm://TOKEN@127.0.0.1:{free_port()}?tls=0")
    assert caught.value.temporary is True


# --- logging ------------------------------------------------------------------------------------------------------


def test_nothing_personal_reaches_the_log(
    caplog: pytest.LogCaptureFixture, tmp_path: Path, gateway: Gateway, smtp_server: SmtpServer
) -> None:
    caplog.set_level(logging.DEBUG)
    _collector, port = smtp_server()
    gateway.answer = json.dumps(CM_ACCEPTED).encode()
    send_email(mail(), f"file://{tmp_path}")
    send_email(mail(), f"smtp://127.0.0.1:{port}")
    send_sms(sms(), f"file://{tmp_path}/sms.jsonl")
    send_sms(sms(), f"http://user:pw@127.0.0.1:{gateway.port}/send")
    send_sms(sms(), f"cm://TOKEN@127.0.0.1:{gateway.port}?tls=0")
    # Ours only: the test SMTP server (aiosmtpd) logs its whole conversation.
    logged = "\n".join(
        f"{r.getMessage()} {r.__dict__}" for r in caplog.records if r.name.startswith("radshare")
    )
    assert "rs-sms-1" in logged  # the reference is how a message is traced
    assert_no_personal_data(logged)
    assert "TOKEN" not in logged
