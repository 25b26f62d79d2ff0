"""``facenet evaluate``: accuracy, ROC AUC and EER of a train/ + val/ per-person photo set.

The run is :func:`toolchain.runtime.evaluate.evaluate_dataset`, the report files are
:mod:`toolchain.runtime.evaluate_report`'s; this module adds the options, the console tables and
``--store-threshold``. Only onnxruntime, numpy, Pillow, typer and rich are imported (inside the
command body), never TensorFlow. Exit code 0 when every photo was handled, 1 when some could not be
read.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from toolchain.cli.common import ArtifactsOption, console, display_text, problem
from toolchain.cli.recognition import (
    GalleryOption,
    MatchOption,
    MaxDetectSideOption,
    MinEnrollFaceOption,
    MinFaceOption,
    detection_keywords,
    progress_bar,
)
from toolchain.core.paths import DEFAULT_ARTIFACTS, Layout
from toolchain.runtime.gallery.schema import MatchMode

if TYPE_CHECKING:
    from rich.table import Table

    from toolchain.runtime.evaluate import Evaluation

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


@app.command()
def evaluate(
    dataset: Annotated[Path, typer.Argument(
        exists=True, file_okay=False,
        help="Folder with train/<person>/ and val/<person>/ photos.", show_default=False)],
    store_threshold: Annotated[bool, typer.Option(
        "--store-threshold",
        help="Save the accuracy-maximizing threshold into the gallery for recognize.")] = False,
    gallery: GalleryOption = None,
    match: MatchOption = MatchMode.NEAREST,
    min_enroll_face: MinEnrollFaceOption = None,
    min_face: MinFaceOption = None,
    max_detect_side: MaxDetectSideOption = None,
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
) -> int:
    """Enroll train/ into a temporary gallery, recognize val/, and report accuracy, ROC AUC, EER.

    Writes <artifacts>/reports/evaluate.{md,json} and the ROC and distance-histogram PNGs.
    """
    from toolchain.runtime.evaluate import evaluate_dataset, save_threshold
    from toolchain.runtime.evaluate_report import write_reports
    from toolchain.runtime.recognizer import MIN_ENROLL_FACE

    layout = Layout(artifacts)
    evaluation = evaluate_dataset(
        dataset, artifacts, match=match.value, progress=progress_bar, on_problem=problem,
        min_enroll_face=MIN_ENROLL_FACE if min_enroll_face is None else min_enroll_face,
        **detection_keywords(min_face, max_detect_side))
    reports = layout.reports_dir
    write_reports(evaluation, layout)
    out = console()
    for table in _tables(evaluation):
        out.print(table)
    print(f"reports: {display_text(reports / 'evaluate.md')}, evaluate.json, evaluate_roc.png, "
          "evaluate_distances.png")
    if store_threshold:
        target = gallery if gallery is not None else layout.gallery
        stored = save_threshold(evaluation, target)
        print(f"stored threshold {stored:.3f} in {display_text(target)}")
    return 1 if evaluation.unreadable else 0
