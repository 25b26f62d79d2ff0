"""``facenet eval pairs``: the verification protocol of the field on a file of photo pairs.

A thin adapter over :func:`toolchain.evaluation.pairs.evaluate_pairs` with the reports of
:mod:`toolchain.evaluation.pairs_report`: ROC AUC, EER, accuracy at the threshold in force, TAR at
FAR 1e-2 and 1e-3 and 10-fold accuracy. Exit code 0 when every pair was used, 1 when some photos
could not be, 2 for a usage error, 3 for a bad pairs file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from toolchain.cli.common import ArtifactsOption, console, display_text, problem
from toolchain.cli.options import (
    AlignOption,
    MarginOption,
    MaxDetectSideOption,
    MinFaceOption,
    PrecisionChoice,
    PrecisionOption,
    RuntimeChoice,
    RuntimeOption,
    crop_keywords,
    detection_keywords,
    model_choice,
    progress_bar,
    threshold_value,
)
from toolchain.core.paths import DEFAULT_ARTIFACTS, Layout

if TYPE_CHECKING:
    from rich.table import Table

    from toolchain.evaluation.pairs import PairsEvaluation

app = typer.Typer()
"""``facenet eval pairs`` (added to the ``eval`` group by :mod:`toolchain.cli.evaluation`)."""


def _pairs_table(result: PairsEvaluation) -> Table:
    """The pair-protocol metrics, as a console table."""
    from rich.table import Table

    ver, kfold = result.verification, result.kfold
    table = Table(title=f"Pairs of {display_text(result.pairs_file.path)}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("pairs used (same / different), skipped",
                  f"{ver.pairs_same} / {ver.pairs_different}, {result.skipped} skipped")
    table.add_row("ROC AUC", f"{ver.auc:.4f}")
    table.add_row("equal error rate", f"{ver.eer:.2%} at {ver.eer_threshold:.3f}")
    table.add_row(f"accuracy at {result.threshold:.3f} ({result.threshold_source})",
                  f"{result.accuracy:.2%}")
    for point in result.far_points:
        table.add_row(f"TAR at FAR <= {point.far_target:g}",
                      f"{point.tar:.2%} at {point.threshold:.3f} ({point.false_accepts}/"
                      f"{point.impostor_pairs} impostor pairs accepted)")
    table.add_row(f"{kfold.folds if kfold else 10}-fold accuracy, threshold",
                  "fewer than 2 pairs of a kind" if kfold is None else
                  f"{kfold.accuracy_mean:.2%} +- {kfold.accuracy_std:.2%}, "
                  f"{kfold.threshold_mean:.3f} +- {kfold.threshold_std:.3f}")
    return table



@app.command("pairs")
def pairs(
    pairs_file: Annotated[Path, typer.Argument(
        exists=True, dir_okay=False, metavar="PAIRS", show_default=False,
        help="The photo pairs: a CSV (a,b,same) or LFW pairs.txt file.")],
    lfw_root: Annotated[Path | None, typer.Option(
        "--lfw-root", exists=True, file_okay=False, show_default=False,
        help="Folder of LFW's <name>/<name>_0001.jpg photos [default: the pairs file's "
             "folder].")] = None,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", callback=threshold_value, show_default=False,
        help="The threshold whose accuracy is reported [default: the model's metadata].")
    ] = None,
    min_face: MinFaceOption = None,
    max_detect_side: MaxDetectSideOption = None,
    margin: MarginOption = None,
    align: AlignOption = None,
    runtime: RuntimeOption = RuntimeChoice.onnxruntime,
    precision: PrecisionOption = PrecisionChoice.fp32,
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
) -> int:
    """Evaluate labelled photo pairs; reports/pairs.{md,json} and two PNGs."""
    from toolchain.evaluation.pairs import evaluate_pairs
    from toolchain.evaluation.pairs_report import write_reports

    layout = Layout(artifacts)
    result = evaluate_pairs(pairs_file, artifacts, lfw_root=lfw_root, threshold=threshold,
                            crop=crop_keywords(margin, align).get("crop"),
                            detection=detection_keywords(min_face, max_detect_side).get(
                                "detection"),
                            progress=progress_bar, on_problem=problem,
                            model=model_choice(runtime, precision))
    write_reports(result, layout)
    console().print(_pairs_table(result))
    print(f"reports: {display_text(layout.reports_dir / 'pairs.md')}, pairs.json, "
          "pairs_roc.png, pairs_distances.png")
    return 1 if result.problems else 0
