"""toolchain.core.metrics on small cases whose expected values are worked out by hand."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from toolchain.core.metrics import (
    NO_FACE,
    Identification,
    all_pair_distances,
    balanced_accuracy_midpoint,
    best_pair_accuracy,
    choose_threshold,
    nearest_neighbours,
    pairwise_distances,
    verification,
)

SQRT2 = math.sqrt(2.0)


def test_pairwise_distances_of_unit_vectors() -> None:
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    b = np.array([[1.0, 0.0], [-1.0, 0.0], [0.6, 0.8]])
    got = pairwise_distances(a, b)
    # |(1,0)-(0.6,0.8)| = sqrt(0.16 + 0.64); |(0,1)-(0.6,0.8)| = sqrt(0.36 + 0.04)
    expected = [[0.0, 2.0, math.sqrt(0.8)], [SQRT2, SQRT2, math.sqrt(0.4)]]
    assert got.dtype == np.float32 and got.shape == (2, 3)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_all_pair_distances_normalize_first() -> None:
    i, j, d = all_pair_distances(np.array([[3.0, 0.0], [0.0, 0.5], [-2.0, 0.0]], np.float32))
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 1), (0, 2), (1, 2)]
    assert d.dtype == np.float64
    np.testing.assert_allclose(d, [SQRT2, 2.0, SQRT2], atol=1e-7)


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


def test_balanced_accuracy_midpoint() -> None:
    distances = np.array([0.4, 0.1, 0.3, 0.5, 0.2])
    same = np.array([True, True, False, False, True])
    # sorted S S D S D: cutting after 0.2 accepts 2/3 same, rejects 2/2 different
    threshold, balanced = balanced_accuracy_midpoint(distances, same)
    assert threshold == pytest.approx(0.25) and balanced == pytest.approx(5 / 6)


def test_balanced_accuracy_midpoint_tie_goes_to_the_widest_gap() -> None:
    # S D S D at 0.1 0.2 0.5 0.9: after 0.1 and after 0.5 both reach 0.75; gaps 0.1 and 0.4
    threshold, balanced = balanced_accuracy_midpoint(np.array([0.1, 0.2, 0.5, 0.9]),
                                                     np.array([True, False, True, False]))
    assert threshold == pytest.approx(0.7) and balanced == 0.75


def test_choose_threshold_by_hand() -> None:
    embeddings = np.array([[3.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]], np.float32)
    t = choose_threshold(embeddings, ["a", "a", "b", "b"])
    # same pairs sqrt(0.4) (twice); nearest different pair a2-b1 sqrt(0.8); midpoint between
    assert t.value == round((math.sqrt(0.4) + math.sqrt(0.8)) / 2, 6) == 0.763441
    assert (t.same_pairs, t.different_pairs, t.balanced_accuracy) == (2, 4, 1.0)
    assert t.max_same == pytest.approx(math.sqrt(0.4), abs=1e-7)
    assert t.min_different == pytest.approx(math.sqrt(0.8), abs=1e-7)
    assert "balanced accuracy" in t.method


@pytest.mark.parametrize("persons", [["a", "a", "a"], ["a", "b", "c"]])
def test_choose_threshold_needs_two_people_and_a_pair(persons: list[str]) -> None:
    with pytest.raises(ValueError):
        choose_threshold(np.eye(3, dtype=np.float32), persons)
