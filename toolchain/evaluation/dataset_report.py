"""The reports of an :class:`~toolchain.evaluation.dataset.Evaluation`: JSON, markdown, two charts.

``<artifacts>/reports/evaluate.json`` holds every number (and the ROC points),
``evaluate.md`` the tables a reader wants, ``evaluate_roc.png`` the ROC curve and
``evaluate_distances.png`` the same- and different-person distance histograms.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolchain.core.atomic import write_json, write_text
from toolchain.core.integrity import record_files
from toolchain.core.paths import Layout
from toolchain.evaluation.charts import distance_histogram, roc_chart
from toolchain.evaluation.dataset import Evaluation

if TYPE_CHECKING:
    import numpy as np

    from toolchain.evaluation.metrics import Verification

REPORT_NAMES: tuple[str, str, str, str] = (
    "evaluate.json", "evaluate.md", "evaluate_roc.png", "evaluate_distances.png"
)
"""The files :func:`write_reports` writes into the reports folder, in this order."""


def summary(evaluation: Evaluation) -> dict[str, Any]:
    """The ``evaluate.json`` document."""
    ident, ver = evaluation.identification, evaluation.verification
    return {
        "dataset": str(evaluation.dataset), "created": evaluation.created,
        "model": str(evaluation.model), "model_fingerprint": evaluation.model_fingerprint,
        "match": evaluation.match.value, "crop": evaluation.crop,
        "train_photos": evaluation.train_photos,
        "enrolled": evaluation.enrolled, "val_photos": len(evaluation.val),
        "people": evaluation.people,
        "identification": {
            "total": ident.total, "correct_closed": ident.correct_closed,
            "accuracy_closed": ident.accuracy_closed, "correct_open": ident.correct_open,
            "accuracy_open": ident.accuracy_open, "threshold": ident.threshold,
            "confusion": {t: dict(c) for t, c in ident.confusion.items()},
        },
        "verification": {
            "pairs_same": ver.pairs_same, "pairs_different": ver.pairs_different,
            "auc": ver.auc, "eer": ver.eer, "eer_threshold": ver.eer_threshold,
            "best_threshold": ver.best_threshold, "best_accuracy": ver.best_accuracy,
            "roc": {"fpr": ver.fpr.tolist(), "tpr": ver.tpr.tolist(),
                    "thresholds": ver.thresholds.tolist()},
        },
        "val": [asdict(photo) for photo in evaluation.val],
        "problems": evaluation.problems,
    }


def markdown(evaluation: Evaluation) -> str:
    """The ``evaluate.md`` document: both tables, the confusion matrix, the charts, problems."""
    ident, ver = evaluation.identification, evaluation.verification
    people, columns = evaluation.people, evaluation.predicted_names
    confusion = ident.confusion
    lines = [
        "# Evaluation",
        "",
        f"Dataset `{evaluation.dataset}`: {evaluation.train_photos} train photos "
        f"({evaluation.enrolled} enrolled), {len(evaluation.val)} val photos, "
        f"{len(people)} people. Model `{evaluation.model}` (sha256 "
        f"`{evaluation.model_fingerprint[:16]}…`), match `{evaluation.match.value}`, crop "
        f"`{evaluation.crop}`, {evaluation.created}.",
        "",
        "## Identification (val photos against a gallery of the train photos)",
        "",
        "| metric | value |",
        "|---|---|",
        "| top-1 accuracy, closest person at any distance | "
        f"{ident.correct_closed}/{ident.total} = {ident.accuracy_closed:.2%} |",
        f"| accuracy at threshold {ident.threshold:.3f} (farther = unknown = wrong) | "
        f"{ident.correct_open}/{ident.total} = {ident.accuracy_open:.2%} |",
        "",
        "Confusion (rows: true person, columns: predicted):",
        "",
        "| true \\ predicted | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for person in people:
        row = confusion.get(person, Counter())
        lines.append(f"| {person} | " + " | ".join(str(row[p]) for p in columns) + " |")
    lines += [
        "",
        "## Verification (every val face against every train face)",
        "",
        "| metric | value |",
        "|---|---|",
        f"| pairs | {ver.pairs_same} same person, {ver.pairs_different} different |",
        f"| ROC AUC | {ver.auc:.4f} |",
        f"| equal error rate | {ver.eer:.2%} at distance {ver.eer_threshold:.3f} |",
        f"| accuracy-maximizing threshold | {ver.best_threshold:.3f} "
        f"(pair accuracy {ver.best_accuracy:.2%}) |",
        "",
        "![ROC curve](evaluate_roc.png)",
        "",
        "![Distance histogram](evaluate_distances.png)",
        "",
    ]
    if evaluation.problems:
        lines += ["## Photos not used", ""]
        lines += [f"- {message}" for message in evaluation.problems]
        lines.append("")
    return "\n".join(lines)


def write_reports(evaluation: Evaluation, layout: Layout) -> list[Path]:
    """Write :data:`REPORT_NAMES` into ``layout.reports_dir`` atomically and record their hashes.

    Returns:
        The paths written, in :data:`REPORT_NAMES` order.
    """
    return write_verification_reports(
        layout, REPORT_NAMES, summary(evaluation), markdown(evaluation), evaluation.verification,
        evaluation.pair_distances, evaluation.pair_same, evaluation.verification.best_threshold)


def write_verification_reports(layout: Layout, names: tuple[str, str, str, str],
                               document: dict[str, Any], text: str, verification: Verification,
                               distances: np.ndarray, same: np.ndarray,
                               threshold: float) -> list[Path]:
    """Write a verification report's JSON, markdown, ROC and distance-histogram files.

    Every file is written atomically into ``layout.reports_dir`` and recorded in SHA256SUMS; the
    train/val evaluation and the pair protocol share this.

    Args:
        layout: the artifacts layout.
        names: the JSON, markdown, ROC PNG and histogram PNG file names, in that order.
        document: the JSON document.
        text: the markdown.
        verification: the ROC, AUC and EER to draw.
        distances: every pair's distance.
        same: whether each pair is one person.
        threshold: the threshold drawn on the histogram.

    Returns:
        The paths written, in ``names`` order.
    """
    paths = [layout.reports_dir / name for name in names]
    json_path, md_path, roc_path, histogram_path = paths
    write_json(json_path, document)
    write_text(md_path, text)
    roc_chart(verification.fpr, verification.tpr, verification.auc, verification.eer, roc_path)
    distance_histogram(distances[same], distances[~same], threshold, histogram_path)
    record_files(layout, paths)
    return paths
