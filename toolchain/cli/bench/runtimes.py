"""``facenet bench runtimes``: every runtime side by side in one run, the baselines beside.

A thin adapter over :func:`toolchain.bench.runner.run_bench`; writes
``reports/bench.{json,md,png}``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from toolchain.cli.common import ArtifactsOption
from toolchain.core.paths import DEFAULT_ARTIFACTS, Layout

log = logging.getLogger(__name__)

app = typer.Typer()
"""``facenet bench runtimes`` (added to the ``bench`` group by :mod:`toolchain.cli.bench`)."""


@app.command("runtimes")
def runtimes(
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
) -> None:
    """Benchmark every runtime side by side; write reports/bench.{json,md,png}."""
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
