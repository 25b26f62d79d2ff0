"""Pair-protocol metrics: accuracy at a threshold, TAR at a target FAR, k-fold accuracy.

What ``facenet eval pairs FILE`` reports (LFW-style verification of labelled photo pairs) and
the ``--far`` threshold rule: the field states a face verifier's operating point as a true-accept
rate (TAR) at a false-accept rate (FAR) over impostor pairs, as FaceNet's paper (VAL at FAR =
1e-3), and its best-accuracy threshold cross-validated over 10 folds, as Sandberg's
``validate_on_lfw``. A pair is accepted when its distance is at most the threshold, as in
:mod:`toolchain.evaluation.metrics`, whose :func:`~toolchain.evaluation.metrics.best_pair_accuracy`
picks the per-fold thresholds. Only numpy is imported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from toolchain.evaluation.metrics import best_pair_accuracy


def _pairs(distances: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat float64 distances and booleans; both kinds of pairs required."""
    d = np.asarray(distances, dtype=np.float64).ravel()
    s = np.asarray(same, dtype=bool).ravel()
    n_same, n_diff = int(s.sum()), int((~s).sum())
    if n_same == 0 or n_diff == 0:
        raise ValueError(f"need both kinds of pairs, got {n_same} same and {n_diff} different")
    return d, s


def accuracy_at(distances: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """Share of pairs right at ``threshold``: same-person pairs within it, others beyond it."""
    d = np.asarray(distances, dtype=np.float64).ravel()
    s = np.asarray(same, dtype=bool).ravel()
    if not len(d):
        raise ValueError("no pairs")
    return float(np.mean((d <= threshold) == s))


@dataclass(frozen=True)
class FarPoint:
    """The threshold that accepts at most a target share of impostor pairs, and the TAR there.

    With ``impostor_pairs`` different-person pairs the smallest non-zero FAR measurable is
    ``1 / impostor_pairs``; a target below it means no impostor pair may be accepted.
    """

    far_target: float
    threshold: float
    tar: float
    """Share of same-person pairs within the threshold (true-accept rate)."""
    far: float
    """Share of different-person pairs within the threshold (achieved false-accept rate)."""
    false_accepts: int
    impostor_pairs: int
    genuine_pairs: int


def tar_at_far(distances: np.ndarray, same: np.ndarray, far: float) -> FarPoint:
    """The threshold at false-accept rate ``<= far`` over the impostor (different-person) pairs.

    At most ``k = floor(far * impostors)`` impostor pairs may be accepted, so the threshold
    lies below the ``(k+1)``-th smallest impostor distance ``d``: it is the midpoint between
    ``d`` and the largest pair distance (of either kind) below ``d``, or ``d / 2`` when no pair
    is below it; ``1e-3`` beyond the largest distance when ``k`` covers every impostor pair.

    Raises:
        ValueError: ``far`` outside [0, 1], or no pairs of one kind.
    """
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"the target FAR must be in [0, 1], got {far}")
    d, s = _pairs(distances, same)
    impostors = np.sort(d[~s])
    allowed = math.floor(far * len(impostors) + 1e-9)
    if allowed >= len(impostors):
        threshold = float(d.max() + 1e-3)
    else:
        limit = impostors[allowed]
        below = d[d < limit]
        threshold = float((below.max() + limit) / 2 if len(below) else limit / 2)
    false_accepts = int(np.sum(impostors <= threshold))
    return FarPoint(far, threshold, float(np.mean(d[s] <= threshold)),
                    false_accepts / len(impostors), false_accepts, len(impostors), int(s.sum()))


@dataclass(frozen=True)
class FarTarget:
    """The threshold rule "FAR at most ``far`` over the impostor pairs" (see :func:`tar_at_far`).

    Called like :func:`best_pair_accuracy`: ``rule(distances, same) -> (threshold, TAR)``.
    """

    far: float

    @property
    def name(self) -> str:
        """How the rule is described in reports and gallery notes."""
        return f"FAR <= {self.far:g} over impostor pairs"

    def __call__(self, distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
        point = tar_at_far(distances, same, self.far)
        return point.threshold, point.tar


def far_target(far: float) -> FarTarget:
    """The named threshold rule of a target false-accept rate (``--far``).

    Raises:
        ValueError: ``far`` outside [0, 1].
    """
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"the target FAR must be in [0, 1], got {far}")
    return FarTarget(far)


def fold_indices(same: np.ndarray, folds: int = 10) -> np.ndarray:
    """The fold (``0 .. folds-1``) of each pair: each kind split into contiguous file-order runs.

    The same-person pairs, in their order, are cut into ``folds`` contiguous runs (the first
    ``n % folds`` one pair longer, like ``numpy.array_split``), and so are the different-person
    pairs; fold ``f`` takes run ``f`` of each. On LFW's ``pairs.txt`` (10 sets of ``n`` same then
    ``n`` different pairs) these are exactly LFW's 10 folds; on any file every fold keeps both
    kinds when there are enough. No randomness: the same file gives the same folds.
    """
    s = np.asarray(same, dtype=bool).ravel()
    fold = np.empty(len(s), dtype=np.int64)
    for kind in (True, False):
        where = np.flatnonzero(s == kind)
        for f, part in enumerate(np.array_split(where, folds)):
            fold[part] = f
    return fold


@dataclass(frozen=True)
class KFoldAccuracy:
    """Cross-validated best-accuracy threshold, as Sandberg's ``validate_on_lfw``.

    ``accuracy_std`` and ``threshold_std`` are population standard deviations (``numpy.std``,
    as there); folds without any pair are left out.
    """

    folds: int
    thresholds: tuple[float, ...]
    """Per fold: the :func:`best_pair_accuracy` threshold of the other folds' pairs."""
    accuracies: tuple[float, ...]
    """Per fold: the accuracy of that threshold on the fold's own pairs."""

    @property
    def accuracy_mean(self) -> float:
        """Mean of the held-out accuracies."""
        return float(np.mean(self.accuracies))

    @property
    def accuracy_std(self) -> float:
        """Standard deviation of the held-out accuracies."""
        return float(np.std(self.accuracies))

    @property
    def threshold_mean(self) -> float:
        """Mean of the per-fold thresholds."""
        return float(np.mean(self.thresholds))

    @property
    def threshold_std(self) -> float:
        """Standard deviation of the per-fold thresholds."""
        return float(np.std(self.thresholds))


def kfold_accuracy(distances: np.ndarray, same: np.ndarray, folds: int = 10) -> KFoldAccuracy:
    """Pick the threshold on all folds but one, measure its accuracy on that one, for each fold.

    Folds are :func:`fold_indices`; each threshold is :func:`best_pair_accuracy` on the other
    folds, each accuracy :func:`accuracy_at` on the held-out fold.

    Raises:
        ValueError: fewer than 2 folds, or fewer than 2 pairs of either kind (some training
            part would then miss that kind).
    """
    d = np.asarray(distances, dtype=np.float64).ravel()
    s = np.asarray(same, dtype=bool).ravel()
    n_same, n_diff = int(s.sum()), int((~s).sum())
    if folds < 2:
        raise ValueError(f"need at least 2 folds, got {folds}")
    if n_same < 2 or n_diff < 2:
        raise ValueError(f"10-fold accuracy needs at least 2 pairs of each kind, got {n_same} "
                         f"same and {n_diff} different")
    fold = fold_indices(s, folds)
    thresholds, accuracies = [], []
    for f in range(folds):
        test = fold == f
        if not test.any():
            continue
        threshold, _ = best_pair_accuracy(d[~test], s[~test])
        thresholds.append(threshold)
        accuracies.append(accuracy_at(d[test], s[test], threshold))
    return KFoldAccuracy(len(accuracies), tuple(thresholds), tuple(accuracies))
