"""toolchain.evaluation.metrics on small cases whose expected values are worked out by hand."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from toolchain.evaluation.metrics import (
    NO_FACE,
    Identification,
    best_pair_accuracy,
    nearest_neighbours,
    verification,
)
from toolchain.evaluation.pair_metrics import (
    accuracy_at,
    far_target,
    fold_indices,
    kfold_accuracy,
    tar_at_far,
)
from toolchain.gallery.ranking import pairwise_distances

SQRT2 = math.sqrt(2.0)


def test_pairwise_distances_of_unit_vectors() -> None:
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    b = np.array([[1.0, 0.0], [-1.0, 0.0], [0.6, 0.8]])
    got = pairwise_distances(a, b)
    # |(1,0)-(0.6,0.8)| = sqrt(0.16 + 0.64); |(0,1)-(0.6,0.8)| = sqrt(0.36 + 0.04)
    expected = [[0.0, 2.0, math.sqrt(0.8)], [SQRT2, SQRT2, math.sqrt(0.4)]]
    assert got.dtype == np.float32 and got.shape == (2, 3)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_nearest_neighbours_take_the_first_of_a_tie() -> None:
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    queries = np.array([[0.6, 0.8], [0.8, 0.6], [0.0, 1.0]])
    index, distance = nearest_neighbours(queries, gallery)
    assert index.tolist() == [1, 0, 1]
    np.testing.assert_allclose(distance, [math.sqrt(0.4), math.sqrt(0.4), 0.0], atol=1e-6)


def test_identification_counts() -> None:
    ident = Identification(truth=("a", "a", "b", "c"), predicted=("a", "b", "b", None),
                           distances=(0.5, 0.4, 1.5, None), threshold=1.0)
    assert (ident.total, ident.correct_closed, ident.correct_open) == (4, 2, 1)
    assert (ident.accuracy_closed, ident.accuracy_open) == (0.5, 0.25)
    assert ident.confusion == {"a": Counter({"a": 1, "b": 1}), "b": Counter({"b": 1}),
                               "c": Counter({NO_FACE: 1})}
    assert ident.mistakes == [1, 3]


def test_identification_without_threshold_is_closed_set() -> None:
    ident = Identification(truth=("a", "b"), predicted=("a", "b"), distances=(1.9, 0.1))
    assert ident.correct_open == ident.correct_closed == 2
    empty = Identification((), (), ())
    assert (empty.total, empty.accuracy_closed, empty.accuracy_open) == (0, 0.0, 0.0)


def test_verification_separable() -> None:
    ver = verification(np.array([0.1, 0.2, 0.3, 0.4]), np.array([True, True, False, False]))
    assert (ver.pairs_same, ver.pairs_different) == (2, 2)
    np.testing.assert_allclose(ver.tpr, [0.0, 0.5, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(ver.fpr, [0.0, 0.0, 0.0, 0.5, 1.0])
    np.testing.assert_allclose(ver.thresholds, [0.1 - 1e-6, 0.1, 0.2, 0.3, 0.4])
    assert ver.auc == pytest.approx(1.0)
    assert ver.eer == pytest.approx(0.0) and ver.eer_threshold == pytest.approx(0.2)
    assert ver.best_threshold == pytest.approx(0.25) and ver.best_accuracy == 1.0


def test_verification_overlapping() -> None:
    # sorted: 0.1 same, 0.2 different, 0.3 same, 0.4 different
    ver = verification(np.array([0.1, 0.3, 0.2, 0.4]), np.array([True, True, False, False]))
    # 3 of the 4 (same, different) pairs of pairs are ordered right
    assert ver.auc == pytest.approx(0.75)
    # at 0.2 one of two same pairs is rejected and one of two different ones accepted
    assert ver.eer == pytest.approx(0.5) and ver.eer_threshold == pytest.approx(0.2)
    # accepting only 0.1 gets 3 of 4 pairs right; the first such peak wins
    assert ver.best_threshold == pytest.approx(0.15) and ver.best_accuracy == 0.75


def test_verification_tied_distances_are_one_point() -> None:
    ver = verification(np.array([0.2, 0.2, 0.5]), np.array([True, False, False]))
    np.testing.assert_allclose(ver.tpr, [0.0, 1.0, 1.0])
    np.testing.assert_allclose(ver.fpr, [0.0, 0.5, 1.0])
    assert ver.auc == pytest.approx(0.75)  # the tie counts half


def test_verification_needs_both_kinds() -> None:
    with pytest.raises(ValueError, match="both kinds"):
        verification(np.array([0.1, 0.2]), np.array([True, True]))


def test_best_pair_accuracy_edges() -> None:
    # rejecting everything is best: half the smallest distance
    assert best_pair_accuracy(np.array([0.5, 0.1]), np.array([True, False])) == (0.05, 0.5)
    # accepting everything is best: 1e-3 beyond the largest, halved
    threshold, accuracy = best_pair_accuracy(np.array([0.1, 0.2, 0.3]),
                                             np.array([False, True, True]))
    assert threshold == pytest.approx(0.3005) and accuracy == pytest.approx(2 / 3)


# Pair-protocol metrics. Eight pairs, written out by distance:
#   0.2 same, 0.4 diff, 0.5 same, 0.8 diff, 0.9 same, 1.0 diff, 1.2 diff, 1.5 diff
PAIR_D = np.array([0.2, 0.4, 0.5, 0.8, 0.9, 1.0, 1.2, 1.5])
PAIR_SAME = np.array([1, 0, 1, 0, 1, 0, 0, 0], dtype=bool)


@pytest.mark.parametrize(("far", "threshold", "tar", "false_accepts"), [
    # FAR 0 of 5 impostors: below the smallest impostor 0.4; the pair below it is 0.2 -> 0.3
    (0.0, 0.3, 1 / 3, 0),
    # 0.2 * 5 = 1 impostor may pass: below the 2nd impostor 0.8; pair below it 0.5 -> 0.65
    (0.2, 0.65, 2 / 3, 1),
    (0.39, 0.65, 2 / 3, 1),                  # floor(1.95) = 1, same point
    # 2 impostors may pass: below the 3rd impostor 1.0; pair below it 0.9 -> 0.95
    (0.4, 0.95, 1.0, 2),
    (1.0, 1.501, 1.0, 5),                    # every pair accepted: 1e-3 beyond the largest
])
def test_tar_at_far_by_hand(far: float, threshold: float, tar: float, false_accepts: int) -> None:
    point = tar_at_far(PAIR_D, PAIR_SAME, far)
    assert point.threshold == pytest.approx(threshold)
    assert point.tar == pytest.approx(tar)
    assert point.false_accepts == false_accepts
    assert point.far == pytest.approx(false_accepts / 5)
    assert (point.impostor_pairs, point.genuine_pairs, point.far_target) == (5, 3, far)
    assert far_target(far)(PAIR_D, PAIR_SAME) == pytest.approx((threshold, tar))


def test_tar_at_far_smallest_pair_is_an_impostor() -> None:
    # same 0.5, diff 0.1 and 0.9: at FAR 0 the threshold is half the impostor 0.1, TAR 0
    point = tar_at_far(np.array([0.5, 0.1, 0.9]), np.array([True, False, False]), 0.0)
    assert (point.threshold, point.tar, point.false_accepts) == (pytest.approx(0.05), 0.0, 0)


def test_far_rule_refuses_bad_input() -> None:
    assert far_target(1e-3).name == "FAR <= 0.001 over impostor pairs"
    for bad in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match="target FAR"):
            far_target(bad)
    with pytest.raises(ValueError, match="both kinds"):
        tar_at_far(np.array([0.1, 0.2]), np.array([True, True]), 0.1)


def test_accuracy_at_by_hand() -> None:
    # at 0.65: wrong are 0.4 (diff, accepted) and 0.9 (same, rejected): 6/8
    assert accuracy_at(PAIR_D, PAIR_SAME, 0.65) == 0.75
    # a distance equal to the threshold is accepted: 0.5 (same) right, still 6/8
    assert accuracy_at(PAIR_D, PAIR_SAME, 0.5) == 0.75
    # at 0.1 every same pair is rejected: 5 different pairs right of 8
    assert accuracy_at(PAIR_D, PAIR_SAME, 0.1) == 5 / 8


def test_fold_indices_split_each_kind_in_file_order() -> None:
    # same pairs at 0, 2, 4 -> runs [0, 2] and [4]; diff at 1, 3, 5, 6, 7 -> [1, 3, 5] and [6, 7]
    assert fold_indices(PAIR_SAME, 2).tolist() == [0, 0, 0, 0, 1, 0, 1, 1]
    # LFW's layout: 10 sets of 2 same then 2 different pairs -> fold f is set f
    lfw_same = np.tile([True, True, False, False], 10)
    assert fold_indices(lfw_same, 10).tolist() == np.repeat(np.arange(10), 4).tolist()


def test_kfold_accuracy_by_hand() -> None:
    # pairs: same 0.2, same 0.3, diff 0.5, diff 1.0 -> fold 0 = {0.2 s, 0.5 d}, 1 = {0.3 s, 1.0 d}
    d = np.array([0.2, 0.3, 0.5, 1.0])
    same = np.array([True, True, False, False])
    # fold 0: trained on {0.3 s, 1.0 d} -> threshold 0.65; on {0.2 s, 0.5 d}: 0.5 accepted -> 1/2
    # fold 1: trained on {0.2 s, 0.5 d} -> threshold 0.35; on {0.3 s, 1.0 d}: both right -> 1
    result = kfold_accuracy(d, same, folds=2)
    assert result.folds == 2
    assert result.thresholds == pytest.approx((0.65, 0.35))
    assert result.accuracies == pytest.approx((0.5, 1.0))
    assert (result.accuracy_mean, result.accuracy_std) == pytest.approx((0.75, 0.25))
    assert (result.threshold_mean, result.threshold_std) == pytest.approx((0.5, 0.15))
    # 3 folds of 2 + 2 pairs: the third fold is empty and left out, the result is the same
    assert kfold_accuracy(d, same, folds=3) == result


def test_kfold_accuracy_needs_two_pairs_of_each_kind() -> None:
    with pytest.raises(ValueError, match="at least 2 pairs of each kind"):
        kfold_accuracy(np.array([0.1, 0.5, 0.9]), np.array([True, False, False]))
    with pytest.raises(ValueError, match="at least 2 folds"):
        kfold_accuracy(PAIR_D, PAIR_SAME, folds=1)
