"""Running ``facenet bench scale``: the batch jobs, the real faces, then each distractor model's
searches on its own throwaway PostgreSQL server, the report saved after every step."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from toolchain.bench import machine
from toolchain.bench.scale.batch import measure_batch
from toolchain.bench.scale.distractors import DISTRACTOR_MODELS, real_faces
from toolchain.bench.scale.goals import judge
from toolchain.bench.scale.report import ScaleReport, markdown
from toolchain.bench.scale.search import SERVER_SETTINGS, describe_real, measure_search
from toolchain.core.atomic import write_json, write_text
from toolchain.core.paths import Layout
from toolchain.runtime.ort_options import core_count

SIZES = (10_000, 100_000, 1_000_000)
"""Identities in the gallery (real people plus distractors)."""


def run_scale(layout: Layout, sizes: Sequence[int] = SIZES,
              models: Sequence[str] = tuple(DISTRACTOR_MODELS), builds: int = 1,
              batch: bool = True, order_seed: int = 0) -> ScaleReport:
    """Measure everything and write ``reports/bench_scale.{json,md}`` with the goals judged
    (:func:`~toolchain.bench.scale.goals.judge`); ``builds`` independent HNSW builds are searched
    at the largest size; ``batch`` False leaves the batch jobs out; ``order_seed`` permutes the
    order the galleries are loaded in (see :func:`~toolchain.bench.scale.search.measure_search`).

    Each distractor model gets its own throwaway server and SQLite file, removed after it, so
    one model's million vectors do not crowd the next one's memory.
    """
    from toolchain.bench.pgserver import start_local_server

    report = ScaleReport(sizes=list(sizes), models=list(models), cpu=machine.cpu_model(),
                         isa=machine.isa(), cores=core_count(), real_people=0,
                         real_train_faces=0, real_val_faces=0)

    def save() -> None:
        report.goals = judge(report)
        report.order_seed = order_seed
        write_json(layout.reports_dir / "bench_scale.json", asdict(report))
        write_text(layout.reports_dir / "bench_scale.md", markdown(report))

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        if batch:
            measure_batch(layout, report, Path(tmp))
            save()
        real = real_faces(layout)
        describe_real(real, report, Path(tmp))
        for model in models:
            work = Path(tmp) / model
            work.mkdir()
            server = start_local_server(settings=SERVER_SETTINGS)
            try:
                measure_search(real, model, sizes, report, work, f"{server.url}&gallery=scale",
                               save, builds, order_seed)
            finally:
                server.stop()
                shutil.rmtree(work)
    return report
