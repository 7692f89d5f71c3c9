"""C-STORE throughput: radshare's storage SCP next to references measured in the same run.

One DCMTK ``storescu`` association (TCP_NODELAY=1) sends the same generated 512x512 CT files to:
  * ``radshare scp``: fsync of the file and its folder, index, commit, then success (SQLite; ``--postgres`` too),
  * a bare pynetdicom SCP that writes the received bytes and fsyncs each file (the reference: same durability),
  * the same bare SCP without fsync, and DCMTK ``storescp`` (no fsync): what the network and parsing alone allow.
radshare and the bare SCP with fsync take turns (which goes first changes every run), ``--runs`` times for each
number of images (medians); the two without fsync run once per number, between them. Every radshare run starts
from a fresh copy of one migrated installation (a new database, an empty storage), so no image is ever a
duplicate.

The cost per image must not grow with the association's length: it is printed for each number of images, with its
spread, and divided by the bare SCP's in the same run (the bare SCP's own cost grows with the length on a machine
whose kernel starts writing back dirty pages; divided, that part of the machine drops out).
docs/architecture.md "Performance budget": radshare in journal mode (the default) >= 0.9x the bare SCP with fsync.

Usage: python bench/scp_store.py [--counts 100,400,1600] [--runs 3] [--postgres postgres://postgres@127.0.0.1:5432]
                                 [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from processes import free_port, wait_port
from radshare.studies.synthetic import FakePatient, ct_series, encode
from results import Row, report

PY = sys.executable
CLI = [PY, "-m", "radshare"]
TARGET = 0.9
FLAT = 0.2  # the cost per image may vary this much between 100 and 1,600 images
WARM_UP = "warm-up.dcm"

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


def make_files(folder: Path, count: int) -> list[Path]:
    """``count`` images of one series, and one more (``WARM_UP``) sent alone before them."""
    patient = FakePatient("BENCH1", "Bench^Mark", dt.date(1970, 1, 1))
    files = []
    for i, ds in enumerate(ct_series(patient, count=count + 1, size=512)):
        path = folder / (f"ct{i:05d}.dcm" if i < count else WARM_UP)
        path.write_bytes(encode(ds))
        files.append(path)
    return files[:count]


def send(files: list[Path], port: int) -> float:
    """Seconds for one storescu association to send ``files``; every one must be acknowledged with success."""
    started = time.perf_counter()
    subprocess.run(
        ["storescu", "-aet", "BENCHSCU", "-aec", "ANY", "127.0.0.1", str(port), *map(str, files)],
        check=True,
        env={**os.environ, "TCP_NODELAY": "1"},
        timeout=900,
        capture_output=True,
    )
    return time.perf_counter() - started


@dataclass(frozen=True)
class Measured:
    images_per_s: float  # the whole association, as the sender sees it
    ms_per_image: (
        float  # without what every association costs once (storescu's start, the association itself)
    )
    filed_after: float = 0.0  # journal mode: seconds from the last answer until the index holds every image


def run_server(
    cmd: list[str],
    port: int,
    files: list[Path],
    env: dict[str, str] | None = None,
    indexed: Callable[[], int] | None = None,
) -> Measured:
    """Start the SCP, send one image (``WARM_UP``) in an association of its own, then (once ``indexed`` says it is
    filed, in journal mode) ``files`` in one association, stop it. The SCP's start-up, its indexer's included, is not
    timed; the one-image association times what every association costs.
    ``indexed``: how many instances the index holds, polled after the last answer until it holds them all."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port)
        once = send([files[0].parent / WARM_UP], port)
        # Journal mode: the indexer, a process the SCP starts, is up and has filed the warm-up image. Its own start
        # (Python, Django, imports: a second or more of CPU) is the SCP's start-up, not ingest.
        wait_filed(indexed, 1)
        seconds = send(files, port)
        filed_after = wait_filed(indexed, len(files) + 1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return Measured(len(files) / seconds, 1000 * (seconds - once) / max(len(files) - 1, 1), filed_after)


def wait_filed(indexed: Callable[[], int] | None, count: int) -> float:
    """Seconds until ``indexed()`` says the index holds ``count`` instances (journal mode; at once without)."""
    started = time.perf_counter()
    while indexed is not None and indexed() < count:
        if time.perf_counter() - started > 120:
            raise RuntimeError(f"the journal was not filed up to {count} instances within 2 minutes")
        time.sleep(0.01)
    return time.perf_counter() - started


class Radshare:
    """Fresh installations of radshare for one database kind: migrated once, copied for every run."""

    def __init__(
        self, tmp: Path, base_env: dict[str, str], postgres: str = "", *, journal: bool = False
    ) -> None:
        self.tmp = tmp
        self.postgres = postgres
        self.journal = journal
        self.runs = 0
        self.template = tmp / "template"
        self.template.mkdir(parents=True)
        self.env = {**base_env, "RADSHARE_DATA_DIR": str(self.template), "RADSHARE_LOG_LEVEL": "WARNING"}
        if postgres:
            self.template_db = f"radshare_ingest_bench_{os.getpid()}{'_journal' if journal else ''}"
            self._pg("createdb", self.template_db)
            self.env["RADSHARE_DATABASE_URL"] = f"{postgres.rstrip('/')}/{self.template_db}"
            self.env["RADSHARE_STORAGE_URL"] = f"file://{self.template / 'storage'}?shared=1"
            self.env["RADSHARE_SECRET_KEY"] = "bench-only-" + os.urandom(24).hex()
        subprocess.run([*CLI, "migrate", "-v0"], env=self.env, check=True, timeout=600)
        for args in (["org", "create", "bench", "--name", "Bench"], ["pacsnode", "add", "bench", "BENCHSCU"]):
            subprocess.run([*CLI, *args], env=self.env, check=True, timeout=120, capture_output=True)
        self.databases: list[str] = []

    def _pg(self, tool: str, *args: str) -> None:
        server = urlsplit(self.postgres)
        where = ["-h", server.hostname or "127.0.0.1", "-p", str(server.port or 5432)]
        subprocess.run([tool, *where, "-U", server.username or "postgres", *args], check=True, timeout=120)

    def run(self, files: list[Path]) -> Measured:
        self.runs += 1
        data = self.tmp / f"run{self.runs}"
        shutil.copytree(self.template, data)
        env = {**self.env, "RADSHARE_DATA_DIR": str(data), "RADSHARE_DICOM_PORT": str(free_port())}
        env["RADSHARE_INGEST_JOURNAL"] = "1" if self.journal else "0"
        if self.postgres:
            env["RADSHARE_STORAGE_URL"] = f"file://{data / 'storage'}?shared=1"  # one machine: one folder
            name = f"{self.template_db}_{self.runs}"
            self._pg("createdb", "-T", self.template_db, name)
            self.databases.append(name)
            env["RADSHARE_DATABASE_URL"] = f"{self.postgres.rstrip('/')}/{name}"
        indexed = self._counter(data, env) if self.journal else None
        try:
            return run_server([*CLI, "scp"], int(env["RADSHARE_DICOM_PORT"]), files, env, indexed)
        finally:
            shutil.rmtree(data, ignore_errors=True)
            if self.postgres:
                self._pg("dropdb", "--if-exists", self.databases.pop())

    def _counter(self, data: Path, env: dict[str, str]) -> Callable[[], int]:
        """How many instances the run's index holds (read beside the SCP, as a sender's next step would)."""
        query = "SELECT count(*) FROM studies_instance"
        if not self.postgres:
            path = data / "radshare.sqlite3"

            def count_sqlite() -> int:
                with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
                    return int(db.execute(query).fetchone()[0])

            return count_sqlite
        database = env["RADSHARE_DATABASE_URL"]

        def count_postgres() -> int:
            out = subprocess.run(
                ["psql", database, "-tAc", query], check=True, capture_output=True, text=True
            )
            return int(out.stdout.strip())

        return count_postgres

    def close(self) -> None:
        if self.postgres:
            self._pg("dropdb", "--if-exists", self.template_db)


def bare(tmp: Path, fsync: bool) -> Callable[[list[Path]], Measured]:
    def run(files: list[Path]) -> Measured:
        out = Path(tempfile.mkdtemp(dir=tmp))
        port = free_port()
        try:
            return run_server([PY, "-c", BARE_SCP, str(out), str(port), "1" if fsync else "0"], port, files)
        finally:
            shutil.rmtree(out, ignore_errors=True)

    return run


def dcmtk(tmp: Path) -> Callable[[list[Path]], Measured]:
    def run(files: list[Path]) -> Measured:
        out = Path(tempfile.mkdtemp(dir=tmp))
        port = free_port()
        env = {**os.environ, "TCP_NODELAY": "1"}
        try:
            return run_server(["storescp", "-od", str(out), str(port)], port, files, env)
        finally:
            shutil.rmtree(out, ignore_errors=True)

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", default="100,400,1600", help="numbers of images per association")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--postgres", default="", help="a PostgreSQL server URL (no database) to measure on too"
    )
    parser.add_argument("--quick", action="store_true", help="a few images, one run: checks that it runs")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    if args.quick:
        counts, args.runs = [10, 20], 1
    for tool in ("storescu", "storescp"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} (DCMTK) is needed: apt-get install dcmtk")
    base = {k: v for k, v in os.environ.items() if not k.startswith("RADSHARE_")}
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "files").mkdir()
        files = make_files(tmp / "files", max(counts))
        size = files[0].stat().st_size
        ours = {
            "SQLite": Radshare(tmp / "sqlite", base),
            "SQLite, journal": Radshare(tmp / "sqlite-journal", base, journal=True),
        }
        if args.postgres:
            ours["PostgreSQL"] = Radshare(tmp / "postgres", base, args.postgres)
            ours["PostgreSQL, journal"] = Radshare(
                tmp / "postgres-journal", base, args.postgres, journal=True
            )
        with_fsync, without_fsync, storescp = bare(tmp, True), bare(tmp, False), dcmtk(tmp)
        per_image: dict[str, list[float]] = {kind: [] for kind in ours}
        bare_per_image: list[float] = []
        try:
            for count in counts:
                sent = files[:count]
                measured: dict[str, list[Measured]] = {
                    kind: [] for kind in [*ours, "fsync", "no fsync", "dcmtk"]
                }
                for run in range(args.runs):
                    for kind, radshare in ours.items():
                        # Ours and the reference take turns, the one that goes first changing every run.
                        turns = [(kind, radshare.run), ("fsync", with_fsync)]
                        for name, measure in reversed(turns) if run % 2 else turns:
                            measured[name].append(measure(sent))
                    if run == 0:
                        measured["no fsync"].append(without_fsync(sent))
                        measured["dcmtk"].append(storescp(sent))
                rate = {k: statistics.median(m.images_per_s for m in v) for k, v in measured.items()}
                cost = {k: statistics.median(m.ms_per_image for m in v) for k, v in measured.items()}
                bare_per_image.append(cost["fsync"])
                for kind in ours:
                    per_image[kind].append(cost[kind])
                    rows.append(
                        Row(
                            f"{kind}, {count} images: images/s",
                            rate[kind],
                            rate["fsync"],
                            # The target is the default ingest's, journal mode's; the synchronous path is the
                            # choice of an installation that wants the index before the answer.
                            target=TARGET if ours[kind].journal else None,
                            unit="images/s",
                            extra={
                                "ms_per_image": round(cost[kind], 2),
                                "filed_after_last_answer_s": round(
                                    statistics.median(m.filed_after for m in measured[kind]), 2
                                ),
                                "bare_fsync_ms_per_image": round(cost["fsync"], 2),
                                "bare_no_fsync": round(rate["no fsync"], 1),
                                "dcmtk_storescp": round(rate["dcmtk"], 1),
                                "runs": args.runs,
                            },
                        )
                    )
                print(
                    f"{count:5d} images, images/s (ms per image): "
                    + ", ".join(f"radshare {kind} {rate[kind]:.0f} ({cost[kind]:.2f})" for kind in ours)
                    + f"; bare SCP with fsync {rate['fsync']:.0f} ({cost['fsync']:.2f}),"
                    f" without {rate['no fsync']:.0f} ({cost['no fsync']:.2f});"
                    f" DCMTK storescp {rate['dcmtk']:.0f} ({cost['dcmtk']:.2f})",
                    flush=True,
                )
        finally:
            for radshare in ours.values():
                radshare.close()
    lengths = ", ".join(map(str, counts))
    print(
        f"bare SCP with fsync: ms per image at {lengths} images: "
        + ", ".join(f"{c:.2f}" for c in bare_per_image)
        + f" (spread {max(bare_per_image) / min(bare_per_image) - 1:.0%}: what the machine itself does with longer"
        " associations, such as the kernel writing back the dirty pages)"
    )
    for kind, costs in per_image.items():
        spread = max(costs) / min(costs) - 1
        verdict = "flat" if spread <= FLAT else "NOT flat"
        relative = [ours / reference for ours, reference in zip(costs, bare_per_image, strict=True)]
        relative_spread = max(relative) / min(relative) - 1
        relative_verdict = "flat" if relative_spread <= FLAT else "NOT flat"
        print(
            f"radshare {kind}: ms per image (beyond the association's own cost) at {lengths} images: "
            + ", ".join(f"{c:.2f}" for c in costs)
            + f" (spread {spread:.0%}, {verdict}: at most {FLAT:.0%}); per image of the bare SCP's: "
            + ", ".join(f"{r:.2f}" for r in relative)
            + f" (spread {relative_spread:.0%}, {relative_verdict})"
        )
    report(
        "scp_store",
        f"C-STORE of 512x512 CT ({size / 1e6:.2f} MB each), one storescu association, TCP_NODELAY=1; medians of"
        f" {args.runs}: radshare vs a bare pynetdicom SCP that fsyncs each file",
        rows,
        counts=counts,
        runs=args.runs,
    )


if __name__ == "__main__":
    main()
