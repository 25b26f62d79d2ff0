"""Distances between face embeddings, identification and verification metrics, threshold rules.

Every comparison of embeddings in the package is a Euclidean distance between L2-normalized
vectors (0 for the same direction, 2 for opposite ones). Two consumers measure with it:

- export parity (:mod:`toolchain.convert.parity`): nearest-neighbour identification of the
  reference val crops against the train crops, and the model's ``default_threshold`` chosen by
  :func:`balanced_accuracy_midpoint` over all pairs of reference crops (:func:`choose_threshold`);
- ``facenet evaluate`` (:mod:`toolchain.runtime.evaluate`): top-1 identification of val photos
  against a gallery of train photos, the verification ROC of every val face against every train
  face, and the threshold ``--store-threshold`` saves, chosen by :func:`best_pair_accuracy`.

The two threshold rules are kept apart on purpose: each is what its consumer has always used.
Only numpy is imported.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from toolchain.core.preprocess import l2_normalize

NO_FACE = "(no face)"
"""The predicted label of a query photo in which no face was found."""


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances ``(len(a), len(b))`` between rows of two unit-vector matrices.

    Computed in float64 as ``|a|^2 + |b|^2 - 2 a.b`` (no ``(M, N, D)`` difference array, so a
    large gallery costs one matrix product) and returned as float32, the embeddings' precision.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(squared, 0.0)).astype(np.float32)


def all_pair_distances(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair ``i < j`` of rows of raw embeddings and their distance after L2 normalization.

    The distance is the norm of the float64 difference of the two unit rows: exact enough for
    a threshold that is rounded to 6 decimals and written into the exported models.

    Returns:
        ``(i, j, distance)``: row indices and float64 distances, pairs in row-major order.
    """
    e = l2_normalize(embeddings).astype(np.float64)
    i, j = np.triu_indices(len(e), k=1)
    return i, j, np.linalg.norm(e[i] - e[j], axis=-1)


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
    """The threshold rule of ``facenet evaluate --store-threshold``: best pair accuracy.

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


def balanced_accuracy_midpoint(distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """The threshold rule of the exported models' ``default_threshold``: best balanced accuracy.

    Balanced accuracy is the mean of the same-pair and the different-pair accuracy, so the
    many more different-person pairs do not outweigh the same-person ones. Candidates are the
    midpoints between consecutive sorted pair distances (the last one: the largest distance);
    the highest balanced accuracy wins, ties going to the widest gap, then the smallest distance.

    Args:
        distances: ``(P,)`` pair distances.
        same: ``(P,)`` booleans, true for same-person pairs.

    Returns:
        ``(threshold, balanced accuracy)``; the threshold is not rounded.

    Raises:
        ValueError: there are no same-person or no different-person pairs.
    """
    dist = np.asarray(distances, dtype=np.float64).ravel()
    is_same = np.asarray(same, dtype=bool).ravel()
    n_same, n_diff = int(is_same.sum()), int((~is_same).sum())
    if n_same == 0 or n_diff == 0:
        raise ValueError(f"need both kinds of pairs, got {n_same} same and {n_diff} different")
    order = np.argsort(dist, kind="stable")
    d_sorted, s_sorted = dist[order], is_same[order]
    same_below = np.cumsum(s_sorted)
    diff_below = np.cumsum(~s_sorted)
    balanced = 0.5 * (same_below / n_same + (n_diff - diff_below) / n_diff)
    gaps = np.append(np.diff(d_sorted), 0.0)
    best = int(np.lexsort((-gaps, -balanced))[0])
    return float(d_sorted[best] + gaps[best] / 2), float(balanced[best])


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


@dataclass(frozen=True)
class Threshold:
    """A default match threshold on euclidean distance between L2-normalized embeddings.

    Attributes:
        value: match if distance <= value.
        method: how it was chosen.
        same_pairs: number of same-person pairs.
        different_pairs: number of different-person pairs.
        balanced_accuracy: mean of the same- and different-pair accuracies at ``value``.
        max_same: largest same-person distance.
        min_different: smallest different-person distance.
    """

    value: float
    method: str
    same_pairs: int
    different_pairs: int
    balanced_accuracy: float
    max_same: float
    min_different: float


def choose_threshold(embeddings: np.ndarray, persons: Sequence[str]) -> Threshold:
    """The exported models' ``default_threshold``: :func:`balanced_accuracy_midpoint` on all pairs.

    Every pair of rows is a same- or different-person pair; the threshold is rounded to 6
    decimals.

    Raises:
        ValueError: fewer than two people, or no person with two rows.
    """
    labels = np.asarray(persons)
    if len(embeddings) < 2 or len(set(labels.tolist())) < 2:
        raise ValueError("need at least two people to choose a threshold")
    i, j, dist = all_pair_distances(embeddings)
    same = labels[i] == labels[j]
    if not same.any():
        raise ValueError("need at least one person with two photos to choose a threshold")
    value, balanced = balanced_accuracy_midpoint(dist, same)
    return Threshold(
        value=round(value, 6),
        method=(
            "the midpoint between consecutive sorted pair distances that maximizes balanced "
            "accuracy (ties: widest gap); euclidean distances of L2-normalized ORIGINAL-graph "
            "embeddings, all pairs of the 5-celebrity reference crops (train + val)"
        ),
        same_pairs=int(same.sum()),
        different_pairs=int((~same).sum()),
        balanced_accuracy=balanced,
        max_same=float(dist[same].max()),
        min_different=float(dist[~same].min()),
    )
