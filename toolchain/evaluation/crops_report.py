"""The reports of a :class:`~toolchain.evaluation.crops.CropStudy`: JSON, markdown and a chart.

``<artifacts>/reports/crops.json`` holds every number, ``crops.md`` the tables (crops side by
side, the policy threshold before and after, the peer), ``crops.png`` the ROC of every crop over
all labelled pairs on a log false-accept axis with the policy's FAR marked. All written
atomically.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from toolchain.core.atomic import write_json, write_text
from toolchain.core.paths import Layout
from toolchain.evaluation.crops import ALL_SETS, CropStudy, Scores

REPORT_NAMES = ("crops.json", "crops.md", "crops.png")
"""The files :func:`write_reports` writes into the reports folder, in this order."""


def summary(study: CropStudy) -> dict[str, Any]:
    """The ``crops.json`` document."""
    return asdict(study)


def _far(scores: Scores, far: float) -> str:
    point = next(p for p in scores.far_points if p.far_target == far)
    return f"{point.tar:.2%}"


def _row(scores: Scores) -> str:
    return (f"{scores.auc:.4f} | {scores.eer:.2%} | {_far(scores, 1e-2)} | {_far(scores, 1e-3)} "
            f"| {scores.accuracy:.2%} ({scores.false_accepts} FA)")


def markdown(study: CropStudy) -> str:
    """The ``crops.md`` report."""
    names = [s.set for s in study.crops[0].sets]
    lines = [
        "# Crops and the default decision",
        "",
        f"Model `{study.model}` (sha256 {study.model_fingerprint[:16]}…), {study.created}. "
        "Every pair of labelled faces, per set and over all sets together:",
        "",
        *[f"- {line}" for line in study.sets],
        "",
        f"Each crop's threshold is its FAR policy threshold over all pairs (FAR <= {study.far:g}); "
        "accuracy is the share of pairs decided right there (FA: impostor pairs accepted). "
        f"**Best crop: `{study.best}`** (highest TAR at FAR {study.far:g} over all pairs); the "
        f"model's default crop is `{study.default_crop}`"
        + (" (the best one)." if study.best == study.default_crop else
           " (**not** the best one: re-export to adopt it)."),
        "",
    ]
    for name in names:
        lines += [f"## {name}", "",
                  "| crop | threshold | ROC AUC | EER | TAR @ FAR 1e-2 | TAR @ FAR 1e-3 "
                  "| accuracy |",
                  "|---|---|---|---|---|---|---|"]
        for crop in study.crops:
            mark = " **(default)**" if crop.crop == study.default_crop else ""
            lines.append(f"| `{crop.crop}`{mark} | {crop.threshold.value:.4f} | "
                         f"{_row(crop.of(name))} |")
        lines.append("")
    lines += ["## The default decision before and after the FAR policy", "",
              "| set | before: `box` at "
              f"{study.previous[0].threshold:.4f} | after: `{study.default_crop}` at "
              f"{study.default_threshold:.4f} |", "|---|---|---|"]
    default = study.crop(study.default_crop)
    for before in study.previous:
        after = default.of(before.set)
        lines.append(f"| {before.set} | {before.accuracy:.2%} ({before.false_accepts} of "
                     f"{before.impostor_pairs} impostor pairs accepted) | {after.accuracy:.2%} "
                     f"({after.false_accepts} of {after.impostor_pairs}) |")
    lines.append("")
    if study.peer is not None:
        lines += [f"## Side by side with {study.peer_name}", "",
                  "Over the pairs of faces both found (photos where either missed a named face "
                  "are left out), each at its own defaults:", "",
                  "| set | faces (ours / peer found) | pairs | ours: AUC | ours: accuracy | "
                  "peer: AUC | peer: accuracy |", "|---|---|---|---|---|---|---|"]
        for row in study.peer:
            lines.append(f"| {row.set} | {row.faces} ({row.ours_faces_found} / "
                         f"{row.peer_faces_found}) | {row.pairs} | {row.ours.auc:.4f} | "
                         f"{row.ours.accuracy:.2%} | {row.peer.auc:.4f} | "
                         f"{row.peer.accuracy:.2%} |")
        lines.append("")
    if study.missing:
        lines += ["## Labelled photos not used", "", *[f"- {m}" for m in study.missing], ""]
    return "\n".join(lines)


COLORS = [(30, 90, 200), (220, 50, 50), (30, 160, 70), (235, 120, 0), (140, 60, 180),
          (0, 150, 160), (120, 120, 120), (200, 40, 150), (110, 80, 20), (20, 20, 20)]


def chart(study: CropStudy, path: Path) -> None:
    """TAR against log10 FAR over all pairs, one line per crop, the policy FAR dashed."""
    from toolchain.evaluation.charts import Chart

    rows = [c.of(ALL_SETS) for c in study.crops]
    low = min(p.tar for s in rows for p in s.far_points)
    floor = max(0.0, math.floor(low * 10) / 10 - 0.1)
    figure = Chart("TAR at FAR over all labelled pairs, per crop", "false-accept rate (log)",
                   "true-accept rate", (-3.5, 0.0), (floor, 1.0), size=(900, 650))
    figure.ticks([-3, -2, -1, 0], [], fmt="1e{:.0f}")
    figure.ticks([], [floor + i * (1 - floor) / 5 for i in range(6)], fmt="{:.2f}")
    for crop, scores, color in zip(study.crops, rows, COLORS * 2, strict=False):
        fars = [math.log10(p.far_target) for p in scores.far_points] + [0.0]
        tars = [p.tar for p in scores.far_points] + [1.0]
        order = sorted(range(len(fars)), key=fars.__getitem__)
        figure.polyline([fars[i] for i in order], [tars[i] for i in order], color,
                        width=4 if crop.crop == study.default_crop else 2)
        for x, y in zip(fars[:-1], tars[:-1], strict=True):
            figure.marker(x, y, color, radius=4)
    figure.polyline([math.log10(study.far)] * 2, [floor, 1.0], (20, 20, 20), width=1, dashed=True)
    figure.legend([(c.crop + (" (default)" if c.crop == study.default_crop else ""), color)
                   for c, color in zip(study.crops, COLORS * 2, strict=False)])
    figure.save(path)


def write_reports(study: CropStudy, layout: Layout) -> list[Path]:
    """Write :data:`REPORT_NAMES` into the reports folder; return their paths."""
    paths = [layout.reports_dir / name for name in REPORT_NAMES]
    layout.reports_dir.mkdir(parents=True, exist_ok=True)
    write_json(paths[0], summary(study))
    write_text(paths[1], markdown(study))
    chart(study, paths[2])
    return paths
