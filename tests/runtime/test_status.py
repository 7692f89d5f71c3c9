"""``radshare status``: the readiness checks as a table a person reads, what is waiting, and the exit code.

First in this process against real shares, a real failed e-mail (an SMTP server that refuses it) and studies; then
the real command beside a real ``radshare serve``, before and after it stops.
"""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from radshare.core import health
from radshare.core.health import PARTS
from radshare.delivery import outbox
from radshare.delivery.models import Notification
from radshare.imaging import services as imaging
from radshare.shares.models import Share
from radshare.shares.services import prepare
from radshare.studies.models import Study
from tests.cli_runner import migrated_data_dir, radshare_env, run_radshare, start_radshare, stop_group
from tests.conftest import free_port
from tests.delivery.test_outbox import SmtpServer
from tests.runtime.test_serve import START_TIMEOUT, wait_for
from tests.shares.helpers import ANNA, PIET, make_share, make_study


def row(output: str, label: str) -> str:
    """What follows ``label`` on its line of the output (the columns are aligned with spaces)."""
    found = re.search(rf"^{re.escape(label)}  +(.*)$", output, re.MULTILINE)
    assert found is not None, f"no line {label!r} in:\n{output}"
    return found.group(1).rstrip()


def local(at: Any) -> str:
    return str(timezone.localtime(at).strftime("%Y-%m-%d %H:%M %Z"))


@pytest.fixture
def refusing_smtp(radshare_config: Any) -> Iterator[SmtpServer]:
    """A mail server that refuses every recipient for good (SMTP 550)."""
    server = SmtpServer(free_port())
    radshare_config(email_url=f"smtp://127.0.0.1:{server.port}")
    server.start()
    server.inbox.refuse = "550 5.1.1 mailbox unavailable"
    yield server
    server.stop()


@pytest.mark.django_db(transaction=True)  # the checks read through a connection of their own
@pytest.mark.usefixtures("refusing_smtp")
def test_status_shows_the_failing_parts_and_what_waits(
    organisation: Any, radshare_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "_logged_failing", ())
    port = free_port()
    radshare_config(dicom_bind="127.0.0.1", dicom_port=port)  # nothing listens there; no worker runs either
    ready = make_share(organisation, [make_study(organisation, ANNA)]).share
    imaging.render_pending_now(parallel=False)
    assert prepare(ready.pk) == "ready"
    [email] = Notification.objects.filter(share=ready, kind=Notification.Kind.SHARE_LINK)
    assert outbox.deliver(email.pk) == "failed"
    preparing = make_share(organisation, [make_study(organisation, ANNA, kind="cr")]).share
    unshared = make_study(organisation, PIET)
    Study.objects.filter(pk=unshared.pk).update(last_instance_at=timezone.now() - timedelta(days=20))
    unshared.refresh_from_db()

    out = io.StringIO()
    with pytest.raises(CommandError) as failed:
        call_command("status", stdout=out)
    output = out.getvalue()

    assert (failed.value.returncode, str(failed.value)) == (1, "not ready: worker, scp")
    assert re.search(r"^part +state +detail$", output, re.MULTILINE)
    assert re.fullmatch(
        r"ok +sqlite answered in \d+ ms|ok +postgresql answered in \d+ ms", row(output, "database")
    )
    assert re.fullmatch(r"ok +wrote, read back and deleted a probe in \d+ ms", row(output, "storage"))
    assert row(output, "worker") == "failing  no worker is registered (none started, or all stopped)"
    assert re.fullmatch(r"ok +oldest ready task waiting \d+ s \(\d+ ready\)", row(output, "queue"))
    assert (
        row(output, "scp") == f"failing  nothing accepts connections on 127.0.0.1:{port} (Connection refused)"
    )

    assert row(output, "shares") == "preparing 1, ready 1"
    assert row(output, "failed notifications") == "1"
    first_end = min(ready.expires_at, preparing.expires_at)
    assert row(output, "next share expiry") == f"{local(first_end)} (in 13 days)"
    retention_end = unshared.last_instance_at + timedelta(days=14)  # RADSHARE_UNSHARED_RETENTION_DAYS
    assert row(output, "next unshared study retention end") == f"{local(retention_end)} (6 days overdue)"


@pytest.mark.django_db(transaction=True)
def test_status_of_a_database_without_shares(radshare_config: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "_logged_failing", ())
    radshare_config(dicom_port=free_port())
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("status", stdout=out)
    output = out.getvalue()
    assert row(output, "shares") == "none"
    assert row(output, "failed notifications") == "0"
    assert row(output, "next share expiry") == "none"
    assert row(output, "next unshared study retention end") == "none"
    assert Share.objects.count() == 0


# --- the real command beside a real radshare serve -----------------------------------------------------------


def readyz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_status_exits_0_while_everything_runs_and_1_once_a_part_stopped(tmp_path: Path) -> None:
    http_port, dicom_port = free_port(), free_port()
    env = radshare_env(
        migrated_data_dir(tmp_path / "data"), http_port=str(http_port), dicom_port=str(dicom_port)
    )
    log = tmp_path / "serve.log"
    serve: subprocess.Popen[bytes] = start_radshare("serve", env=env, log=log)
    try:
        # Ready once the worker has sent its first heartbeat and the SCP listens.
        wait_for("/readyz 200", lambda: readyz(http_port)[0] == 200, START_TIMEOUT, serve)
        assert readyz(http_port) == (
            200,
            {"status": "ok", "failing": [], "checks": dict.fromkeys(PARTS, "ok")},
        )
        running = run_radshare("status", env=env)
        assert running.returncode == 0, running.stdout + running.stderr
        for part in PARTS:
            assert row(running.stdout, part).startswith("ok  "), running.stdout
        assert row(running.stdout, "worker").startswith("ok     last heartbeat ")
        assert row(running.stdout, "scp") == f"ok     127.0.0.1:{dicom_port} accepts connections"
    finally:
        stop_group(serve, signal.SIGINT, timeout=15)
    assert serve.returncode == 0

    stopped = run_radshare("status", env=env)
    assert stopped.returncode == 1
    assert row(stopped.stdout, "scp") == (
        f"failing  nothing accepts connections on 127.0.0.1:{dicom_port} (Connection refused)"
    )
    assert stopped.stderr.strip().endswith("not ready: scp")
    output = log.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in output, output[-4000:]
