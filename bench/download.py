"""DICOM ZIP download throughput: ``radshare web`` (uvicorn, ASGI) over loopback next to ``cat`` of the same files.

A fresh installation gets a generated CT study (512x512, 16 bit, uncompressed), rendered and shared, and a logged-in
recipient session. The reference is ``cat`` of the stored instance files to /dev/null in the same run (both from the
page cache: the files are read once before). The ZIP is read in 1 MiB pieces by a streaming HTTP client while the
web process's resident memory is sampled. docs/architecture.md "Performance budget": disk speed, flat memory.

Usage: python bench/download.py [--count 600] [--runs 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

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
store = SessionStore()
now = timezone.now().timestamp()
store[session.KEY] = {{"share": new.share.pk, "stage": session.Stage.IN, "started": now, "seen": now}}
store.save()
storage = get_storage()  # the reference reads the files themselves (file:// storage)
keys = Instance.objects.values_list("storage_key", flat=True)
files = [str(storage.local_path(instance_key(k))) for k in keys]
print(json.dumps({{"cookie": f"{{settings.SESSION_COOKIE_NAME}}={{store.session_key}}", "files": files}}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
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
            time.sleep(0.1)
    raise SystemExit("radshare web did not start")


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def download(port: int, cookie: str, headers: dict[str, str] | None = None) -> tuple[int, float, float]:
    """(bytes, seconds to the first byte, seconds in all), read in 1 MiB pieces."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    connection.request("GET", "/r/download/dicom.zip", headers={"Cookie": cookie, **(headers or {})})
    response = connection.getresponse()
    if response.status not in (200, 206):
        raise SystemExit(f"download refused: {response.status}")
    first = response.read(1)
    ttfb = time.perf_counter() - started
    received = len(first)
    while piece := response.read(1 << 20):
        received += len(piece)
    connection.close()
    assert received == int(response.headers["Content-Length"])
    return received, ttfb, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        data = Path(tmp_name) / "radshare"
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RADSHARE_")},
            "RADSHARE_DATA_DIR": str(data),
            "RADSHARE_HTTP_PORT": str(port),
            "RADSHARE_LOG_LEVEL": "WARNING",
            "RADSHARE_DOWNLOADS_PER_DAY": "1000",
        }
        cli = [PY, "-m", "radshare"]
        subprocess.run([*cli, "migrate", "-v0"], env=env, check=True, timeout=300)
        made = subprocess.run(
            [*cli, "shell", "-c", SETUP.format(count=args.count)],
            env=env,
            check=True,
            timeout=1200,
            capture_output=True,
            text=True,
        )
        info = json.loads(made.stdout.strip().splitlines()[-1])
        files: list[str] = info["files"]
        size = sum(Path(f).stat().st_size for f in files)

        subprocess.run(["cat", *files], stdout=subprocess.DEVNULL, check=True)  # into the page cache
        cat_seconds = []
        for _ in range(args.runs):
            started = time.perf_counter()
            subprocess.run(["cat", *files], stdout=subprocess.DEVNULL, check=True)
            cat_seconds.append(time.perf_counter() - started)

        web = subprocess.Popen([*cli, "web"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_http(port, web)
            download(port, info["cookie"], {"Range": "bytes=0-1048575"})  # warm-up: imports, templates
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
            results = []
            try:
                for _ in range(args.runs):
                    results.append(download(port, info["cookie"]))
                zip_size = results[0][0]
                resume = download(port, info["cookie"], {"Range": f"bytes={zip_size * 9 // 10}-"})
            finally:
                done.set()
                sampler.join()
            if reset:
                peak = max(peak, status_kb(web.pid, "VmHWM"))
        finally:
            web.terminate()
            web.wait(timeout=30)

    cat_mbs = size / 1e6 / min(cat_seconds)
    best = min(results, key=lambda r: r[2])
    web_mbs = best[0] / 1e6 / best[2]
    stream_mbs = best[0] / 1e6 / (best[2] - best[1])
    print(
        f"DICOM ZIP of {args.count} CT images 512x512 ({size / 1e6:.0f} MB of files, ZIP {best[0] / 1e6:.0f} MB), "
        f"loopback, best of {args.runs}"
    )
    print(f"  cat of the same files to /dev/null       {cat_mbs:8.0f} MB/s")
    print(
        f"  radshare web, whole request              {web_mbs:8.0f} MB/s  (first byte after {best[1]:.2f} s)"
    )
    print(f"  radshare web, after the first byte       {stream_mbs:8.0f} MB/s")
    print(
        f"  ratio radshare / cat                     {web_mbs / cat_mbs:8.2f}x"
        f"  (after the first byte: {stream_mbs / cat_mbs:.2f}x)"
    )
    print(f"  resume at 90%: first byte after {resume[1]:.2f} s")
    print(
        f"  web process RSS {baseline / 1024:.0f} MB before, peak {peak / 1024:.0f} MB during the downloads "
        f"(+{(peak - baseline) / 1024:.1f} MB)"
    )


if __name__ == "__main__":
    main()
