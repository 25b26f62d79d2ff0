"""``facenet bench scale``: gallery search at 10k to 1M identities, enrollment and batch rates.

A thin adapter over :func:`toolchain.bench.scale.run_scale`: SQLite exact, pgvector exact and
HNSW (p50/p99, recall@1), enrollment rows/s into each backend, batch photos/s on one process vs
Ray; writes ``reports/bench_scale.{json,md}``.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from toolchain.cli.common import ArtifactsOption
from toolchain.core.paths import DEFAULT_ARTIFACTS, Layout

log = logging.getLogger(__name__)

app = typer.Typer()
"""``facenet bench scale`` (added to the ``bench`` group by :mod:`toolchain.cli.bench`)."""


@app.command("scale")
def scale(
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
    sizes: Annotated[
        str, typer.Option("--sizes", metavar="N,N,...",
                          help="Gallery sizes, in identities, ascending.")
    ] = "10000,100000,1000000",
    distractors: Annotated[
        str, typer.Option("--distractors", metavar="MODEL,...",
                          help="Distractor models: face-like (FaceNet's intrinsic "
                               "dimensionality), gaussian (high-dimensional worst case).")
    ] = "face-like,gaussian",
    builds: Annotated[
        int, typer.Option("--builds", min=1, max=5,
                          help="Independent HNSW builds searched at the largest size (each "
                               "loaded in another order, its index built anew).")
    ] = 1,
    batch: Annotated[
        bool, typer.Option("--batch/--no-batch", help="Time the batch recognition jobs too.")
    ] = True,
    order_seed: Annotated[
        int, typer.Option("--order-seed", min=0,
                          help="Load the galleries in an order permuted by this seed (0: the "
                               "pool's order), for a build independent of another run's.")
    ] = 0,
) -> None:
    """Gallery search, enrollment and batch rates at 10k to 1M identities."""
    _bench_scale(Layout(artifacts), sizes, distractors, builds, batch, order_seed)


def _bench_scale(layout: Layout, sizes_text: str, models_text: str, builds: int = 1,
                 batch: bool = True, order_seed: int = 0) -> None:
    from toolchain.bench.scale import DISTRACTOR_MODELS, markdown, run_scale
    from toolchain.core.integrity import record_files

    try:
        sizes = [int(part) for part in sizes_text.split(",")]
    except ValueError as exc:
        raise typer.BadParameter(f"{sizes_text!r} is not a list of sizes",
                                 param_hint="--sizes") from exc
    if not sizes or sizes != sorted(sizes) or sizes[0] < 100:
        raise typer.BadParameter("sizes ascending, each at least 100", param_hint="--sizes")
    models = [part.strip() for part in models_text.split(",") if part.strip()]
    unknown = sorted(set(models) - set(DISTRACTOR_MODELS))
    if not models or unknown or len(set(models)) != len(models):
        raise typer.BadParameter(f"{models_text!r}: name each of {', '.join(DISTRACTOR_MODELS)} "
                                 "at most once", param_hint="--distractors")
    report = run_scale(layout, sizes, models, builds, batch, order_seed)
    print(markdown(report))
    written = [layout.reports_dir / n for n in ("bench_scale.json", "bench_scale.md")]
    record_files(layout, written)
    log.info("wrote %s", ", ".join(str(p) for p in written))
