"""Out-of-sample numbers of the default decision: calibrate on the other sets, measure on one.

The shipped ``default_threshold`` is calibrated by the FAR policy
(:func:`toolchain.evaluation.calibration.policy_point`) on every labelled set at hand, so any
accuracy measured on those sets at that threshold is in-sample: the threshold has seen the pairs
it is graded on. :func:`leave_one_set_out` gives the numbers a new user's photos can expect:
for each labelled set in turn (the *held-out* set), the threshold is calibrated by the same rule
(FAR at most ``far`` over every pair of the faces of all the *other* sets, as the export does
over all of them) and measured on the pairs of the held-out set only:

- its false-accept rate (accepted impostor pairs / impostor pairs, the counts kept) with a
  one-sided Clopper-Pearson upper bound (:func:`far_upper_bound`): "0 of 297" is not "FAR 0";
- the true-accept rate and the pair accuracy;
- leave-one-out identification among the held-out faces (:func:`identify`) where the set allows.

With ``N`` sets there are ``N`` folds (two sets: both directions); the pooled counts add the
folds up. When the ``face_recognition`` peer's faces are given, the same is done for it *and* for
this model over the faces both found (photos where either missed a named face are left out of
both), with the peer's threshold calibrated by the same rule on the same sets, and the peer's
fixed :data:`~toolchain.evaluation.peer.PEER_TOLERANCE` as it ships.

The faces come from the crop study (:mod:`toolchain.evaluation.crops`: the default crop's
embeddings and the peer's encodings); nothing is detected or embedded again here.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from toolchain.evaluation.calibration import POLICY_FAR, policy_point
from toolchain.evaluation.labelled import LabelledFaces, all_pairs
from toolchain.evaluation.pair_metrics import FarPoint
from toolchain.evaluation.peer import PEER_TOLERANCE

CONFIDENCE = 0.95
"""The confidence of the upper bound on each measured false-accept rate."""


def far_upper_bound(false_accepts: int, impostor_pairs: int,
                    confidence: float = CONFIDENCE) -> float:
    """The one-sided Clopper-Pearson upper bound of a false-accept rate.

    The largest rate ``p`` under which at most ``false_accepts`` accepted of ``impostor_pairs``
    still has probability ``1 - confidence`` (for 0 accepted: ``1 - (1 - confidence) ** (1 / n)``,
    about ``3 / n`` at 95 %). Exact binomial sums (no scipy in the runtime), bisected.

    Raises:
        ValueError: no impostor pairs, a count outside ``[0, impostor_pairs]``, or
            ``confidence`` outside (0, 1).
    """
    k, n = false_accepts, impostor_pairs
    if n < 1 or not 0 <= k <= n or not 0.0 < confidence < 1.0:
        raise ValueError(f"need 0 <= {k} <= {n}, n >= 1 and a confidence in (0, 1)")
    if k == n:
        return 1.0
    alpha = 1.0 - confidence
    log_choose = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                  for i in range(k + 1)]

    def at_most_k(p: float) -> float:
        terms = [c + i * math.log(p) + (n - i) * math.log1p(-p) for i, c in enumerate(log_choose)]
        top = max(terms)
        return math.exp(top) * math.fsum(math.exp(t - top) for t in terms)

    low, high = k / n, 1.0
    for _ in range(64):
        middle = (low + high) / 2
        if middle <= 0.0 or at_most_k(middle) > alpha:
            low = middle
        else:
            high = middle
    return high


@dataclass(frozen=True)
class PairCounts:
    """A threshold's decisions over a held-out set's pairs (or over several, pooled)."""

    impostor_pairs: int
    false_accepts: int
    far: float
    """``false_accepts / impostor_pairs``."""
    far_upper: float
    """:func:`far_upper_bound` of the two counts at :data:`CONFIDENCE`."""
    genuine_pairs: int
    true_accepts: int
    tar: float
    """``true_accepts / genuine_pairs``."""
    accuracy: float
    """Share of all pairs decided right (true accepts and rejected impostors)."""


def pair_counts(false_accepts: int, impostor_pairs: int, true_accepts: int,
                genuine_pairs: int) -> PairCounts:
    """The :class:`PairCounts` of four counts (both kinds of pairs required).

    Raises:
        ValueError: no pairs of one kind.
    """
    if impostor_pairs < 1 or genuine_pairs < 1:
        raise ValueError(f"need both kinds of pairs, got {genuine_pairs} same and "
                         f"{impostor_pairs} different")
    right = true_accepts + impostor_pairs - false_accepts
    return PairCounts(impostor_pairs, false_accepts, false_accepts / impostor_pairs,
                      far_upper_bound(false_accepts, impostor_pairs), genuine_pairs,
                      true_accepts, true_accepts / genuine_pairs,
                      right / (impostor_pairs + genuine_pairs))


@dataclass(frozen=True)
class Identified:
    """Leave-one-out identification among one set's faces at a threshold.

    Each face is a query against every other face of the set (its own photo's other faces
    included); the nearest one names it.
    """

    queries: int
    """Faces whose person has another face in the set."""
    nearest_right: int
    """Queries whose nearest face is their person's (closed set)."""
    accepted_right: int
    """Queries whose nearest face is their person's and within the threshold (open set)."""
    accuracy_closed: float
    accuracy_open: float
    strangers: int
    """Faces whose person has no other face in the set: they should come out unknown."""
    strangers_rejected: int
    """Strangers whose nearest face is beyond the threshold."""


def identify(distances: np.ndarray, names: Sequence[str], threshold: float) -> Identified | None:
    """Leave-one-out identification from :func:`~toolchain.evaluation.labelled.all_pairs`
    distances of faces named ``names``; ``None`` when no person has two faces."""
    n = len(names)
    counts = Counter(names)
    known = np.array([counts[name] > 1 for name in names], dtype=bool)
    if not known.any():
        return None
    square = np.full((n, n), np.inf)
    i, j = np.triu_indices(n, k=1)
    square[i, j] = square[j, i] = distances
    nearest = np.argmin(square, axis=1)
    gap = square[np.arange(n), nearest]
    labels = np.asarray(names)
    right = (labels[nearest] == labels) & known
    within = gap <= threshold
    queries = int(known.sum())
    return Identified(queries, int(right.sum()), int((right & within).sum()),
                      int(right.sum()) / queries, int((right & within).sum()) / queries,
                      int((~known).sum()), int((~known & ~within).sum()))


@dataclass(frozen=True)
class Decision:
    """One threshold on a held-out set: how it was set and what it decided there."""

    rule: str
    threshold: float
    calibration: FarPoint | None
    """The rule's point on the calibration pairs (``None`` for a fixed threshold)."""
    pairs: PairCounts
    identification: Identified | None


def measure(held: LabelledFaces, threshold: float, rule: str,
            calibration: FarPoint | None = None) -> Decision:
    """``threshold`` over every pair of ``held``'s faces, and leave-one-out identification.

    Raises:
        ValueError: ``held`` has no pairs of one kind.
    """
    distances, same = all_pairs(held)
    counts = pair_counts(int(np.sum(distances[~same] <= threshold)), int((~same).sum()),
                         int(np.sum(distances[same] <= threshold)), int(same.sum()))
    return Decision(rule, threshold, calibration, counts,
                    identify(distances, held.names, threshold))


def calibrated(faces: LabelledFaces, held: str, others: Sequence[str],
               far: float = POLICY_FAR) -> Decision:
    """The policy threshold of the faces of ``others`` (every pair among them, as the export),
    measured on the faces of set ``held``.

    Raises:
        ValueError: either side has no pairs of one kind.
    """
    calibration = faces.rows([i for i, s in enumerate(faces.sets) if s in others])
    threshold, point = policy_point(*all_pairs(calibration), far)
    return measure(faces.subset(held), threshold,
                   f"FAR <= {far:g} over the impostor pairs of {', '.join(others)}", point)


@dataclass(frozen=True)
class Fold:
    """One held-out set: this model on every face it found, and side by side with the peer
    over the faces both found (``None`` without a peer or when those lack a kind of pair)."""

    held_out: str
    calibrated_on: tuple[str, ...]
    faces: int
    """Faces of the held-out set this model found."""
    ours: Decision
    """This model on every face it found: the export's rule and data with one set left out."""
    both_found: int | None
    """Faces of the held-out set both found (the same-faces rows are over them)."""
    ours_same_faces: Decision | None
    peer: Decision | None
    """The peer, its threshold calibrated by the same rule on the same sets."""
    peer_fixed: Decision | None
    """The peer at its shipped tolerance."""


@dataclass(frozen=True)
class Pooled:
    """Every fold's counts added up (the same-faces rows only when every fold has them)."""

    ours: PairCounts
    ours_same_faces: PairCounts | None
    peer: PairCounts | None
    peer_fixed: PairCounts | None


def pool(decisions: Sequence[Decision]) -> PairCounts:
    """The sum of the decisions' pair counts.

    Raises:
        ValueError: no decisions.
    """
    return pair_counts(sum(d.pairs.false_accepts for d in decisions),
                       sum(d.pairs.impostor_pairs for d in decisions),
                       sum(d.pairs.true_accepts for d in decisions),
                       sum(d.pairs.genuine_pairs for d in decisions))


def _pool_every(decisions: Sequence[Decision | None]) -> PairCounts | None:
    """:func:`pool` when every fold has the decision, else ``None``."""
    present = [d for d in decisions if d is not None]
    return pool(present) if len(present) == len(decisions) else None


@dataclass(frozen=True)
class OutOfSample:
    """Leave-one-set-out over the labelled sets (see the module docstring)."""

    far: float
    """The policy's nominal false-accept rate."""
    confidence: float
    """The confidence of every ``far_upper``."""
    shipped_threshold: float
    """The model's ``default_threshold``: calibrated on every set, so in-sample on each."""
    shipped_calibrated_on: str
    """What the export calibrated it on (the model's ``threshold_data`` metadata)."""
    peer_name: str | None
    peer_tolerance: float
    folds: tuple[Fold, ...]
    pooled: Pooled
    shared_people: tuple[str, ...]
    """Names in more than one set (their faces would be on both sides of a fold)."""
    skipped: tuple[str, ...]
    """Folds (or their side-by-side rows) that could not be measured, and why."""


def same_faces(ours: LabelledFaces, peer: LabelledFaces) -> tuple[LabelledFaces,
                                                                    LabelledFaces] | None:
    """Both sides restricted to the photos where both found every named face (``None`` if they
    then disagree on whose face is where)."""
    common = set(ours.photos) & set(peer.photos)
    a = ours.rows([i for i, photo in enumerate(ours.photos) if photo in common])
    b = peer.rows([i for i, photo in enumerate(peer.photos) if photo in common])
    return (a, b) if (a.names, a.sets, a.photos) == (b.names, b.sets, b.photos) else None


def _fold(ours: LabelledFaces, both: tuple[LabelledFaces, LabelledFaces] | None, held: str,
          others: tuple[str, ...], far: float, tolerance: float, skipped: list[str]) -> Fold:
    """One fold; the same-faces rows are ``None`` (and why, added to ``skipped``) when they
    cannot be measured.

    Raises:
        ValueError: this model's faces lack a kind of pair on either side.
    """
    mine = calibrated(ours, held, others, far)
    rows: tuple[Decision | None, ...] = (None, None, None)
    count = None
    if both is not None:
        a, b = both
        try:
            rows = (calibrated(a, held, others, far), calibrated(b, held, others, far),
                    measure(b.subset(held), tolerance, f"fixed {tolerance:g}, as it ships"))
            count = len(a.subset(held).names)
        except ValueError as exc:
            skipped.append(f"{held}, side by side with the peer: {exc}")
            rows, count = (None, None, None), None
    return Fold(held, others, len(ours.subset(held).names), mine, count, *rows)


def leave_one_set_out(
    ours: LabelledFaces,
    sets: Sequence[str],
    shipped_threshold: float,
    shipped_calibrated_on: str = "",
    *,
    far: float = POLICY_FAR,
    peer: LabelledFaces | None = None,
    peer_name: str | None = None,
    peer_tolerance: float = PEER_TOLERANCE,
) -> OutOfSample | None:
    """Every fold of the labelled ``sets`` (see the module docstring); ``None`` with fewer than
    two sets that have faces.

    Args:
        ours: this model's labelled faces (the crop study's, at the default crop).
        sets: the set names, in order.
        shipped_threshold: the model's ``default_threshold``.
        shipped_calibrated_on: what it was calibrated on, for the report.
        far: the policy's false-accept rate.
        peer: the peer's labelled faces of the same photos.
        peer_name: the peer's name and version, for the report.
        peer_tolerance: the peer's shipped threshold.
    """
    names = [name for name in dict.fromkeys(sets) if name in ours.sets]
    if len(names) < 2:
        return None
    both = same_faces(ours, peer) if peer is not None else None
    folds: list[Fold] = []
    skipped: list[str] = []
    for held in names:
        others = tuple(name for name in names if name != held)
        try:
            folds.append(_fold(ours, both, held, others, far, peer_tolerance, skipped))
        except ValueError as exc:
            skipped.append(f"{held}: {exc}")
    if not folds:
        return None
    in_sets: dict[str, set[str]] = {}
    for name, set_name in zip(ours.names, ours.sets, strict=True):
        in_sets.setdefault(name, set()).add(set_name)
    return OutOfSample(
        far, CONFIDENCE, shipped_threshold, shipped_calibrated_on, peer_name, peer_tolerance,
        tuple(folds),
        Pooled(pool([f.ours for f in folds]), _pool_every([f.ours_same_faces for f in folds]),
               _pool_every([f.peer for f in folds]), _pool_every([f.peer_fixed for f in folds])),
        tuple(sorted(name for name, where in in_sets.items() if len(where) > 1)),
        tuple(skipped))
