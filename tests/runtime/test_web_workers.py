"""``radshare web`` serves with ``RADSHARE_WEB_WORKERS`` uvicorn workers, by default one per core
(docs/operations.md "Processes and database connections"); several workers share one database safely, SQLite
included, and recipients' pages opened at the same time through them leave an audit chain that verifies."""

from __future__ import annotations

import asyncio
import http.client
import os
import socket
import subprocess
import threading
from functools import partial
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from django.conf import settings
from django.utils import timezone
from uvicorn.server import ServerState

from radshare.audit import chain
from radshare.audit.models import AuditEvent
from radshare.core.cpus import usable_cores
from radshare.core.metrics import MULTIPROCESS
from radshare.core.streaming import LargeBufferH11Protocol
from radshare.imaging.models import InstanceRender
from radshare.recipients import session
from radshare.runtime.management.commands.web import (
    share_metrics_between_workers,
    uvicorn_options,
    web_workers,
)
from tests.conftest import free_port
from tests.recipients.conftest import ready_share
from tests.runtime.processes import START_TIMEOUT, process_env, start, stop, wait_for
from tests.shares.helpers import ANNA, PIET, make_study

SESSIONS = 6
ROUNDS = 5


def test_the_setting_and_the_option_choose_the_workers(radshare_config: Any) -> None:
    radshare_config(web_workers=0)
    assert web_workers() == usable_cores()
    radshare_config(web_workers=3)
    assert web_workers() == 3
    assert web_workers(requested=5) == 5  # radshare web --workers 5
    options = uvicorn_options(3)
    assert options["workers"] == 3
    assert options["access_log"] is False  # query strings (a share code) stay out of the log


def test_every_connection_has_nagle_off_also_on_a_socket_bound_for_several_workers() -> None:
    """With several workers uvicorn binds the listening socket itself, with protocol number 0, and asyncio then
    leaves Nagle's algorithm on for its connections: each kept-alive request after the first waited 40 ms for the
    client's delayed ACK (docs/architecture.md "Performance budget"). radshare's protocol turns it off."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("no request is made")

    config = uvicorn.Config(app=app, http=LargeBufferH11Protocol, lifespan="off", log_config=None)
    config.load()

    async def accepted(factory: Any) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # protocol number 0, as uvicorn binds it
        listener.bind(("127.0.0.1", 0))
        made: list[Any] = []

        def protocol() -> asyncio.BaseProtocol:
            made.append(factory())
            return made[-1]  # type: ignore[no-any-return]

        server = await asyncio.get_running_loop().create_server(protocol, sock=listener)
        _, writer = await asyncio.open_connection(*listener.getsockname())
        for _ in range(500):  # up to 5 s for the server to accept
            if made and getattr(made[0], "transport", None) is not None:
                break
            await asyncio.sleep(0.01)
        option = made[0].transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        writer.close()
        server.close()
        return int(option)

    class Plain(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

    # What asyncio does alone with such a socket (the case this guards against):
    assert asyncio.run(accepted(Plain)) == 0
    ours = partial(LargeBufferH11Protocol, config=config, server_state=ServerState(), app_state={})
    assert asyncio.run(accepted(ours)) == 1


def test_the_metrics_folders_of_killed_servers_are_cleared_at_start(
    radshare_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    radshare_config(data_dir=str(tmp_path))
    monkeypatch.delenv(MULTIPROCESS, raising=False)
    dead = subprocess.Popen(["true"])  # a server killed: its process has ended
    dead.wait()
    gone = [
        tmp_path / f"metrics-{dead.pid}",
        tmp_path / "metrics-abc123",
        tmp_path / f"metrics-{os.getpid()}",
    ]
    live = tmp_path / f"metrics-{os.getppid()}"  # a server still running (this test's parent process)
    for folder in (*gone, live):
        folder.mkdir()
        (folder / "counter_1.db").write_bytes(b"x")
    folder = share_metrics_between_workers()
    assert folder == tmp_path / f"metrics-{os.getpid()}"
    assert os.environ[MULTIPROCESS] == str(folder)
    assert not list(folder.iterdir())  # fresh, not what an earlier server of this id counted
    assert not gone[0].exists()
    assert not gone[1].exists()  # an older release's folder name
    assert live.exists()


def spawned_workers(pid: int) -> list[int]:
    """uvicorn's worker processes under ``pid`` (multiprocessing's spawn; its resource tracker is none)."""
    found = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            found.append(int(child))
    return found


def get(port: int, path: str, cookie: str = "") -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        response = connection.getresponse()
        response.read()
        return int(response.status)
    finally:
        connection.close()


def healthy(port: int) -> bool:
    try:
        return get(port, "/healthz") == 200
    except OSError:
        return False


def recipient_cookie(share: Any) -> str:
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    now = timezone.now().timestamp()
    store[session.KEY] = {
        "share": share.pk,
        "language": "en",
        "stage": session.Stage.IN,
        "started": now,
        "seen": now,
    }
    store.save()
    return f"{settings.SESSION_COOKIE_NAME}={store.session_key}"


@pytest.mark.django_db(transaction=True)
def test_two_workers_serve_concurrent_recipients_and_the_audit_chain_verifies(
    organisation: Any, tmp_path: Path
) -> None:
    studies = [make_study(organisation, ANNA), make_study(organisation, PIET)]
    shares = [ready_share(organisation, [study], delivery="url", email="")[0] for study in studies]
    cookies = [recipient_cookie(shares[n % 2]) for n in range(SESSIONS)]
    renders = {
        study.pk: list(
            InstanceRender.objects.filter(instance__series__study=study).values_list("pk", flat=True)
        )
        for study in studies
    }
    before = AuditEvent.objects.count()
    port = free_port()
    data = tmp_path / "data"
    web = start(
        "web",
        env=process_env(data, http_port=str(port), web_workers="2", log_level="WARNING"),
        log=tmp_path / "web.log",
    )
    statuses: list[int] = []
    try:
        wait_for("radshare web", lambda: healthy(port), START_TIMEOUT, web)
        assert len(spawned_workers(web.pid)) == 2
        assert [p.name for p in data.glob("metrics-*")] == [f"metrics-{web.pid}"]  # the workers' counts
        barrier = threading.Barrier(SESSIONS)

        def browse(n: int) -> None:
            study = studies[n % 2]
            barrier.wait()
            for _ in range(ROUNDS):
                for path in (
                    "/r/studies",
                    f"/r/studies/{study.pk}/",
                    *(f"/r/images/{pk}/0/preview.jpg" for pk in renders[study.pk]),
                ):
                    statuses.append(get(port, path, cookies[n]))

        threads = [threading.Thread(target=browse, args=(n,)) for n in range(SESSIONS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        stop(web)
    assert not list(data.glob("metrics-*"))  # gone with the server
    assert len(statuses) == SESSIONS * ROUNDS * (2 + len(renders[studies[0].pk]))
    assert set(statuses) == {200}, (tmp_path / "web.log").read_text()[-3000:]
    # Two page entries (list, study) per round and session, none per image; every one linked into the chain.
    assert AuditEvent.objects.count() - before == SESSIONS * ROUNDS * 2
    report = chain.verify(chain.chain_key(organisation.pk))
    assert report.ok, report.problem
