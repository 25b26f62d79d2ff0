"""Identification and verification metrics and the threshold rule of ``--store-threshold``.

Distances are Euclidean between unit vectors (:func:`toolchain.gallery.ranking.pairwise_distances`).
Two consumers measure with them:

- export parity (:mod:`toolchain.convert.parity`): nearest-neighbour identification of the
  reference val crops against the train crops;
- ``facenet eval dataset`` (:mod:`toolchain.evaluation.dataset`): top-1 identification of val
  photos against a gallery of train photos, the verification ROC of every val face against every
  train face, and the threshold ``--store-threshold`` saves, chosen by :func:`best_pair_accuracy`.

The model's ``default_threshold`` follows a false-accept-rate policy instead
(:mod:`toolchain.evaluation.calibration`, on :func:`toolchain.evaluation.pair_metrics.tar_at_far`).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from toolchain.gallery.ranking import pairwise_distances

NO_FACE = "(no face)"
"""The predicted label of a query photo in which no face was found."""


def nearest_neighbours(queries: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of and distance to each query's nearest gallery row (unit vectors; first on ties).

    Returns:
        ``(index, distance)``, each of length ``len(queries)``.
    """
    d = pairwise_distances(queries, gallery)
    index = np.argmin(d, axis=1)
    return index, d[np.arange(len(d)), index]


@dataclass(frozen=True)
class Identification:
    """Top-1 identification: each query's true name, the predicted one, and its distance.

    Counted closed-set (the nearest person, whatever the distance) and open-set at
    :attr:`threshold` (a query farther than it is "unknown" and counts as wrong).
    """

    truth: tuple[str, ...]
    predicted: tuple[str | None, ...]
    """``None`` when no face was found in the query photo."""
    distances: tuple[float | None, ...]
    """Distance to the predicted person (``None`` with no face or an empty gallery)."""
    threshold: float = math.inf
    """The open-set threshold; infinite when only the closed-set count matters."""

    @property
    def total(self) -> int:
        """Number of queries."""
        return len(self.truth)

    @property
    def correct_closed(self) -> int:
        """Queries whose nearest person is right."""
        return sum(p == t for t, p in zip(self.truth, self.predicted, strict=True))

    @property
    def correct_open(self) -> int:
        """Queries whose nearest person is right and within the threshold."""
        return sum(p == t and d is not None and d <= self.threshold
                   for t, p, d in zip(self.truth, self.predicted, self.distances, strict=True))

    @property
    def accuracy_closed(self) -> float:
        """Share of queries whose nearest person is right."""
        return self.correct_closed / self.total if self.total else 0.0

    @property
    def accuracy_open(self) -> float:
        """Share right at the threshold (farther faces are "unknown", counted wrong)."""
        return self.correct_open / self.total if self.total else 0.0

    @property
    def confusion(self) -> dict[str, Counter[str]]:
        """``confusion[true][predicted]`` counts (closed-set; :data:`NO_FACE` when none found)."""
        table: dict[str, Counter[str]] = {}
        for true, pred in zip(self.truth, self.predicted, strict=True):
            table.setdefault(true, Counter())[pred if pred is not None else NO_FACE] += 1
        return table

    @property
    def mistakes(self) -> list[int]:
        """Indices of the queries whose nearest person is wrong (or who had no face)."""
        return [i for i, (t, p) in enumerate(zip(self.truth, self.predicted, strict=True))
                if p != t]


@dataclass(frozen=True)
class _Sweep:
    """Labelled pair distances swept from the smallest up, one point per distinct distance."""

    values: np.ndarray
    """Distinct distances, ascending."""
    tp: np.ndarray
    """Same-person pairs at most ``values[k]`` apart."""
    fp: np.ndarray
    """Different-person pairs at most ``values[k]`` apart."""
    n_same: int
    n_diff: int


def _sweep(distances: np.ndarray, same: np.ndarray) -> _Sweep:
    d = np.asarray(distances, dtype=np.float64).ravel()
    s = np.asarray(same, dtype=bool).ravel()
    n_same, n_diff = int(s.sum()), int((~s).sum())
    if n_same == 0 or n_diff == 0:
        raise ValueError(f"need both kinds of pairs, got {n_same} same and {n_diff} different")
    order = np.argsort(d, kind="stable")
    d, s = d[order], s[order]
    last_of_value = np.r_[d[1:] != d[:-1], True]
    return _Sweep(d[last_of_value], np.cumsum(s)[last_of_value], np.cumsum(~s)[last_of_value],
                  n_same, n_diff)


def best_pair_accuracy(distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """The threshold rule of ``facenet eval dataset --store-threshold``: best pair accuracy.

    Pair accuracy is the share of all pairs classified right (same-person pairs within the
    threshold, different-person pairs beyond it). The threshold is the midpoint between the
    distinct distance where accuracy peaks (the first peak) and the next one; ``1e-3`` beyond
    the largest distance when every pair is best accepted, half the smallest when none is.

    Args:
        distances: ``(P,)`` pair distances.
        same: ``(P,)`` booleans, true for same-person pairs.

    Returns:
        ``(threshold, accuracy)``.

    Raises:
        ValueError: there are no same-person or no different-person pairs.
    """
    sweep = _sweep(distances, same)
    values = sweep.values
    correct = sweep.tp + (sweep.n_diff - sweep.fp)
    accuracy = np.r_[sweep.n_diff, correct] / (sweep.n_same + sweep.n_diff)
    best = int(np.argmax(accuracy))
    cut_points = np.r_[values, values[-1] + 1e-3]
    if best == 0:
        threshold = float(values[0] / 2)
    else:
        threshold = float((cut_points[best - 1] + cut_points[best]) / 2)
    return threshold, float(accuracy[best])


@dataclass(frozen=True)
class Verification:
    """ROC summary of labelled pair distances (a pair is accepted when within the threshold)."""

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
    """Chosen by :func:`best_pair_accuracy`."""
    best_accuracy: float


def verification(distances: np.ndarray, same: np.ndarray) -> Verification:
    """ROC, AUC, equal error rate and the :func:`best_pair_accuracy` threshold of pair distances.

    The ROC has one point per distinct distance; the AUC is the trapezoid area under it; the
    equal error rate (false accepts = false rejects) is interpolated linearly between the two
    ROC points around the crossing, and so is its threshold.

    Args:
        distances: ``(P,)`` pair distances.
        same: ``(P,)`` booleans, true for same-person pairs.

    Raises:
        ValueError: there are no same-person or no different-person pairs.
    """
    sweep = _sweep(distances, same)
    tpr = np.r_[0.0, sweep.tp / sweep.n_same]
    fpr = np.r_[0.0, sweep.fp / sweep.n_diff]
    thresholds = np.r_[sweep.values[0] - 1e-6, sweep.values]
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

    best_threshold, best_accuracy = best_pair_accuracy(distances, same)
    return Verification(sweep.n_same, sweep.n_diff, fpr, tpr, thresholds, auc, eer,
                        eer_threshold, best_threshold, best_accuracy)
