"""Identification and verification metrics of a train/ + val/ per-person photo set.

Identification: every val photo's face (the largest, the dataset's one-subject convention) is
matched against a gallery enrolled from train/; top-1 accuracy is counted closed-set (the nearest
person, whatever the distance) and open-set at the calibrated threshold (a face farther than the
threshold is "unknown" and counts as wrong).

Verification: every val face against every train face is a pair, "same" when both are the same
person. The ROC sweeps the distance threshold (a pair is accepted when its distance is at most the
threshold); its AUC, the equal error rate, and the threshold that maximizes pair accuracy are
reported. That threshold is the one ``--store-threshold`` saves.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

NO_FACE = "(no face)"


@dataclass(frozen=True)
class Verification:
    """ROC summary of pair distances."""

    pairs_same: int
    pairs_different: int
    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    """``thresholds[i]`` gives ``(fpr[i], tpr[i])``; the first point (0, 0) is below every pair."""
    auc: float
    eer: float
    eer_threshold: float
    best_threshold: float
    best_accuracy: float


def verification(distances: np.ndarray, same: np.ndarray) -> Verification:
    """ROC, AUC, EER and the accuracy-maximizing threshold of labelled pair distances.

    Args:
        distances: ``(P,)`` pair distances.
        same: ``(P,)`` booleans, true for same-person pairs.

    Raises:
        ValueError: there are no same-person or no different-person pairs.
    """
    d = np.asarray(distances, dtype=np.float64).ravel()
    s = np.asarray(same, dtype=bool).ravel()
    n_same, n_diff = int(s.sum()), int((~s).sum())
    if n_same == 0 or n_diff == 0:
        raise ValueError(f"need both kinds of pairs, got {n_same} same and {n_diff} different")
    order = np.argsort(d, kind="stable")
    d, s = d[order], s[order]
    last_of_value = np.r_[d[1:] != d[:-1], True]
    tp = np.cumsum(s)[last_of_value]
    fp = np.cumsum(~s)[last_of_value]
    values = d[last_of_value]
    tpr = np.r_[0.0, tp / n_same]
    fpr = np.r_[0.0, fp / n_diff]
    thresholds = np.r_[values[0] - 1e-6, values]
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))

    fnr = 1.0 - tpr
    gap = fpr - fnr
    i = int(np.argmax(gap >= 0))
    if i == 0:
        eer, eer_threshold = float(fnr[0]), float(thresholds[0])
    else:
        t = gap[i - 1] / (gap[i - 1] - gap[i])
        eer = float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))
        eer_threshold = float(thresholds[i - 1] + t * (thresholds[i] - thresholds[i - 1]))

    correct = tp + (n_diff - fp)
    accuracy = np.r_[n_diff, correct] / (n_same + n_diff)
    best = int(np.argmax(accuracy))
    cut_points = np.r_[values, values[-1] + 1e-3]
    if best == 0:
        best_threshold = float(values[0] / 2)
    else:
        best_threshold = float((cut_points[best - 1] + cut_points[best]) / 2)
    return Verification(n_same, n_diff, fpr, tpr, thresholds, auc, eer, eer_threshold,
                        best_threshold, float(accuracy[best]))


@dataclass(frozen=True)
class Identification:
    """Top-1 results of the val photos."""

    total: int
    correct_closed: int
    correct_open: int
    threshold: float
    confusion: dict[str, Counter[str]]
    """``confusion[true][predicted]`` counts (closed-set; :data:`NO_FACE` when none was found)."""

    @property
    def accuracy_closed(self) -> float:
        """Share of val photos whose nearest person is right."""
        return self.correct_closed / self.total if self.total else 0.0

    @property
    def accuracy_open(self) -> float:
        """Share right at the threshold (farther faces are "unknown", counted wrong)."""
        return self.correct_open / self.total if self.total else 0.0


def identification(truth: Sequence[str], predicted: Sequence[str | None],
                   distances: Sequence[float | None], threshold: float) -> Identification:
    """Count top-1 hits; ``predicted[i]`` is ``None`` when no face was found in photo ``i``."""
    confusion: dict[str, Counter[str]] = {}
    closed = opened = 0
    for true, pred, dist in zip(truth, predicted, distances, strict=True):
        confusion.setdefault(true, Counter())[pred if pred is not None else NO_FACE] += 1
        if pred == true:
            closed += 1
            if dist is not None and dist <= threshold:
                opened += 1
    return Identification(len(truth), closed, opened, threshold, confusion)
