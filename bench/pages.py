"""Recipient pages under load: 50 concurrent recipient sessions against ``radshare web`` (its default workers), each
with its own logged-in session cookie, on the study list, the viewer page of a 400-image CT study (with a PDF
report) and the viewer's preview images; the reference is ``/healthz`` asked in the same run, in turn with them.

Every session repeats: study list, viewer page, 8 preview images (walking through the study), and after each of
these one ``/healthz`` (without the cookie: the cheapest request the server answers, whatever the load). Latencies
are collected per kind over ``--seconds`` windows (after a warm-up pass); each window gives a p50/p95/p99 per kind,
and the figures are medians over ``--runs`` windows.

Ratio (bench/results.py, for times): p95 of ``/healthz`` (the floor) / p95 of the page, both from the same windows;
1.0 means the page is as quick as the floor. The target (docs/architecture.md "Performance budget") is a page p95
within 1.5x the floor: ratio >= 1 / 1.5 = 0.67.

The client is plain asyncio with h11 (uvicorn's own HTTP/1.1 parser), one keep-alive connection per session for
its pages, images and ``/healthz`` in turn (so that, with several web workers, the floor is measured in the same
process as the pages); it runs on the same machine as the server, and its cost lands on the floor and the pages
alike.

Usage: python bench/pages.py [--sessions 50] [--images 400] [--seconds 10] [--runs 3]
                             [--postgres [postgres://postgres@127.0.0.1:5432]] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import h11

from processes import free_port, postgres_env
from results import Row, report

PY = sys.executable
KINDS = ("list", "viewer", "image")
LABELS = {"list": "study list", "viewer": "viewer page", "image": "preview image"}
IMAGES_PER_CYCLE = 8
TARGET = 1 / 1.5

SETUP = """
import datetime as dt, json
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.utils import timezone
from pydicom.uid import generate_uid
from radshare.imaging import reports
from radshare.imaging.models import InstanceRender
from radshare.imaging.services import render_pending_now
from radshare.organisations.services import create_organisation
from radshare.recipients import session
from radshare.shares.services import create_share, prepare
from radshare.studies.models import Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import FakePatient, ct_series, encode

count, sessions = {count}, {sessions}
patient = FakePatient("BENCH1", "Bench^Mark", dt.date(1970, 1, 1))
org = create_organisation("bench", "Bench Hospital", require_two_factor=False)
study_uid, series_uid = generate_uid(), generate_uid()
for start in range(0, count, 100):
    for i, ds in enumerate(ct_series(patient, count=min(100, count - start), size=512, study_uid=study_uid)):
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = start + i + 1
        store_instance(org, encode(ds), source="upload")
study = Study.objects.get(study_instance_uid=study_uid)
PDF = (b"%PDF-1.4\\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\\n"
       b"trailer<</Root 1 0 R>>\\n%%EOF\\n")
reports.attach_pdf_report(study, PDF, title="Verslag CT")
render_pending_now(parallel=True)
cookies = []
for n in range(sessions):
    # Each session its own share of the same study (every recipient has their own), in one organisation.
    new = create_share(org, [study.pk], recipient_type="patient", phone="0612345678", delivery="url", language="en")
    assert prepare(new.share.pk) == "ready"
    store = SessionStore()
    now = timezone.now().timestamp()
    store[session.KEY] = {{"share": new.share.pk, "language": "en", "stage": session.Stage.IN, "started": now,
                          "seen": now}}
    store.save()
    cookies.append(f"{{settings.SESSION_COOKIE_NAME}}={{store.session_key}}")
renders = list(InstanceRender.objects.filter(instance__series__study=study, status="done", frames__gt=0)
               .order_by("instance__instance_number").values_list("pk", flat=True))
print(json.dumps({{"cookies": cookies, "study": study.pk, "renders": renders}}))
"""


def wait_http(port: int, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("radshare web exited")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("radshare web did not start")


class Connection:
    """One keep-alive HTTP/1.1 connection (h11 over asyncio streams); reconnects when the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.headers = [("Host", f"127.0.0.1:{port}"), ("Accept", "text/html,*/*")]
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.h11 = h11.Connection(h11.CLIENT)

    async def get(self, path: str, cookie: str = "") -> tuple[int, int]:
        """(status, body bytes) of a GET, with ``cookie`` when given; the whole body is read."""
        if self.writer is None or self.h11.our_state is not h11.IDLE:
            await self.close()
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.h11 = h11.Connection(h11.CLIENT)
        assert self.reader is not None
        assert self.writer is not None
        headers = [*self.headers, ("Cookie", cookie)] if cookie else self.headers
        self.writer.write(self.h11.send(h11.Request(method="GET", target=path, headers=headers)))
        self.writer.write(self.h11.send(h11.EndOfMessage()) or b"")
        status, size = 0, 0
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(await self.reader.read(1 << 16))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                size += len(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("closed by the server")
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        return status, size

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


@dataclass
class Latencies:
    """Seconds per request kind (and "healthz"), for the current window; failures counted apart."""

    by_kind: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in (*KINDS, "healthz")})
    failed: int = 0
    recording: bool = False


async def one_session(
    port: int, cookie: str, paths: list[tuple[str, str]], offset: int, stop: asyncio.Event, out: Latencies
) -> None:
    # One connection for the session's pages, images and /healthz in turn: the floor is measured in the same
    # worker process and queue as the pages (with several workers, each connection stays with one of them).
    connection = Connection(port)
    step = offset
    try:
        while not stop.is_set():
            for kind, path, with_cookie in (
                (*paths[step % len(paths)], cookie),
                ("healthz", "/healthz", ""),
            ):
                started = time.perf_counter()
                try:
                    status, _ = await connection.get(path, with_cookie)
                except (OSError, h11.ProtocolError, ConnectionError):
                    status = 0
                    await connection.close()
                elapsed = time.perf_counter() - started
                if out.recording:
                    if status == 200:
                        out.by_kind[kind].append(elapsed)
                    else:
                        out.failed += 1
            step += 1
    finally:
        await connection.close()


def cycle(study: int, renders: list[int], offset: int) -> list[tuple[str, str]]:
    """One session's round: the study list, the viewer page, then a walk through the study's previews."""
    walk = [renders[(offset + i) % len(renders)] for i in range(IMAGES_PER_CYCLE * 4)]
    out: list[tuple[str, str]] = []
    for chunk in range(0, len(walk), IMAGES_PER_CYCLE):
        out += [("list", "/r/studies"), ("viewer", f"/r/studies/{study}/")]
        out += [("image", f"/r/images/{pk}/0/preview.jpg") for pk in walk[chunk : chunk + IMAGES_PER_CYCLE]]
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def load(
    port: int, info: dict[str, object], seconds: float, runs: int
) -> list[dict[str, dict[str, float]]]:
    """``runs`` windows of ``seconds`` under the load of every session; per window and kind p50/p95/p99."""
    cookies: list[str] = info["cookies"]  # type: ignore[assignment]
    renders: list[int] = info["renders"]  # type: ignore[assignment]
    study = int(info["study"])  # type: ignore[call-overload]
    # Warm-up: every session once through a page of each kind, one after another (imports, templates, caches).
    for index, cookie in enumerate(cookies):
        connection = Connection(port)
        for _, path in cycle(study, renders, index * 17)[:3]:
            status, _ = await connection.get(path, cookie)
            if status != 200:
                raise SystemExit(f"{path}: {status} during the warm-up")
        await connection.close()
    out, stop = Latencies(), asyncio.Event()
    tasks = [
        asyncio.create_task(
            one_session(port, cookie, cycle(study, renders, index * 17), index * 7, stop, out)
        )
        for index, cookie in enumerate(cookies)
    ]
    await asyncio.sleep(min(3.0, seconds / 2))  # every session under way before the first window
    windows = []
    for _ in range(runs):
        out.by_kind = {k: [] for k in (*KINDS, "healthz")}
        out.recording = True
        await asyncio.sleep(seconds)
        out.recording = False
        windows.append(
            {
                kind: {
                    "p50": percentile(values, 0.50),
                    "p95": percentile(values, 0.95),
                    "p99": percentile(values, 0.99),
                    "n": float(len(values)),
                }
                for kind, values in out.by_kind.items()
            }
        )
    stop.set()
    await asyncio.gather(*tasks)
    if out.failed:
        print(f"  ({out.failed} requests failed or were refused)", file=sys.stderr)
    return windows


def measure(env: dict[str, str], args: argparse.Namespace) -> tuple[list[dict[str, dict[str, float]]], int]:
    """Set up a fresh installation, run ``radshare web`` with its default workers, put the load on it."""
    cli = [PY, "-m", "radshare"]
    subprocess.run([*cli, "migrate", "-v0"], env=env, check=True, timeout=600)
    made = subprocess.run(
        [*cli, "shell", "-c", SETUP.format(count=args.images, sessions=args.sessions)],
        env=env,
        timeout=1800,
        capture_output=True,
        text=True,
    )
    if made.returncode:
        sys.exit(made.stderr[-3000:])
    info = json.loads(made.stdout.strip().splitlines()[-1])
    port = free_port()
    web_env = {**env, "RADSHARE_HTTP_PORT": str(port)}
    log = Path(env["RADSHARE_DATA_DIR"]) / "web.log"
    with log.open("wb") as out:
        web = subprocess.Popen([*cli, "web"], env=web_env, stdout=out, stderr=subprocess.STDOUT)
    try:
        try:
            wait_http(port, web)
        except SystemExit:
            print(log.read_text()[-3000:], file=sys.stderr)
            raise
        workers = _workers(web.pid)
        windows = asyncio.run(load(port, info, args.seconds, args.runs))
    finally:
        web.terminate()
        try:
            web.wait(timeout=30)
        except subprocess.TimeoutExpired:
            web.kill()
            web.wait()
    return windows, workers


def _workers(pid: int) -> int:
    """uvicorn's worker processes under ``radshare web`` (1 when it serves from its own process)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 1
    spawned = 0
    for child in children:
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        spawned += b"spawn_main" in cmdline and b"resource_tracker" not in cmdline
    return spawned or 1


def rows_for(name: str, windows: list[dict[str, dict[str, float]]]) -> list[Row]:
    def median(kind: str, q: str) -> float:
        return statistics.median(w[kind][q] for w in windows)

    rows = []
    for kind in KINDS:
        rows.append(
            Row(
                f"{name}: {LABELS[kind]} p95 (s)",
                median(kind, "p95"),
                median("healthz", "p95"),
                higher_is_better=False,
                target=TARGET,
                unit="s",
                extra={
                    "p50": round(median(kind, "p50"), 4),
                    "p99": round(median(kind, "p99"), 4),
                    "healthz_p50": round(median("healthz", "p50"), 4),
                    "healthz_p99": round(median("healthz", "p99"), 4),
                    "requests": int(sum(w[kind]["n"] for w in windows)),
                },
            )
        )
    return rows


def print_details(name: str, windows: list[dict[str, dict[str, float]]]) -> None:
    print(f"\n{name}: medians of {len(windows)} windows (seconds)")
    print(f"  {'':<16}{'p50':>8}{'p95':>8}{'p99':>8}{'requests':>10}")
    for kind in (*KINDS, "healthz"):
        med = {q: statistics.median(w[kind][q] for w in windows) for q in ("p50", "p95", "p99")}
        total = int(sum(w[kind]["n"] for w in windows))
        label = LABELS.get(kind, "/healthz")
        print(f"  {label:<16}{med['p50']:>8.3f}{med['p95']:>8.3f}{med['p99']:>8.3f}{total:>10}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of one measured window")
    parser.add_argument("--runs", type=int, default=3, help="measured windows (medians are taken over them)")
    parser.add_argument(
        "--postgres",
        nargs="?",
        const="postgres://postgres@127.0.0.1:5432",
        default="",
        help="a PostgreSQL server URL (no database) to measure on too",
    )
    parser.add_argument("--quick", action="store_true", help="a few sessions and images: checks that it runs")
    args = parser.parse_args()
    if args.quick:
        args.sessions, args.images, args.seconds, args.runs = 3, 12, 1.0, 1
    base = {k: v for k, v in os.environ.items() if not k.startswith("RADSHARE_")}
    base["RADSHARE_LOG_LEVEL"] = "WARNING"
    results: list[tuple[str, list[dict[str, dict[str, float]]]]] = []
    workers = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        env = {**base, "RADSHARE_DATA_DIR": str(Path(tmp_name) / "sqlite")}
        windows, workers["SQLite"] = measure(env, args)
        results.append(("SQLite", windows))
        if args.postgres:
            with postgres_env(args.postgres, base, Path(tmp_name) / "postgres", "pages") as env:
                windows, workers["PostgreSQL"] = measure(env, args)
                results.append(("PostgreSQL", windows))
    for name, windows in results:
        print_details(f"{name} ({workers[name]} web worker(s))", windows)
    report(
        "pages",
        f"{args.sessions} concurrent recipient sessions, {args.images}-image CT: page p95 vs /healthz p95 in the same "
        f"run (ratio = floor / page, target >= 1/1.5), medians of {args.runs} windows of {args.seconds:g} s",
        [row for name, windows in results for row in rows_for(name, windows)],
        sessions=args.sessions,
        images=args.images,
        seconds=args.seconds,
        runs=args.runs,
        web_workers=workers,
    )


if __name__ == "__main__":
    main()
