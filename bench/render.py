"""Render rate: radshare's pipeline next to a bare pydicom + numpy + Pillow loop, same files, same run.

Both make the same outputs per 512x512 CT image (full-size JPEG, thumbnail, and the three CT window presets;
at 512 px the preview is the full-size JPEG) in one process, so the figures are images/s per core. Ours makes an
uncompressed CT's presets in a second pass, which reads the file again (docs/architecture.md "Renders"): both passes
are timed. The first pass alone (what a share waits for) is printed too, beside the same reference.
docs/architecture.md "Performance budget": radshare >= 0.95x the bare loop. Also measured: JPEG 2000 lossless,
which is decode-bound. The two take turns every 20 images within each run (``paired``); medians of ``--runs``.

Usage: python bench/render.py [--count 200] [--runs 5] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import statistics
import tempfile
import time
from dataclasses import replace
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.pixels import apply_modality_lut
from pydicom.uid import JPEG2000Lossless

from radshare.core.storage import storage_for_url
from radshare.imaging.render import CT_PRESETS, RenderJob, init_worker, render_file
from radshare.studies.synthetic import FakePatient, ct_series, encode
from results import Row, report

WINDOWS = [(40.0, 400.0), (40.0, 400.0), (-600.0, 1500.0), (400.0, 1800.0)]  # own VOI + 3 presets


def bare(path: Path, run: int) -> None:
    """The straightforward loop, writing the same files (full + preview copy + thumbnail + 3 presets) into a new
    folder per run, as ours does."""
    ds = pydicom.dcmread(path)
    hu = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
    out = path.parent / "bare" / str(run) / path.stem
    out.mkdir(parents=True, exist_ok=True)
    for i, (c, w) in enumerate(WINDOWS):
        grey = np.clip(((hu - (c - 0.5)) / (w - 1) + 0.5) * 255, 0, 255).astype(np.uint8)
        image = Image.fromarray(grey)
        buffer = BytesIO()
        image.save(buffer, "JPEG", quality=90 if i == 0 else 85)
        (out / f"{i}.jpg").write_bytes(buffer.getvalue())
        if i == 0:
            (out / "preview.jpg").write_bytes(buffer.getvalue())
            thumb = image.resize((160, 160), Image.Resampling.BILINEAR, reducing_gap=2.0)
            thumb.save(out / "thumb.jpg", "JPEG", quality=80)


_runs = itertools.count(1)
CHUNK = 20  # images per turn: long enough to time, short enough that both see the same machine


def paired(ours, reference, paths: list[Path]) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Images per second of ``ours`` and of ``reference`` over ``paths``, in this one process, taking turns every
    ``CHUNK`` images (the one that goes first changing each turn): a burst of load from another tenant of the
    machine then falls on both instead of on one whole run. Each run writes new files into new folders, as
    rendering does in production (each instance once): overwriting the files of an earlier run would time the
    file system's deletes instead. The dirty pages of the run before are written out first."""
    run = next(_runs)
    os.sync()
    spent = {ours: 0.0, reference: 0.0}
    for turn, start in enumerate(range(0, len(paths), CHUNK)):
        chunk = paths[start : start + CHUNK]
        for func in (ours, reference) if turn % 2 == 0 else (reference, ours):
            started = time.perf_counter()
            for path in chunk:
                func(path, run)
            spent[func] += time.perf_counter() - started
    return len(paths) / spent[ours], len(paths) / spent[reference]


def medians(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a few images, one run: checks that it runs")
    args = parser.parse_args()
    if args.quick:
        args.count, args.runs = 12, 1
    init_worker()
    patient = FakePatient("BENCH", "Bench^Render", dt.date(1970, 1, 1))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        plain, j2k = [], []
        for i, ds in enumerate(ct_series(patient, count=args.count, size=512)):
            p = tmp / f"ct{i:04d}.dcm"
            p.write_bytes(encode(ds))
            plain.append(p)
            if i < max(args.count // 4, 10):
                ds.compress(JPEG2000Lossless)
                q = tmp / f"j2k{i:04d}.dcm"
                q.write_bytes(encode(ds))
                j2k.append(q)
        storage = storage_for_url(f"file://{tmp}")  # the files above are its objects, keyed by name
        numbers = {path: n for n, path in enumerate(plain + j2k, start=1)}

        def first_pass(path: Path, run: int) -> RenderJob | None:
            # A new instance number per run: a new render folder, as for each instance received.
            job = RenderJob(run * len(numbers) + numbers[path], path.name, storage)
            outcome = render_file(job)
            assert outcome.status == "done", outcome
            return replace(job, presets=True) if outcome.presets_due else None

        def ours(path: Path, run: int) -> None:
            second = first_pass(path, run)
            if second is not None:
                assert render_file(second).presets == list(CT_PRESETS)

        rows = []
        for label, paths, target in (("uncompressed", plain, 0.95), ("JPEG 2000 lossless", j2k, None)):
            mine, reference = medians([paired(ours, bare, paths) for _ in range(args.runs)])
            rows.append(Row(f"{label}: images/s per core", mine, reference, target=target, unit="images/s"))
        first, reference = medians([paired(first_pass, bare, plain) for _ in range(args.runs)])
        rows.append(
            Row("uncompressed, first pass alone: images/s per core", first, reference, unit="images/s")
        )
        report(
            "render",
            f"Render rate, 512x512 CT (full JPEG, thumbnail, 3 CT presets) vs a bare pydicom + numpy + Pillow loop, "
            f"{len(plain)} and {len(j2k)} images, medians of {args.runs}",
            rows,
            count=args.count,
            runs=args.runs,
        )


if __name__ == "__main__":
    main()
