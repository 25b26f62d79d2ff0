"""``facenet bench runtimes``: every runtime side by side, in one run, on this machine.

Each measured runtime runs in its own worker process (:mod:`toolchain.bench.worker`), so its peak
RSS (``ru_maxrss`` from ``os.wait4``) is its own and no runtime warms another's caches. Every
timing has a warm-up first and several repetitions; the report gives the median, min and max, and
ratios against baselines measured in the same run:

* sgemm at the start and the end of the run (:mod:`toolchain.bench.machine`);
* embedding throughput at batch 1 and 16 of every format with a bench label in
  :data:`toolchain.convert.formats.FORMATS`, each in its runner (ONNX Runtime with the runtime's
  own session settings), with achieved GFLOP/s against the sgemm rate;
* ONNX Runtime fp32 vs int8 again, in one process with their runs alternated: a ratio that holds
  when the machine's load changes between the per-runtime processes;
* ONNX Runtime session options (threads, optimization levels, spinning, the cached optimized
  graph of :mod:`toolchain.runtime.ort_options`), including session creation in a fresh process;
* face detection ms/image: the ONNX MTCNN vs the ``mtcnn`` package, same photos;
* end to end images/s over the dataset photos: the ``recognize`` pipeline vs a seed-style
  pipeline (:mod:`toolchain.bench.baselines`);
* cold start: wall time and peak RSS of ``facenet recognize one.jpg`` as a fresh process vs the
  same job in a fresh TensorFlow process;
* real-size photos (:mod:`toolchain.bench.real_size`).

Outputs ``reports/bench.json``, ``bench.md`` and ``bench.png`` (:mod:`toolchain.bench.report`).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

from toolchain.bench import machine
from toolchain.bench.config import BenchConfig
from toolchain.bench.inputs import (
    check_artifacts,
    dataset_photos,
    real_photos,
)
from toolchain.bench.real_size import measure_real_size
from toolchain.bench.report import write_reports
from toolchain.bench.rows import (
    GFLOP_PER_FACE,
    BenchReport,
)
from toolchain.bench.scheduler import Scheduler
from toolchain.bench.targets import add_ratios, evaluate_targets
from toolchain.bench.video import CLIP, measure_video
from toolchain.core.paths import Layout

log = logging.getLogger(__name__)


def run_bench(layout: Layout, config: BenchConfig) -> BenchReport:
    """Measure everything (see the module docstring) and write the three report files.

    Raises:
        MissingArtifactError: an input is missing (names the nox session that makes it).
        EnvironmentToolError: a measured child process failed.
    """
    from toolchain.runtime.ort_options import core_count

    check_artifacts(layout)
    photos = dataset_photos(layout)
    paths = [p for _, _, p in photos]
    started = time.time()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="facenet-bench-") as tmp:
        scheduler = Scheduler(layout, config, Path(tmp))
        gallery, gallery_npz = scheduler.prepare_galleries(photos)
        scheduler.sgemm("start")
        if "avx512f" in machine.isa():
            scheduler.sgemm("start", machine.AVX512_CORETYPE)
        scheduler.embedding()
        scheduler.paired()
        scheduler.ort_options()
        scheduler.detection(paths)
        scheduler.end_to_end(paths, gallery, gallery_npz)
        one = next(p for split, _, p in photos if split == "val")
        scheduler.cold_start(one, gallery, gallery_npz)
        real = real_photos(config.real_photos)
        if real is None:
            log.warning("bench: no photos/ and people/ under %s; real-size rows skipped",
                        config.real_photos)
        else:
            measure_real_size(scheduler, *real)
            clip = config.real_photos / CLIP
            if clip.is_file():
                measure_video(scheduler, clip, real[1])
            else:
                log.warning("bench: no %s; video rows skipped", clip)
        scheduler.sgemm("end")
        rows = scheduler.rows
    add_ratios(rows)
    meta = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "quick": config.quick,
        "repeats": config.repeats,
        "e2e_repeats": config.e2e_repeats,
        "cold_runs": config.cold_runs,
        "cpu": machine.cpu_model(),
        "isa": machine.isa(),
        "cores": core_count(),
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "versions": machine.versions(),
        "gflop_per_face": GFLOP_PER_FACE,
        "photos": len(paths),
        "real_photos": str(config.real_photos),
    }
    report = BenchReport(rows, evaluate_targets(rows), meta)
    write_reports(layout, report)
    return report
