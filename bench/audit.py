"""Audit trail cost: one ``audit.services.record`` (linked into its organisation's hash chain) next to a plain
INSERT of the same row, same run; and how fast ``radshare audit verify`` walks a chain.

The reference is what writing an entry cost before the chain: the ORM's INSERT of an ``AuditEvent`` in its own
transaction. Ours adds the lock of the chain's head row, the hash and the head's UPDATE (docs/security.md A17).
Runs alternate ours and the reference; medians of ``--runs``. On SQLite always, and on PostgreSQL when
``--postgres URL`` names a server where a scratch database may be made (``createdb``/``dropdb``).

Usage: python bench/audit.py [--count 2000] [--runs 3] [--postgres postgres://postgres@127.0.0.1:5432] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from processes import postgres_env
from results import Row, report

PY = sys.executable

MEASURE = """
import json, statistics, time
from django.db import transaction
from django.utils import timezone
from radshare.audit import chain
from radshare.audit.actions import Action
from radshare.audit.models import AuditEvent
from radshare.audit.services import record
from radshare.organisations.services import create_organisation

count, runs = {count}, {runs}
org = create_organisation("bench", "Bench Hospital", require_two_factor=False)
detail = {{"share": 12, "series": 3, "images": 240}}

def ours():
    for _ in range(count):
        record(Action.PORTAL_STUDY_VIEW, organisation=org, client="192.0.2.7", detail=detail)

plain_seq = 0
def reference():
    global plain_seq
    for _ in range(count):
        plain_seq += 1
        event = AuditEvent(timestamp=timezone.now(), action=Action.PORTAL_STUDY_VIEW, organisation_id=org.pk,
                           client_address="192.0.2.7", detail=detail, chain="plain", seq=plain_seq,
                           prev_hash="0" * 64, entry_hash="0" * 64)
        with transaction.atomic():
            super(AuditEvent, event).save()  # past the chain: a bare INSERT

ours_s, ref_s = [], []
ours(); reference()  # warm-up
for _ in range(runs):
    started = time.perf_counter(); ours(); ours_s.append(time.perf_counter() - started)
    started = time.perf_counter(); reference(); ref_s.append(time.perf_counter() - started)
verify_s = []
for _ in range(runs):
    started = time.perf_counter()
    report = chain.verify(chain.chain_key(org.pk))
    verify_s.append(time.perf_counter() - started)
    assert report.ok, report.problem
print(json.dumps({{"ours": statistics.median(ours_s) / count, "reference": statistics.median(ref_s) / count,
                  "verify": report.checked / statistics.median(verify_s), "entries": report.checked}}))
"""


def measure(env: dict[str, str], count: int, runs: int) -> dict[str, float]:
    cli = [PY, "-m", "radshare"]
    subprocess.run([*cli, "migrate", "-v0"], env=env, check=True, timeout=600)
    done = subprocess.run(
        [*cli, "shell", "-c", MEASURE.format(count=count, runs=runs)],
        env=env,
        timeout=1800,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--postgres", default="", help="a PostgreSQL server URL (no database) to measure on too"
    )
    parser.add_argument("--quick", action="store_true", help="a few entries, one run: checks that it runs")
    args = parser.parse_args()
    if args.quick:
        args.count, args.runs = 50, 1
    base = {k: v for k, v in os.environ.items() if not k.startswith("RADSHARE_")}
    base["RADSHARE_LOG_LEVEL"] = "WARNING"
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        env = {**base, "RADSHARE_DATA_DIR": str(Path(tmp_name) / "sqlite")}
        rows.append(("SQLite", measure(env, args.count, args.runs)))
        if args.postgres:
            with postgres_env(args.postgres, base, Path(tmp_name) / "postgres", "audit") as env:
                rows.append(("PostgreSQL", measure(env, args.count, args.runs)))
    report(
        "audit",
        f"Audit entries, {args.count} per run, medians of {args.runs}: record() vs a plain INSERT (ms per entry)",
        [
            Row(
                f"{name}: ms per entry",
                r["ours"] * 1000,
                r["reference"] * 1000,
                higher_is_better=False,
                unit="ms",
                extra={"verify_entries_per_s": round(r["verify"])},
            )
            for name, r in rows
        ],
        count=args.count,
        runs=args.runs,
    )


if __name__ == "__main__":
    main()
