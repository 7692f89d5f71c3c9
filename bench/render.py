"""Render rate: radshare's pipeline next to a bare pydicom + numpy + Pillow loop, same files, same run.

Both make the same outputs per 512x512 CT image (full-size JPEG, thumbnail, and the three CT window presets;
at 512 px the preview is the full-size JPEG) in one process, so the figures are images/s per core.
docs/architecture.md "Performance budget": radshare >= 0.8x the bare loop. Also measured: JPEG 2000 lossless,
which is decode-bound.

Usage: python bench/render.py [--count 200]
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.pixels import apply_modality_lut
from pydicom.uid import JPEG2000Lossless

from radshare.imaging.render import RenderJob, init_worker, render_file
from radshare.studies.synthetic import FakePatient, ct_series, encode

WINDOWS = [(40.0, 400.0), (40.0, 400.0), (-600.0, 1500.0), (400.0, 1800.0)]  # own VOI + 3 presets


def bare(path: Path) -> None:
    """The straightforward loop, writing the same files (full + preview copy + thumbnail + 3 presets)."""
    ds = pydicom.dcmread(path)
    hu = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
    out = path.parent / "bare" / path.stem
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


def rate(label: str, func, paths: list[Path]) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    for path in paths:
        func(path)
    seconds = time.perf_counter() - started
    per_second = len(paths) / seconds
    print(f"  {label:44s} {per_second:7.1f} images/s per core")
    return per_second


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
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
        out = tmp / "out"

        def ours(path: Path) -> None:
            outcome = render_file(RenderJob(1, str(path), str(out / path.stem)))
            assert outcome.status == "done", outcome

        print(f"Rendering {len(plain)} uncompressed 512x512 CT images (full JPEG, thumbnail, 3 CT presets):")
        reference = rate("bare pydicom + numpy + Pillow loop", bare, plain)
        mine = rate("radshare render_file", ours, plain)
        print(f"  ratio radshare / bare loop: {mine / reference:.2f}x (budget >= 0.8x)")
        print(f"Rendering {len(j2k)} JPEG 2000 lossless 512x512 CT images:")
        reference = rate("bare pydicom + numpy + Pillow loop", bare, j2k)
        mine = rate("radshare render_file", ours, j2k)
        print(f"  ratio radshare / bare loop: {mine / reference:.2f}x")


if __name__ == "__main__":
    main()
