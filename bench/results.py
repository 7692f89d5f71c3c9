"""How every benchmark reports (bench/README.md): a table of our figure, the reference measured in the same run and
their ratio, printed, and the same rows as JSON in ``bench/results/<name>.json`` (ignored by git).

    from results import Row, report
    report("scp_store", "C-STORE, 512x512 CT", [Row("images/s, 400 images", ours=160.0, reference=171.0)])

``ratio`` is ours / reference where higher is better (throughput), reference / ours where lower is better (times):
above 1.0 is always "ours is better". ``target`` is the ratio the issue asks for, when there is one.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    figure: str
    ours: float
    reference: float | None = None
    higher_is_better: bool = True
    target: float | None = None  # the ratio to reach
    unit: str = ""
    extra: dict[str, float | int | str] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.reference is None or not self.ours or not self.reference:
            return None
        return self.ours / self.reference if self.higher_is_better else self.reference / self.ours

    @property
    def met(self) -> bool | None:
        ratio = self.ratio
        return None if ratio is None or self.target is None else ratio >= self.target


def alternate(ours: Callable[[], float], reference: Callable[[], float], runs: int) -> tuple[float, float]:
    """Medians of ``runs`` measurements of each, taken turn about (the machine is shared and noisy), the one that
    goes first changing every run, so that neither always follows the other (a cold cache, a writeback begun)."""
    mine, theirs = [], []
    for run in range(runs):
        if run % 2:
            theirs.append(reference())
            mine.append(ours())
        else:
            mine.append(ours())
            theirs.append(reference())
    return statistics.median(mine), statistics.median(theirs)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"


def report(name: str, title: str, rows: Sequence[Row], **context: object) -> Path:
    """Print the table and write ``bench/results/<name>.json``; returns that path."""
    print(f"\n{title}")
    width = max(len(r.figure) for r in rows) + 2
    print(f"{'':<{width}}{'ours':>12}{'reference':>12}{'ratio':>8}{'target':>8}  met")
    for r in rows:
        met = {None: "", True: "yes", False: "NO"}[r.met]
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        target = f"{r.target:.2f}" if r.target is not None else "-"
        print(
            f"{r.figure:<{width}}{_number(r.ours):>12}{_number(r.reference):>12}{ratio:>8}{target:>8}  {met}"
        )
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    document = {
        "benchmark": name,
        "title": title,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": _cpus(), "python": platform.python_version()},
        "context": context,
        "rows": [{**asdict(r), "ratio": r.ratio, "met": r.met} for r in rows],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"(saved {path.relative_to(RESULTS.parent.parent)})")
    return path


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
