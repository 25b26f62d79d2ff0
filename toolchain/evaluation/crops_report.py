"""The reports of a :class:`~toolchain.evaluation.crops.CropStudy`: JSON, markdown and a chart.

``<artifacts>/reports/crops.json`` holds every number, ``crops.md`` the tables (the out-of-sample
folds first, then the crops side by side, the policy threshold before and after, the peer),
``crops.png`` the ROC of every crop over all labelled pairs on a log false-accept axis with the
policy's FAR marked. All written atomically.

The headline out-of-sample numbers are under ``out_of_sample`` in ``crops.json``
(:class:`~toolchain.evaluation.holdout.OutOfSample`): ``pooled.ours`` (this model, every fold
added up: ``false_accepts`` of ``impostor_pairs``, ``far``, ``far_upper``, ``tar``,
``accuracy``), ``folds[i].ours`` per held-out set, and the same-faces comparison in
``pooled.ours_same_faces``, ``pooled.peer`` (the peer calibrated by the same rule) and
``pooled.peer_fixed`` (the peer at its shipped tolerance); ``far`` is the nominal rate.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from toolchain.core.atomic import write_json, write_text
from toolchain.core.paths import Layout
from toolchain.evaluation.crops import ALL_SETS, CropStudy, Scores
from toolchain.evaluation.holdout import Decision, OutOfSample, PairCounts

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


def _rate(value: float) -> str:
    return f"{value:.1e}" if value else "0"


def _fa(counts: PairCounts) -> str:
    return (f"{counts.false_accepts:,} of {counts.impostor_pairs:,} ({_rate(counts.far)}) | "
            f"{counts.far_upper:.1e} | {counts.tar:.2%} ({counts.true_accepts:,} of "
            f"{counts.genuine_pairs:,}) | {counts.accuracy:.2%}")


def _identified(decision: Decision) -> str:
    found = decision.identification
    if found is None:
        return "n/a"
    text = (f"{found.nearest_right} / {found.accepted_right} of {found.queries}")
    if found.strangers:
        text += f"; {found.strangers_rejected} of {found.strangers} alone rejected"
    return text


def _held_out(oos: OutOfSample) -> list[str]:
    """The folds of this model on every face it found."""
    pooled = oos.pooled.ours
    lines = [
        "## Out of sample: calibrated on the other sets, measured on the held-out one", "",
        f"**The shipped threshold ({oos.shipped_threshold:.4f}) is calibrated on every labelled "
        f"set** (the export's FAR {oos.far:g} rule over all their pairs; "
        f"{oos.shipped_calibrated_on or 'the model carries no calibration record'}), and the "
        "default crop and the alignment template were chosen on the same photos: the tables "
        "after this section grade those choices on the pairs they were fitted on (in-sample). "
        "**The numbers in this section are out-of-sample**: for each set in turn, the threshold "
        f"is calibrated by the same rule (FAR <= {oos.far:g} over every impostor pair of the "
        "other sets' faces) and measured on the held-out set's pairs only. Upper: the one-sided "
        f"{oos.confidence:.0%} Clopper-Pearson bound of the held-out FAR. Identification: each "
        "held-out face against the set's other faces, nearest right / nearest right and within "
        "the threshold.", "",
        f"**Nominal FAR {oos.far:g}; measured out of sample: {pooled.false_accepts:,} of "
        f"{pooled.impostor_pairs:,} impostor pairs** (FAR {_rate(pooled.far)}, "
        f"{oos.confidence:.0%} upper bound {pooled.far_upper:.1e}), all {len(oos.folds)} folds "
        f"pooled; TAR {pooled.tar:.2%} ({pooled.true_accepts:,} of {pooled.genuine_pairs:,} "
        f"genuine pairs), pair accuracy {pooled.accuracy:.2%}.", "",
        "| held out | calibrated on | threshold | calibration: accepted impostor pairs | "
        f"held-out FAR (nominal {oos.far:g}) | upper | TAR | pair accuracy | identification |",
        "|---|---|---|---|---|---|---|---|---|"]
    for fold in oos.folds:
        point = fold.ours.calibration
        calibration = (f"{point.false_accepts:,} of {point.impostor_pairs:,}"
                       if point is not None else "")
        lines.append(f"| {fold.held_out} ({fold.faces} faces) | {', '.join(fold.calibrated_on)} | "
                     f"{fold.ours.threshold:.4f} | {calibration} | {_fa(fold.ours.pairs)} | "
                     f"{_identified(fold.ours)} |")
    lines += [f"| all folds | | | | {_fa(pooled)} | |", ""]
    for fold in oos.folds:
        point = fold.ours.calibration
        if point is not None and point.impostor_pairs * oos.far < 1:
            lines.append(f"- Calibrated on {', '.join(fold.calibrated_on)}: "
                         f"{point.impostor_pairs:,} impostor pairs, so FAR {oos.far:g} allows "
                         "none of them and the threshold falls just below the closest impostor "
                         f"pair; fewer than {1 / oos.far:,.0f} impostor pairs cannot resolve "
                         f"FAR {oos.far:g}.")
        if fold.ours.pairs.impostor_pairs * oos.far < 1:
            lines.append(f"- Held out {fold.held_out}: {fold.ours.pairs.impostor_pairs:,} "
                         f"impostor pairs measure a FAR only down to about "
                         f"{1 / fold.ours.pairs.impostor_pairs:.1e}, hence its wide upper bound.")
    if oos.shared_people:
        lines.append(f"- Named in more than one set (on both sides of a fold, so not fully out "
                     f"of sample): {', '.join(oos.shared_people)}.")
    lines += [f"- Not measured: {why}" for why in oos.skipped]
    return [*lines, ""]


def _side_by_side(oos: OutOfSample) -> list[str]:
    """This model and the peer by the same procedure over the faces both found."""
    pooled = oos.pooled
    if pooled.ours_same_faces is None or pooled.peer is None or pooled.peer_fixed is None:
        return []
    totals = (("this model, calibrated", pooled.ours_same_faces),
              ("peer, calibrated", pooled.peer),
              (f"peer, fixed {oos.peer_tolerance:g}", pooled.peer_fixed))
    lines = [
        f"### Out of sample, side by side with {oos.peer_name}", "",
        "Over the faces both found (photos where either missed a named face are left out of "
        "both sides), each threshold calibrated by the same rule on the same other sets; the "
        f"peer also at its fixed {oos.peer_tolerance:g} as it ships (set by its authors, not on "
        "these photos).", "",
        "| held out | decision | threshold | held-out FAR | upper | TAR | pair accuracy | "
        "identification |", "|---|---|---|---|---|---|---|---|"]
    for fold in oos.folds:
        rows = (("this model, calibrated", fold.ours_same_faces),
                ("peer, calibrated", fold.peer), (f"peer, fixed {oos.peer_tolerance:g}",
                                                  fold.peer_fixed))
        for label, decision in rows:
            if decision is not None:
                lines.append(f"| {fold.held_out} ({fold.both_found} faces) | {label} | "
                             f"{decision.threshold:.4f} | {_fa(decision.pairs)} | "
                             f"{_identified(decision)} |")
    for label, counts in totals:
        lines.append(f"| all folds | {label} | | {_fa(counts)} | |")
    return [*lines, ""]


def _not_cross_validated(study: CropStudy) -> list[str]:
    """The choices the folds do not re-make, and why."""
    default = study.crop(study.default_crop)
    picks = []
    for name, crops in study.best_per_set.items():
        if len(crops) == len(study.crops):
            picks.append(f"{name}: all {len(crops)} crops tie")
        elif crops == (study.default_crop,):
            picks.append(f"{name}: `{study.default_crop}` (the default)")
        else:
            pick = study.crop(crops[0])
            picks.append(f"{name}: {', '.join(f'`{c}`' for c in crops)} (TAR "
                         f"{pick.tar_at(name, study.far):.2%} against `{study.default_crop}`'s "
                         f"{default.tar_at(name, study.far):.2%} at FAR {study.far:g})")
    return [
        "### Not cross-validated", "",
        f"- **The crop** (`{study.default_crop}`): chosen once by the study's rule over the pairs "
        "of all sets together (the tables below); the folds measure the threshold rule under "
        "it. Cross-validating it would mean re-choosing the crop on each fold's calibration "
        "sets, and a set can only choose where its crops differ. What the rule picks on each "
        f"set alone: {'; '.join(picks)}.",
        "- **The alignment template** (`toolchain.core.crop.ALIGN_TEMPLATE`): the mean landmark "
        "positions over the 5-celebrity faces. It is fitted without identity labels (where "
        "eyes, nose and mouth sit, not who is who), so it cannot learn where to accept or "
        "reject; but in the fold that holds the 5-celebrity photos out, their faces shaped the "
        "crop. Re-fitting it per fold would change every embedding per fold; not done.",
        ""]


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
           " (**not** the best one: re-export to adopt it).")
        + " The per-crop tables further down are in-sample: each threshold is fitted on the "
        "pairs it is scored on.",
        "",
    ]
    if study.out_of_sample is not None:
        lines += [*_held_out(study.out_of_sample), *_side_by_side(study.out_of_sample),
                  *_not_cross_validated(study)]
    else:
        lines += ["Out-of-sample numbers need at least two labelled sets (leave one out); this "
                  "run has one, so every number here is in-sample.", ""]
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
                  "are left out), each at its own defaults (in-sample for this model: its "
                  "threshold is calibrated on these pairs; see the out-of-sample section):", "",
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
