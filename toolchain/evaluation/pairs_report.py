"""The reports of a pairs evaluation (:class:`~toolchain.evaluation.pairs.PairsEvaluation`):
JSON, markdown, two charts.

``<artifacts>/reports/pairs.json`` holds every number (and the ROC points), ``pairs.md`` the
table a reader wants, ``pairs_roc.png`` the ROC curve and ``pairs_distances.png`` the same- and
different-person distance histograms with the threshold in force. All are written atomically.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from toolchain.core.paths import Layout
from toolchain.evaluation.dataset_report import write_verification_reports
from toolchain.evaluation.pairs import PairsEvaluation

REPORT_NAMES: tuple[str, str, str, str] = (
    "pairs.json", "pairs.md", "pairs_roc.png", "pairs_distances.png"
)
"""The files :func:`write_reports` writes into the reports folder, in this order."""


def summary(result: PairsEvaluation) -> dict[str, Any]:
    """The ``pairs.json`` document."""
    ver, kfold = result.verification, result.kfold
    return {
        "pairs_file": str(result.pairs_file.path), "format": result.pairs_file.format,
        "photo_root": str(result.pairs_file.root), "created": result.created,
        "model": str(result.model), "model_fingerprint": result.model_fingerprint,
        "crop": result.crop, "photos": result.photos, "pairs": len(result.pairs_file.pairs),
        "pairs_used": len(result.distances), "pairs_skipped": result.skipped,
        "pairs_same": ver.pairs_same, "pairs_different": ver.pairs_different,
        "threshold": result.threshold, "threshold_source": result.threshold_source,
        "accuracy_at_threshold": result.accuracy,
        "auc": ver.auc, "eer": ver.eer, "eer_threshold": ver.eer_threshold,
        "best_threshold": ver.best_threshold, "best_accuracy": ver.best_accuracy,
        "tar_at_far": [asdict(point) for point in result.far_points],
        "kfold": None if kfold is None else {
            "folds": kfold.folds, "accuracy_mean": kfold.accuracy_mean,
            "accuracy_std": kfold.accuracy_std, "threshold_mean": kfold.threshold_mean,
            "threshold_std": kfold.threshold_std, "accuracies": list(kfold.accuracies),
            "thresholds": list(kfold.thresholds)},
        "roc": {"fpr": ver.fpr.tolist(), "tpr": ver.tpr.tolist(),
                "thresholds": ver.thresholds.tolist()},
        "no_face": result.no_face, "problems": result.problems,
    }


def markdown(result: PairsEvaluation) -> str:
    """The ``pairs.md`` document: the metrics table, the charts, the photos not used."""
    ver, kfold, parsed = result.verification, result.kfold, result.pairs_file
    lines = [
        "# Pair evaluation",
        "",
        f"Pairs file `{parsed.path}` ({parsed.format} layout, photos under `{parsed.root}`): "
        f"{len(parsed.pairs)} pairs of {result.photos} photos, {len(result.distances)} used, "
        f"{result.skipped} skipped (a photo without a usable face). Model `{result.model}` "
        f"(sha256 `{result.model_fingerprint[:16]}…`), largest face of each photo, crop "
        f"`{result.crop}`, {result.created}.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| pairs used | {ver.pairs_same} same person, {ver.pairs_different} different |",
        f"| ROC AUC | {ver.auc:.4f} |",
        f"| equal error rate | {ver.eer:.2%} at distance {ver.eer_threshold:.3f} |",
        f"| accuracy at the threshold in force, {result.threshold:.3f} "
        f"({result.threshold_source}) | {result.accuracy:.2%} |",
    ]
    for point in result.far_points:
        lines.append(
            f"| TAR at FAR <= {point.far_target:g} | {point.tar:.2%} at distance "
            f"{point.threshold:.3f} ({point.false_accepts} of {point.impostor_pairs} impostor "
            f"pairs accepted; the smallest non-zero FAR measurable is "
            f"{1 / point.impostor_pairs:.2g}) |")
    if kfold is None:
        lines.append("| 10-fold accuracy | not computed (fewer than 2 pairs of a kind) |")
    else:
        lines.append(f"| {kfold.folds}-fold accuracy (threshold picked on the other folds) | "
                     f"{kfold.accuracy_mean:.2%} +- {kfold.accuracy_std:.2%}, threshold "
                     f"{kfold.threshold_mean:.3f} +- {kfold.threshold_std:.3f} |")
    lines += [
        f"| accuracy-maximizing threshold, all pairs | {ver.best_threshold:.3f} "
        f"({ver.best_accuracy:.2%}) |",
        "",
        "![ROC curve](pairs_roc.png)",
        "",
        "![Distance histogram](pairs_distances.png)",
        "",
    ]
    if result.no_face or result.problems:
        lines += ["## Photos not used (their pairs are skipped)", ""]
        lines += [f"- {name}: no face found" for name in result.no_face]
        lines += [f"- {message}" for message in result.problems]
        lines.append("")
    return "\n".join(lines)


def write_reports(result: PairsEvaluation, layout: Layout) -> list[Path]:
    """Write :data:`REPORT_NAMES` into ``layout.reports_dir`` atomically and record their hashes.

    Returns:
        The paths written, in :data:`REPORT_NAMES` order.
    """
    return write_verification_reports(
        layout, REPORT_NAMES, summary(result), markdown(result), result.verification,
        result.distances, result.same, result.threshold)
