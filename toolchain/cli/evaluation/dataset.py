"""``facenet eval dataset``: enroll a train/ set, recognize its val/ set, report and calibrate.

A thin adapter over :func:`toolchain.evaluation.dataset.evaluate_dataset` with the reports of
:mod:`toolchain.evaluation.dataset_report`; this module adds the options, the console tables and
``--store-threshold`` (``--far``: the threshold at that false-accept rate instead of the
accuracy-maximizing one). Only onnxruntime, numpy, Pillow, typer and rich are imported (inside
the command body), never TensorFlow. Exit code 0 when every photo was handled, 1 when some could
not be read, 2 for a usage error, 3 for a bad dataset.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from toolchain.cli.common import ArtifactsOption, console, display_text, problem
from toolchain.cli.options import (
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
)
from toolchain.core.paths import DEFAULT_ARTIFACTS, Layout
from toolchain.gallery import open_gallery
from toolchain.gallery.schema import MatchMode

if TYPE_CHECKING:
    from rich.table import Table

    from toolchain.evaluation.dataset import Evaluation

app = typer.Typer()
"""``facenet eval dataset`` (added to the ``eval`` group by :mod:`toolchain.cli.evaluation`)."""


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


def _gallery_crop(path: Path | str) -> str:
    """The crop an existing gallery was enrolled with (its threshold must be measured so)."""
    from toolchain.gallery import stored_crop

    with open_gallery(path) as opened:
        return stored_crop(opened.crop, path).text


def _far_value(value: float | None) -> float | None:
    """``--far``: a false-accept rate in (0, 1)."""
    if value is not None and not 0.0 < value < 1.0:
        raise typer.BadParameter(f"must be a rate between 0 and 1, got {value}")
    return value


@app.command("dataset")
def dataset(
    folder: Annotated[Path, typer.Argument(
        exists=True, file_okay=False, metavar="DATASET",
        help="Folder with train/<person>/ and val/<person>/ photos.", show_default=False)],
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

    Writes <artifacts>/reports/evaluate.{md,json} and the ROC and distance-histogram PNGs.
    """
    from toolchain.evaluation.dataset import evaluate_dataset, save_threshold
    from toolchain.evaluation.dataset_report import write_reports
    from toolchain.gallery import display_target, gallery_exists
    from toolchain.runtime.recognizer import MIN_ENROLL_FACE

    if far is not None and not store_threshold:
        raise typer.BadParameter("--far goes with --store-threshold", param_hint="--far")
    layout = Layout(artifacts)
    target = gallery if gallery is not None else layout.gallery
    crop = crop_keywords(margin, align).get("crop")
    if crop is None and store_threshold and gallery_exists(target):
        crop = _gallery_crop(target)
    evaluation = evaluate_dataset(
        folder, artifacts, match=match.value, progress=progress_bar, on_problem=problem,
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
