"""Last C-STORE to share ready: how long a share of a study that has just arrived waits for its renders.

A fresh installation runs ``radshare scp`` and ``radshare worker`` (default settings: render processes, batches).
DCMTK ``storescu`` (TCP_NODELAY=1) sends a generated 512x512 CT study in one association; the moment it returns
(the last C-STORE acknowledged) a waiting process creates a share of the study and times it until the share is
ready. Two kinds of study: uncompressed, and JPEG 2000 lossless (decode-bound). The reference for the latter is
decoding the same files alone on every core (a process pool, pydicom), measured in the same run. A small study is
sent and shared first, not timed: the processes have just started, and a running installation has long finished
starting them when a study comes in. The next study is sent once the CT window presets of the one before are made.
docs/architecture.md "Performance budget": JPEG 2000 at most 4 s for 400 images; uncompressed below 1 s.

With ``--journal`` the SCP runs in journal mode (``RADSHARE_INGEST_JOURNAL``): the last answer comes before the index
holds the last images, so the watcher first waits until the study holds them all (timed too), then shares it.

Usage: python bench/ready.py [--count 400] [--runs 3] [--journal] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pydicom
from pydicom.uid import JPEG2000Lossless, generate_uid

from processes import free_port, wait_port
from radshare.studies.synthetic import FakePatient, ct_series, encode
from results import Row, report

WARM_UP = 20  # images of a study sent and shared first, not timed
PY = sys.executable
CLI = [PY, "-m", "radshare"]

# Runs inside `radshare shell`: Django is loaded before the images are sent, so its start-up is not timed. Each
# line on stdin is a Study Instance UID that has just arrived; the answer is the seconds until its share is ready,
# of which waiting for the index, and until the CT window presets (the renders' second pass) are made.
WATCH = """
import sys, time
from radshare.imaging.models import InstanceRender
from radshare.organisations.models import Organisation
from radshare.shares.models import Share
from radshare.shares.services import create_share
from radshare.studies.models import Study
org = Organisation.objects.get(slug="bench")
print("ready to watch", flush=True)
for line in sys.stdin:
    started = time.perf_counter()
    uid, count = line.split()
    while Study.objects.filter(study_instance_uid=uid, number_of_instances=int(count)).count() == 0:
        time.sleep(0.01)  # journal mode: the index follows the answers
    indexed = time.perf_counter() - started
    study = Study.objects.get(study_instance_uid=uid)
    share = create_share(org, [study.pk], recipient_type="patient", phone="0612345678", delivery="url").share
    while (status := Share.objects.values_list("status", flat=True).get(pk=share.pk)) == Share.Status.PREPARING:
        time.sleep(0.02)
    ready = time.perf_counter() - started
    # CT window presets come in a second pass after the share is ready; the next study is sent once they are made,
    # so that no run measures the one before it.
    while InstanceRender.objects.filter(instance__series__study=study, presets_due=True).exists():
        time.sleep(0.02)
    print(f"{ready:.4f} {indexed:.4f} {time.perf_counter() - started:.4f} {status}", flush=True)
"""


def make_study(folder: Path, count: int, compressed: bool) -> str:
    """``count`` CT images of one new study in ``folder``; returns its Study Instance UID."""
    folder.mkdir(parents=True)
    patient = FakePatient("BENCH2", "Bench^Ready", dt.date(1970, 1, 1))
    study_uid = generate_uid()
    for i, ds in enumerate(ct_series(patient, count=count, size=512, study_uid=study_uid)):
        if compressed:
            ds.compress(JPEG2000Lossless)
        (folder / f"{i:04d}.dcm").write_bytes(encode(ds))
    return study_uid


def _decode(path: str) -> int:
    return int(pydicom.dcmread(path).pixel_array.size)


def decode_alone(folder: Path) -> float:
    """Seconds to decode every file of ``folder`` on every core: the floor for a decode-bound render."""
    files = sorted(str(p) for p in folder.iterdir())
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(_decode, files[:2]))  # the processes are started before the clock
        started = time.perf_counter()
        list(pool.map(_decode, files, chunksize=8))
        return time.perf_counter() - started


def send(folder: Path, port: int, compressed: bool) -> None:
    files = sorted(str(p) for p in folder.iterdir())
    propose = ["--propose-j2k-lossless"] if compressed else []
    subprocess.run(
        ["storescu", *propose, "-aet", "BENCHSCU", "-aec", "ANY", "127.0.0.1", str(port), *files],
        check=True,
        env={**os.environ, "TCP_NODELAY": "1"},
        timeout=900,
        capture_output=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--journal", action="store_true", help="the SCP in journal mode")
    parser.add_argument("--quick", action="store_true", help="a few images, one run: checks that it runs")
    args = parser.parse_args()
    if args.quick:
        args.count, args.runs = 10, 1
    if shutil.which("storescu") is None:
        raise SystemExit("storescu (DCMTK) is needed: apt-get install dcmtk")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RADSHARE_")},
            "RADSHARE_DATA_DIR": str(tmp / "radshare"),
            "RADSHARE_DICOM_PORT": str(free_port()),
            "RADSHARE_LOG_LEVEL": "WARNING",
            "RADSHARE_INGEST_JOURNAL": "1" if args.journal else "0",
        }
        subprocess.run([*CLI, "migrate", "-v0"], env=env, check=True, timeout=300)
        for command in (
            ["org", "create", "bench", "--name", "Bench"],
            ["pacsnode", "add", "bench", "BENCHSCU"],
        ):
            subprocess.run([*CLI, *command], env=env, check=True, timeout=60, capture_output=True)
        studies = {
            (kind, run): make_study(tmp / f"{kind}-{run}", args.count, kind == "jpeg2000")
            for run in range(args.runs)
            for kind in ("uncompressed", "jpeg2000")
        }
        warm_up = make_study(tmp / "warm-up", WARM_UP, False)
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        scp = subprocess.Popen([*CLI, "scp"], env=env, **quiet)  # type: ignore[call-overload]
        worker = subprocess.Popen([*CLI, "worker"], env=env, **quiet)  # type: ignore[call-overload]
        watch = subprocess.Popen(
            [*CLI, "shell", "--no-imports", "-c", WATCH],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert watch.stdin is not None
        assert watch.stdout is not None
        times: dict[str, list[float]] = {"uncompressed": [], "jpeg2000": [], "decode": []}
        indexed: dict[str, list[float]] = {"uncompressed": [], "jpeg2000": []}
        presets: dict[str, list[float]] = {"uncompressed": [], "jpeg2000": []}
        try:
            wait_port(int(env["RADSHARE_DICOM_PORT"]))
            assert watch.stdout.readline().strip() == "ready to watch"
            # Not timed: the processes have just started (the worker's render processes import while the first
            # images arrive); a running installation has done so long before a study comes in.
            send(tmp / "warm-up", int(env["RADSHARE_DICOM_PORT"]), False)
            watch.stdin.write(f"{warm_up} {WARM_UP}\n")
            watch.stdin.flush()
            watch.stdout.readline()
            for run in range(args.runs):
                for kind in ("uncompressed", "jpeg2000"):
                    send(tmp / f"{kind}-{run}", int(env["RADSHARE_DICOM_PORT"]), kind == "jpeg2000")
                    watch.stdin.write(f"{studies[kind, run]} {args.count}\n")
                    watch.stdin.flush()
                    seconds, index_seconds, presets_seconds, status = watch.stdout.readline().split()
                    if status != "ready":
                        raise SystemExit(f"the share ended {status}, not ready")
                    times[kind].append(float(seconds))
                    indexed[kind].append(float(index_seconds))
                    presets[kind].append(float(presets_seconds))
                times["decode"].append(decode_alone(tmp / f"jpeg2000-{run}"))
        finally:
            watch.stdin.close()
            for process in (watch, worker, scp):
                process.terminate()
            for process in (watch, worker, scp):
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    report(
        "ready-journal" if args.journal else "ready",
        f"Last C-STORE -> share ready, {args.count} CT images 512x512, medians of {args.runs} "
        f"({os.cpu_count()} cores){', SCP in journal mode' if args.journal else ''}",
        [
            Row(
                "uncompressed: seconds to ready",
                median(times["uncompressed"]),
                extra={
                    "budget_seconds": 1.0,
                    "runs": str(times["uncompressed"]),
                    "of_which_indexing": str(indexed["uncompressed"]),
                    "presets_made": str(presets["uncompressed"]),
                },
                higher_is_better=False,
                unit="s",
            ),
            Row(
                "JPEG 2000 lossless: seconds to ready / decode alone",
                median(times["jpeg2000"]),
                reference=median(times["decode"]),
                higher_is_better=False,
                unit="s",
                extra={
                    "budget_seconds": 4.0,
                    "runs": str(times["jpeg2000"]),
                    "of_which_indexing": str(indexed["jpeg2000"]),
                    "presets_made": str(presets["jpeg2000"]),
                },
            ),
        ],
        count=args.count,
        runs=args.runs,
    )


if __name__ == "__main__":
    main()
