"""C-STORE throughput: radshare's storage SCP next to references measured in the same run.

One DCMTK ``storescu`` association sends the same generated 512x512 CT files to:
  * DCMTK ``storescp`` (writes files, no fsync),
  * a bare pynetdicom SCP writing the received bytes (no fsync) and one that fsyncs each file,
  * ``radshare scp`` (fsync + rename + index + commit before answering; SQLite WAL, synchronous=FULL).
docs/architecture.md "Performance budget": radshare >= 0.8x the bare SCP with the same durability (fsync per file).

Usage: python bench/scp_store.py [--count 400]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

BARE_SCP = textwrap.dedent(
    """
    import os, sys
    from pynetdicom import AE, evt, AllStoragePresentationContexts, ALL_TRANSFER_SYNTAXES
    out, port, fsync = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    n = 0
    def store(event):
        global n
        n += 1
        path = os.path.join(out, f"{n}.dcm")
        with open(path, "wb") as f:
            f.write(event.encoded_dataset())
            if fsync:
                f.flush(); os.fsync(f.fileno())
        return 0x0000
    ae = AE(ae_title="BARE")
    ae.maximum_pdu_size = 0
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.start_server(("127.0.0.1", port), evt_handlers=[(evt.EVT_C_STORE, store)])
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def make_files(folder: Path, count: int) -> int:
    import datetime as dt

    from radshare.studies.synthetic import FakePatient, ct_series, encode

    patient = FakePatient("BENCH1", "Bench^Mark", dt.date(1970, 1, 1))
    total = 0
    for i, ds in enumerate(ct_series(patient, count=count, size=512)):
        data = encode(ds)
        (folder / f"ct{i:05d}.dcm").write_bytes(data)
        total += len(data)
    return total


def send(folder: Path, port: int, calling: str = "BENCHSCU") -> float:
    env = {**os.environ, "TCP_NODELAY": "1"}
    files = sorted(str(p) for p in folder.iterdir())
    started = time.perf_counter()
    subprocess.run(
        ["storescu", "-aet", calling, "-aec", "ANY", "127.0.0.1", str(port), *files],
        check=True,
        env=env,
        timeout=600,
        capture_output=True,
    )
    return time.perf_counter() - started


def run_target(
    name: str, cmd: list[str], port: int, folder: Path, env: dict[str, str] | None = None
) -> float:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port)
        seconds = send(folder, port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    return seconds


def setup_radshare(cli: list[str], data: Path, base_env: dict[str, str]) -> dict[str, str]:
    """A fresh installation: migrated, one organisation, the bench's AE title admitted."""
    env = {
        **base_env,
        "RADSHARE_DATA_DIR": str(data),
        "RADSHARE_DICOM_PORT": str(free_port()),
        "RADSHARE_LOG_LEVEL": "WARNING",
    }
    env.pop("RADSHARE_DATABASE_URL", None)
    subprocess.run([*cli, "migrate", "-v0"], env=env, check=True, timeout=300)
    for args in (["org", "create", "bench", "--name", "Bench"], ["pacsnode", "add", "bench", "BENCHSCU"]):
        subprocess.run([*cli, *args], env=env, check=True, timeout=60, capture_output=True)
    return env


def pending(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM imaging_instancerender WHERE status IN ('pending', 'rendering')"
        ).fetchone()
    return int(row[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=400)
    args = parser.parse_args()
    for tool in ("storescu", "storescp"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} (DCMTK) is needed: apt-get install dcmtk")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        src = tmp / "files"
        src.mkdir()
        total = make_files(src, args.count)
        mb = total / 1e6
        results: dict[str, float] = {}

        out = tmp / "dcmtk"
        out.mkdir()
        port = free_port()
        env = {**os.environ, "TCP_NODELAY": "1"}
        results["DCMTK storescp (no fsync)"] = run_target(
            "storescp", ["storescp", "-od", str(out), str(port)], port, src, env
        )

        for fsync in ("0", "1"):
            out = tmp / f"bare{fsync}"
            out.mkdir()
            port = free_port()
            label = (
                "bare pynetdicom SCP, fsync per file" if fsync == "1" else "bare pynetdicom SCP (no fsync)"
            )
            results[label] = run_target(label, [PY, "-c", BARE_SCP, str(out), str(port), fsync], port, src)

        cli = [PY, "-m", "radshare"]
        renv = setup_radshare(cli, tmp / "radshare", dict(os.environ))
        port = int(renv["RADSHARE_DICOM_PORT"])
        results["radshare scp (fsync + index + commit)"] = run_target(
            "radshare", [*cli, "scp"], port, src, renv
        )

        # The same again into a fresh installation with a task worker rendering while images arrive.
        renv = setup_radshare(cli, tmp / "radshare-with-worker", renv)
        port = int(renv["RADSHARE_DICOM_PORT"])
        worker = subprocess.Popen(
            [*cli, "worker"], env=renv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            label = "radshare scp, worker rendering meanwhile"
            results[label] = run_target("radshare", [*cli, "scp"], port, src, renv)
            finished = time.perf_counter()
            db = Path(renv["RADSHARE_DATA_DIR"]) / "radshare.sqlite3"
            while pending(db):
                time.sleep(0.2)
            render_tail = time.perf_counter() - finished
        finally:
            worker.terminate()
            worker.wait(timeout=30)

        print(
            f"C-STORE of {args.count} CT images 512x512 ({mb:.0f} MB), one storescu association, TCP_NODELAY=1"
        )
        reference = results["bare pynetdicom SCP, fsync per file"]
        for label, seconds in results.items():
            print(f"  {label:42s} {args.count / seconds:7.1f} images/s  {mb / seconds:7.1f} MB/s")
        ours = results["radshare scp (fsync + index + commit)"]
        print(f"  ratio radshare / bare SCP with fsync: {reference / ours:.2f}x (budget >= 0.8x)")
        print(
            f"  with the worker rendering meanwhile, every render was done {render_tail:.1f} s after the last image"
        )


if __name__ == "__main__":
    main()
