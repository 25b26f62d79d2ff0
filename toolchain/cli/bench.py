"""``facenet bench`` (every runtime side by side) and ``facenet int8-variants`` (the int8 sweep)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from toolchain.cli.common import ArtifactsOption
from toolchain.core.paths import DEFAULT_ARTIFACTS, Layout

log = logging.getLogger(__name__)

app = typer.Typer()
"""``facenet bench`` and ``facenet int8-variants`` (added to the root app by
:mod:`toolchain.cli.app`)."""


@app.command()
def bench(
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
    quick: Annotated[
        bool, typer.Option("--quick", help="Tiny setting (for tests): numbers not meaningful.")
    ] = False,
    repeats: Annotated[
        int, typer.Option("--repeats", min=1, max=100, help="Timed repetitions per measurement.")
    ] = 5,
    recognize_python: Annotated[
        Path | None,
        typer.Option(
            "--recognize-python",
            exists=True,
            dir_okay=False,
            help="Interpreter whose `-m toolchain recognize` is timed for the cold start "
            "(e.g. the runtime env's, without TensorFlow) [default: this one].",
        ),
    ] = None,
    face_recognition_python: Annotated[
        Path | None,
        typer.Option(
            "--face-recognition-python",
            exists=True,
            dir_okay=False,
            help="Interpreter of an environment with the face_recognition package "
            "(requirements/baseline.txt): the real-size photos' baseline [default: not measured].",
        ),
    ] = None,
    scale: Annotated[
        bool, typer.Option(
            "--scale",
            help="Instead: gallery search at --scale-sizes identities (SQLite exact, pgvector "
                 "exact and HNSW: p50/p99, recall@1), enrollment rows/s into each backend, and "
                 "batch photos/s on one process vs Ray; writes reports/bench_scale.{json,md}.")
    ] = False,
    scale_sizes: Annotated[
        str, typer.Option("--scale-sizes", metavar="N,N,...",
                          help="Gallery sizes of --scale, in identities, ascending.")
    ] = "10000,100000,1000000",
    scale_distractors: Annotated[
        str, typer.Option("--scale-distractors", metavar="MODEL,...",
                          help="Distractor models of --scale: face-like (FaceNet's intrinsic "
                               "dimensionality), gaussian (high-dimensional worst case).")
    ] = "face-like,gaussian",
) -> None:
    """Benchmark every runtime side by side; write reports/bench.{json,md,png}."""
    if scale:
        _bench_scale(Layout(artifacts), scale_sizes, scale_distractors)
        return
    from toolchain.bench.config import BenchConfig
    from toolchain.bench.report import console_table
    from toolchain.bench.runner import run_bench
    from toolchain.core.integrity import record_files

    layout = Layout(artifacts)
    config = BenchConfig(
        repeats=1 if quick else repeats, quick=quick, recognize_python=recognize_python,
        face_recognition_python=face_recognition_python,
    )
    report = run_bench(layout, config)
    print(console_table(report))
    written = [layout.reports_dir / n for n in ("bench.json", "bench.md", "bench.png")]
    record_files(layout, written)
    log.info("wrote %s", ", ".join(str(p) for p in written))


def _bench_scale(layout: Layout, sizes_text: str, models_text: str) -> None:
    from toolchain.bench.scale import DISTRACTOR_MODELS, markdown, run_scale
    from toolchain.core.integrity import record_files

    try:
        sizes = [int(part) for part in sizes_text.split(",")]
    except ValueError as exc:
        raise typer.BadParameter(f"{sizes_text!r} is not a list of sizes",
                                 param_hint="--scale-sizes") from exc
    if not sizes or sizes != sorted(sizes) or sizes[0] < 100:
        raise typer.BadParameter("sizes ascending, each at least 100", param_hint="--scale-sizes")
    models = [part.strip() for part in models_text.split(",") if part.strip()]
    unknown = sorted(set(models) - set(DISTRACTOR_MODELS))
    if not models or unknown or len(set(models)) != len(models):
        raise typer.BadParameter(f"{models_text!r}: name each of {', '.join(DISTRACTOR_MODELS)} "
                                 "at most once", param_hint="--scale-distractors")
    report = run_scale(layout, sizes, models)
    print(markdown(report))
    written = [layout.reports_dir / n for n in ("bench_scale.json", "bench_scale.md")]
    record_files(layout, written)
    log.info("wrote %s", ", ".join(str(p) for p in written))


@app.command("int8-variants")
def int8_variants(
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
    repeats: Annotated[
        int, typer.Option("--repeats", min=1, max=100, help="Timed batch-16 runs per variant.")
    ] = 7,
) -> None:
    """Quantize FaceNet to int8 every way tried; check, time and report each variant."""
    from toolchain.convert.int8_sweep import (
        SPEED_TOLERANCE,
        VARIANTS_REPORT,
        best_variant,
        sweep_variants,
    )
    from toolchain.convert.quantize import CHOSEN
    from toolchain.core.integrity import record_files

    layout = Layout(artifacts)
    records = sweep_variants(layout, repeats=repeats)
    record_files(layout, [layout.reports_dir / VARIANTS_REPORT])
    for r in records:
        if r.check is None:
            print(f"{r.variant.name:<30} failed: {r.error}")
            continue
        print(f"{r.variant.name:<30} x{r.speedup or 0:.2f} vs fp32  "
              f"{'ok ' if r.accepted else 'off'}  {r.check.describe()}")
    best = best_variant(records)
    print(f"fastest within the bound (ties within {SPEED_TOLERANCE:.0%} go to the best val "
          f"cosine): {best.variant.name if best else 'none'}; the exporter uses {CHOSEN.name}")
    log.info("wrote %s", layout.reports_dir / VARIANTS_REPORT)
