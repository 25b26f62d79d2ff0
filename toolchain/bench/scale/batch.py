"""Batch recognition at scale: one ``facenet recognize`` process against Ray on 1 and 2 CPUs.

``facenet recognize --json`` against ``facenet batch recognize --ray local --cpus 1`` and
``--cpus 2`` on the same photos (the 5-celebrity photos, :data:`BATCH_ROUNDS` times over), each a
fresh process timed whole (start-up included). On a 2-core machine the point is Ray's overhead and
the scaling from 1 to 2 CPUs, not a speedup over one process that already uses both cores.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from toolchain.bench.scale.report import BatchRow, ScaleReport
from toolchain.core.paths import Layout

BATCH_ROUNDS = 3
"""The 5-celebrity photos are recognized this many times over in the batch rows, so start-up
weighs less against the steady rate."""


def measure_batch(layout: Layout, report: ScaleReport, work: Path) -> None:
    """Time ``recognize --json`` and ``batch recognize`` on Ray (1 and 2 CPUs), whole processes,
    over the 5-celebrity photos against a gallery of their train faces."""
    dataset = layout.dataset_dir
    gallery = work / "batch.db"
    enrolled = subprocess.run(
        [sys.executable, "-m", "toolchain", "enroll", str(dataset / "train"), "--largest",
         "--gallery", str(gallery), "--artifacts", str(layout.root)],
        capture_output=True, text=True, check=False)
    if not gallery.exists():
        report.notes.append(f"batch: enrolling the train photos failed: "
                            f"{enrolled.stderr.strip()[-300:]}")
        return
    photos = sorted(p.resolve() for p in dataset.rglob("*") if p.is_file()) * BATCH_ROUNDS
    listing = work / "photos.txt"
    listing.write_text("".join(f"{p}\n" for p in photos))
    common = ["--gallery", str(gallery), "--artifacts", str(layout.root)]
    jobs = [("one process (facenet recognize)", ["recognize", *map(str, photos), "--json"]),
            *((f"Ray, {cpus} CPU{'s' if cpus > 1 else ''} (facenet batch recognize)",
               ["batch", "recognize", "--list", str(listing), "--ray", "local", "--cpus",
                str(cpus), "--actors", str(cpus), "--output", str(work / f"ray{cpus}.jsonl"),
                "--overwrite"])
              for cpus in (1, 2))]
    for label, args in jobs:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "toolchain", *args, *common],
                              capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        if done.returncode:
            report.notes.append(f"{label} failed (exit {done.returncode}): "
                                f"{_error_line(done.stderr)}")
            continue
        report.batch.append(BatchRow(label, len(photos), round(seconds, 2),
                                     round(len(photos) / seconds, 2)))


def _error_line(stderr: str) -> str:
    """The command's own error line, else the last line of its stderr."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    mine = [line for line in lines if line.startswith("facenet: error")]
    return (mine or lines or ["(nothing on stderr)"])[-1][:300]
