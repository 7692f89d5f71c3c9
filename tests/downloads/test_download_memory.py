"""B6.5: a ~300 MB DICOM ZIP streams from a real ``radshare web`` (uvicorn, ASGI) with flat memory.

The data is made by the web process's own installation (its SQLite file and storage, through ``radshare shell``):
600 uncompressed 512x512 16-bit CT images, rendered, shared, and a recipient session row. The ZIP is read in
1 MiB pieces while the server's resident memory is sampled; it must stay within 50 MB of its level before.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_runner import migrated_data_dir, radshare_env, run_radshare
from tests.conftest import free_port

IMAGES = 600
LIMIT_MB = 50

SETUP = """
import datetime as dt, json
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.utils import timezone
from pydicom.uid import generate_uid
from radshare.imaging.services import render_pending_now
from radshare.organisations.services import create_organisation
from radshare.recipients import session
from radshare.shares.services import create_share, prepare
from radshare.studies.models import Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import FakePatient, ct_series, encode

patient = FakePatient("MEM1", "Memory^Test", dt.date(1970, 1, 1))
org = create_organisation("mem", "Memory Hospital")
study_uid, series_uid = generate_uid(), generate_uid()
for batch in range({images} // 100):
    for i, ds in enumerate(ct_series(patient, count=100, size=512, study_uid=study_uid)):
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = batch * 100 + i + 1
        store_instance(org, encode(ds), source="upload")
render_pending_now(parallel=True)
study = Study.objects.get(study_instance_uid=study_uid)
new = create_share(org, [study.pk], recipient_type="patient", phone="0612345678", delivery="url")
assert prepare(new.share.pk) == "ready"
store = SessionStore()
now = timezone.now().timestamp()
store[session.KEY] = {{"share": new.share.pk, "stage": session.Stage.IN, "started": now, "seen": now}}
store.save()
print(json.dumps({{"cookie": f"{{settings.SESSION_COOKIE_NAME}}={{store.session_key}}", "size": study.size}}))
"""


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    data_dir = migrated_data_dir(tmp_path_factory.mktemp("memory"))
    env = radshare_env(data_dir, log_level="WARNING")
    done = run_radshare("shell", "-c", SETUP.format(images=IMAGES), env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return data_dir, json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def web(installation: tuple[Path, dict[str, str]], tmp_path: Path) -> Iterator[tuple[int, int]]:
    data_dir, _ = installation
    port = free_port()
    env = radshare_env(data_dir, http_port=str(port), log_level="WARNING")
    with (tmp_path / "web.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "radshare", "web"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "web.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "radshare web did not start"
                time.sleep(0.2)
        yield proc.pid, port
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def fetch(
    port: int, cookie: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, int]:
    """Status and bytes of the DICOM ZIP, read 1 MiB at a time (never held whole)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request(method, "/r/download/dicom.zip", headers={"Cookie": cookie, **(headers or {})})
        response = connection.getresponse()
        length = int(response.headers["Content-Length"])
        received = 0
        while piece := response.read(1 << 20):
            received += len(piece)
        assert received == (0 if method == "HEAD" else length)
        return response.status, length
    finally:
        connection.close()


@pytest.mark.once
def test_dicom_zip_streams_with_flat_memory(
    installation: tuple[Path, dict[str, str]], web: tuple[int, int]
) -> None:
    _, info = installation
    pid, port = web
    cookie = str(info["cookie"])
    # Warm up every code path once (imports, templates, the header reads): a HEAD and the first 4 MiB.
    assert fetch(port, cookie, method="HEAD")[0] == 200
    assert fetch(port, cookie, {"Range": f"bytes=0-{(4 << 20) - 1}"})[0] == 206
    time.sleep(0.5)
    baseline = rss_kb(pid)
    reset = True
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM, the peak resident size
    except OSError:
        reset = False
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kb(pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    try:
        status, size = fetch(port, cookie)
    finally:
        done.set()
        sampler.join()
    seconds = time.perf_counter() - started
    if reset:
        peak = max(peak, rss_kb(pid, "VmHWM"))
    growth_mb = (peak - baseline) / 1024
    print(  # noqa: T201 - shown with -s: the figures for the report
        f"\nDICOM ZIP {size / 1e6:.0f} MB in {seconds:.1f} s ({size / 1e6 / seconds:.0f} MB/s); "
        f"RSS {baseline / 1024:.0f} MB before, peak {peak / 1024:.0f} MB (+{growth_mb:.1f} MB)"
    )
    assert status == 200
    assert size > int(info["size"]) > 300 * 1000 * 1000
    assert growth_mb < LIMIT_MB
    assert Path(f"/proc/{pid}").exists()  # still serving
