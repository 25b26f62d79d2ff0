"""``facenet evaluate``: a train/ + val/ per-person photo set, or a pairs file (``--pairs``).

The train/val run is :func:`toolchain.runtime.evaluate.evaluate_dataset` with the reports of
:mod:`toolchain.runtime.evaluate_report`; the pairs run is
:func:`toolchain.runtime.pairs.evaluate_pairs` with those of :mod:`toolchain.runtime.pairs_report`.
This module adds the options, the console tables and ``--store-threshold`` (``--far``: the
threshold at that false-accept rate instead of the accuracy-maximizing one). Only onnxruntime,
numpy, Pillow, typer and rich are imported (inside the command body), never TensorFlow. Exit code 0
when every photo was handled, 1 when some could not be read, 2 for a usage error, 3 for a bad
dataset or pairs file.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from toolchain.cli.common import ArtifactsOption, console, display_text, problem
from toolchain.cli.recognition import (
    AlignOption,
    GalleryOption,
    MarginOption,
    MatchOption,
    MaxDetectSideOption,
    MinEnrollFaceOption,
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
from toolchain.runtime.gallery.schema import MatchMode

if TYPE_CHECKING:
    from rich.table import Table

    from toolchain.runtime.backends import ModelChoice
    from toolchain.runtime.evaluate import Evaluation
    from toolchain.runtime.pairs import PairsEvaluation

app = typer.Typer()
"""``facenet evaluate`` (added to the root app by :mod:`toolchain.cli.app`)."""


def _tables(evaluation: Evaluation) -> list[Table]:
    """The confusion matrix and the metrics, as console tables."""
    from rich.table import Table
    from rich.text import Text

    ident, ver = evaluation.identification, evaluation.verification
    columns = evaluation.predicted_names
    confusion = ident.confusion
    confusion_table = Table(title="Identification: true (rows) vs predicted (columns)")
    confusion_table.add_column("true \\ predicted")
    for name in columns:
        confusion_table.add_column(display_text(name), justify="right")
    for person in evaluation.people:
        row = confusion.get(person, Counter())
        confusion_table.add_row(display_text(person), *(
            Text(str(row[n]), style="bold") if n == person else (str(row[n]) if row[n] else ".")
            for n in columns))
    metrics = Table(title=f"Evaluation of {display_text(evaluation.dataset)}")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    metrics.add_row("top-1 accuracy (closest person, any distance)",
                    f"{ident.correct_closed}/{ident.total} = {ident.accuracy_closed:.2%}")
    metrics.add_row(f"accuracy at threshold {ver.best_threshold:.3f}",
                    f"{ident.correct_open}/{ident.total} = {ident.accuracy_open:.2%}")
    metrics.add_row("verification pairs (same / different)",
                    f"{ver.pairs_same} / {ver.pairs_different}")
    metrics.add_row("ROC AUC", f"{ver.auc:.4f}")
    metrics.add_row("equal error rate", f"{ver.eer:.2%} at {ver.eer_threshold:.3f}")
    metrics.add_row("accuracy-maximizing threshold",
                    f"{ver.best_threshold:.3f} ({ver.best_accuracy:.2%} of pairs)")
    return [confusion_table, metrics]


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



def _gallery_crop(path: Path | str) -> str:
    """The crop an existing gallery was enrolled with (its threshold must be measured so)."""
    from toolchain.runtime.gallery import Gallery
    from toolchain.runtime.recognizer import stored_crop

    with Gallery.open(path) as opened:
        return stored_crop(opened.crop, path).text


def _far_value(value: float | None) -> float | None:
    """``--far``: a false-accept rate in (0, 1)."""
    if value is not None and not 0.0 < value < 1.0:
        raise typer.BadParameter(f"must be a rate between 0 and 1, got {value}")
    return value


def _evaluate_pairs(pairs: Path, lfw_root: Path | None, threshold: float | None,
                    artifacts: Path, detection: dict[str, object], crop: str | None,
                    model: ModelChoice) -> int:
    """``facenet evaluate --pairs``: measure, write the reports, print the table."""
    from toolchain.runtime.pairs import evaluate_pairs
    from toolchain.runtime.pairs_report import write_reports

    layout = Layout(artifacts)
    result = evaluate_pairs(pairs, artifacts, lfw_root=lfw_root, threshold=threshold, crop=crop,
                            detection=detection, progress=progress_bar, on_problem=problem,
                            model=model)
    write_reports(result, layout)
    console().print(_pairs_table(result))
    print(f"reports: {display_text(layout.reports_dir / 'pairs.md')}, pairs.json, "
          "pairs_roc.png, pairs_distances.png")
    return 1 if result.problems else 0


@app.command()
def evaluate(
    dataset: Annotated[Path | None, typer.Argument(
        exists=True, file_okay=False,
        help="Folder with train/<person>/ and val/<person>/ photos (not with --pairs).",
        show_default=False)] = None,
    pairs: Annotated[Path | None, typer.Option(
        "--pairs", exists=True, dir_okay=False, show_default=False,
        help="Evaluate the photo pairs of a CSV (a,b,same) or LFW pairs.txt file instead.")] = None,
    lfw_root: Annotated[Path | None, typer.Option(
        "--lfw-root", exists=True, file_okay=False, show_default=False,
        help="Folder of LFW's <name>/<name>_0001.jpg photos [default: the pairs file's "
             "folder].")] = None,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", callback=threshold_value, show_default=False,
        help="With --pairs: the threshold whose accuracy is reported [default: the model's "
             "metadata].")] = None,
    store_threshold: Annotated[bool, typer.Option(
        "--store-threshold",
        help="Save the accuracy-maximizing threshold (or the --far one) into the gallery for "
             "recognize.")] = False,
    far: Annotated[float | None, typer.Option(
        "--far", callback=_far_value, show_default=False,
        help="With --store-threshold: store the threshold at this false-accept rate over the "
             "different-person pairs (e.g. 1e-3) instead.")] = None,
    gallery: GalleryOption = None,
    match: MatchOption = MatchMode.NEAREST,
    min_enroll_face: MinEnrollFaceOption = None,
    min_face: MinFaceOption = None,
    max_detect_side: MaxDetectSideOption = None,
    margin: MarginOption = None,
    align: AlignOption = None,
    runtime: RuntimeOption = RuntimeChoice.onnxruntime,
    precision: PrecisionOption = PrecisionChoice.fp32,
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
) -> int:
    """Enroll train/ into a temporary gallery, recognize val/, and report accuracy, ROC AUC, EER.

    Writes <artifacts>/reports/evaluate.{md,json} and the ROC and distance-histogram PNGs. With
    --pairs: ROC AUC, EER, accuracy at the threshold, TAR at FAR 1e-2 and 1e-3 and 10-fold
    accuracy of labelled photo pairs, into <artifacts>/reports/pairs.{md,json} and two PNGs.
    """
    from toolchain.runtime.evaluate import evaluate_dataset, save_threshold
    from toolchain.runtime.evaluate_report import write_reports
    from toolchain.runtime.gallery import display_target, gallery_exists
    from toolchain.runtime.recognizer import MIN_ENROLL_FACE

    if (dataset is None) == (pairs is None):
        raise typer.BadParameter("give a DATASET folder or --pairs FILE, not both or neither")
    if far is not None and not store_threshold:
        raise typer.BadParameter("--far goes with --store-threshold", param_hint="--far")
    if pairs is not None:
        if store_threshold or gallery is not None or min_enroll_face is not None:
            raise typer.BadParameter("--store-threshold, --gallery and --min-enroll-face are "
                                     "for the train/val mode, not --pairs")
        return _evaluate_pairs(pairs, lfw_root, threshold, artifacts,
                               detection_keywords(min_face, max_detect_side),
                               crop_keywords(margin, align).get("crop"),
                               model_choice(runtime, precision))
    assert dataset is not None
    if lfw_root is not None or threshold is not None:
        raise typer.BadParameter("--lfw-root and --threshold go with --pairs")
    layout = Layout(artifacts)
    target = gallery if gallery is not None else layout.gallery
    crop = crop_keywords(margin, align).get("crop")
    if crop is None and store_threshold and gallery_exists(target):
        crop = _gallery_crop(target)
    evaluation = evaluate_dataset(
        dataset, artifacts, match=match.value, progress=progress_bar, on_problem=problem,
        min_enroll_face=MIN_ENROLL_FACE if min_enroll_face is None else min_enroll_face,
        crop=crop, model=model_choice(runtime, precision),
        **detection_keywords(min_face, max_detect_side))
    reports = layout.reports_dir
    write_reports(evaluation, layout)
    out = console()
    for table in _tables(evaluation):
        out.print(table)
    print(f"reports: {display_text(reports / 'evaluate.md')}, evaluate.json, evaluate_roc.png, "
          "evaluate_distances.png")
    if store_threshold:
        stored = save_threshold(evaluation, target, far=far)
        print(f"stored threshold {stored:.3f} in {display_text(display_target(target))}")
    return 1 if evaluation.unreadable else 0
