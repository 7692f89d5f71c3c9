"""DICOM ZIP download: ``radshare web`` (uvicorn, ASGI, one worker) over loopback next to zipstream-ng's own
``zipserver`` serving the same stored files, and ``cat`` of them.

A fresh installation gets a generated CT study (512x512, 16 bit, uncompressed; 1,600 images by default, the issue's
figure), rendered and shared, and a logged-in recipient session. Both servers read the files from the page cache
(read once before). Each download is read by the same streaming HTTP client into one reused buffer; ours and
zipserver take turns, medians of ``--runs``. docs/architecture.md "Performance budget" holds the targets:

* whole request (first byte included) at least as fast as zipserver: ratio >= 1.0;
* time to the first byte <= 0.1 s at 1,600 images (zipserver's is the reference, the target is absolute);
* the web process's memory growth while streaming < 50 MB (the issue asks this at 2 GB; setting up 2 GB of CT
  takes minutes here, so the default measures the 1,600-image ZIP, ~0.9 GB: ``--count 3800`` for 2 GB);
* a resume at 90% starts as fast as a new download.

A share's layouts (DICOMDIR, offline viewer) are built and kept by a worker once it is ready (``keep_layouts``,
called here as the worker would): its time and the first request's first byte are reported on their own rows.

Usage: python bench/download.py [--count 1600] [--runs 3] [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from processes import free_port
from results import Row, report

PY = sys.executable

SETUP = """
import datetime as dt, json
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.utils import timezone
from pydicom.uid import generate_uid
from radshare.core.storage import get_storage, instance_key
from radshare.imaging.services import render_pending_now
from radshare.organisations.services import create_organisation
from radshare.recipients import session
from radshare.shares.services import create_share, prepare
from radshare.studies.models import Instance, Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import FakePatient, ct_series, encode

count = {count}
patient = FakePatient("BENCH1", "Bench^Mark", dt.date(1970, 1, 1))
org = create_organisation("bench", "Bench Hospital")
study_uid, series_uid = generate_uid(), generate_uid()
for start in range(0, count, 100):
    for i, ds in enumerate(ct_series(patient, count=min(100, count - start), size=512, study_uid=study_uid)):
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = start + i + 1
        store_instance(org, encode(ds), source="upload")
render_pending_now(parallel=True)
study = Study.objects.get(study_instance_uid=study_uid)
new = create_share(org, [study.pk], recipient_type="patient", phone="0612345678", delivery="url")
assert prepare(new.share.pk) == "ready"
import time
from radshare.downloads.tasks import keep_layouts
started = time.perf_counter()
keep_layouts.call(new.share.pk)  # what the worker does once the share is ready
built = time.perf_counter() - started
store = SessionStore()
now = timezone.now().timestamp()
store[session.KEY] = {{"share": new.share.pk, "stage": session.Stage.IN, "started": now, "seen": now}}
store.save()
storage = get_storage()  # the reference serves the files themselves (file:// storage)
keys = Instance.objects.order_by("instance_number").values_list("storage_key", flat=True)
root = str(storage.local_path("instances").parent)
print(json.dumps({{"cookie": f"{{settings.SESSION_COOKIE_NAME}}={{store.session_key}}", "root": root,
                   "files": [instance_key(k) for k in keys], "built": built}}))
"""


def wait_http(port: int, proc: subprocess.Popen[bytes], path: str = "/", timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("a server exited")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", path)
            if connection.getresponse().status < 500:
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("a server did not start")


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


class Download:
    """One download's figures: bytes, seconds to the first byte, seconds in all."""

    def __init__(self, size: int, first: float, total: float) -> None:
        self.size, self.first, self.total = size, first, total

    @property
    def mbs(self) -> float:
        return self.size / 1e6 / self.total


def fetch(port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None) -> Download:
    """Read the whole response in 1 MiB pieces into one reused buffer."""
    buffer = memoryview(bytearray(1 << 20))
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    if response.status not in (200, 206):
        raise SystemExit(f"{path}: {response.status}")
    received = response.readinto(buffer[:1])
    first = time.perf_counter() - started
    while got := response.readinto(buffer):
        received += got
    connection.close()
    if received != int(response.headers["Content-Length"]):
        raise SystemExit(f"{path}: {received} bytes, Content-Length {response.headers['Content-Length']}")
    return Download(received, first, time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1600)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="a tiny run: only checks that the benchmark works"
    )
    args = parser.parse_args()
    if args.quick:
        args.count, args.runs = 20, 1
    with tempfile.TemporaryDirectory() as tmp_name:
        data = Path(tmp_name) / "radshare"
        port, zport = free_port(), free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RADSHARE_")},
            "RADSHARE_DATA_DIR": str(data),
            "RADSHARE_HTTP_PORT": str(port),
            "RADSHARE_LOG_LEVEL": "WARNING",
            "RADSHARE_DOWNLOADS_PER_DAY": "1000",
        }
        cli = [PY, "-m", "radshare"]
        subprocess.run([*cli, "migrate", "-v0"], env=env, check=True, timeout=300)
        started = time.perf_counter()
        made = subprocess.run(
            [*cli, "shell", "-c", SETUP.format(count=args.count)],
            env=env,
            check=True,
            timeout=1200,
            capture_output=True,
            text=True,
        )
        print(f"set up {args.count} images in {time.perf_counter() - started:.0f} s", flush=True)
        info = json.loads(made.stdout.strip().splitlines()[-1])
        root, files = Path(info["root"]), info["files"]
        size = sum((root / f).stat().st_size for f in files)
        subprocess.run(["cat", *[str(root / f) for f in files]], stdout=subprocess.DEVNULL, check=True)

        def cat() -> float:
            started = time.perf_counter()
            subprocess.run(["cat", *[str(root / f) for f in files]], stdout=subprocess.DEVNULL, check=True)
            return size / 1e6 / (time.perf_counter() - started)

        web = subprocess.Popen(
            [*cli, "web", "--workers", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        zipserver = subprocess.Popen(
            [PY, "-m", "zipstream.server", "--bind", "127.0.0.1", "--directory", str(root), str(zport)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        post = urllib.parse.urlencode([("files", f) for f in files]).encode()
        cookie = {"Cookie": info["cookie"]}
        try:
            wait_http(port, web, "/healthz")
            wait_http(zport, zipserver)
            first = fetch(port, "GET", "/r/download/dicom.zip", cookie)  # the share's first download
            baseline = status_kb(web.pid, "VmRSS")
            reset = True
            try:
                Path(f"/proc/{web.pid}/clear_refs").write_text("5")  # VmHWM from here on
            except OSError:
                reset = False
            peak = baseline
            done = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, status_kb(web.pid, "VmRSS"))
                    time.sleep(0.01)

            sampler = threading.Thread(target=sample)
            sampler.start()
            ours: list[Download] = []
            theirs: list[Download] = []
            cats: list[float] = []
            steps: list[Callable[[], object]] = [
                lambda: ours.append(fetch(port, "GET", "/r/download/dicom.zip", cookie)),
                lambda: theirs.append(
                    fetch(
                        zport, "POST", "/", {"Content-Type": "application/x-www-form-urlencoded"}, body=post
                    )
                ),
                lambda: cats.append(cat()),
            ]
            resumes: list[Download] = []
            try:
                for _ in range(args.runs):
                    for step in steps:
                        step()
                zip_size = ours[0].size
                for _ in range(args.runs):
                    resumes.append(
                        fetch(
                            port,
                            "GET",
                            "/r/download/dicom.zip",
                            {**cookie, "Range": f"bytes={zip_size * 9 // 10}-"},
                        )
                    )
            finally:
                done.set()
                sampler.join()
            if reset:
                peak = max(peak, status_kb(web.pid, "VmHWM"))
        finally:
            for proc in (web, zipserver):
                proc.terminate()
                proc.wait(timeout=30)

    def median(values: list[float]) -> float:
        return statistics.median(values)

    rows = [
        Row(
            "whole request, MB/s",
            median([d.mbs for d in ours]),
            median([d.mbs for d in theirs]),
            target=1.0,
            unit="MB/s",
            extra={
                "cat MB/s": round(median(cats)),
                "our ZIP bytes": zip_size,
                "zipserver ZIP bytes": theirs[0].size,
            },
        ),
        Row(
            f"first byte, s ({args.count} images): vs the 0.1 s target",
            median([d.first for d in ours]),
            0.1,
            higher_is_better=False,
            target=1.0,
            unit="s",
        ),
        Row(
            "first byte, s: vs zipserver",
            median([d.first for d in ours]),
            median([d.first for d in theirs]),
            higher_is_better=False,
            unit="s",
        ),
        Row("first byte, s: the share's first download", first.first, unit="s"),
        Row("layouts built ahead by the worker (DICOM + JPEG), s", info["built"], unit="s"),
        Row(
            "resume at 90%: first byte, s (vs. a new download's)",
            median([d.first for d in resumes]),
            median([d.first for d in ours]),
            higher_is_better=False,
            unit="s",
        ),
        Row(
            f"web process memory growth, MB ({zip_size / 1e9:.1f} GB ZIP, target < 50)",
            (peak - baseline) / 1024,
            unit="MB",
            extra={"rss_before_mb": round(baseline / 1024)},
        ),
    ]
    report(
        "download",
        f"DICOM ZIP of {args.count} CT images 512x512 over loopback ({size / 1e6:.0f} MB of DICOM files), "
        f"ours vs zipstream-ng's zipserver, medians of {args.runs}, taking turns",
        rows,
        count=args.count,
        runs=args.runs,
    )


if __name__ == "__main__":
    main()
