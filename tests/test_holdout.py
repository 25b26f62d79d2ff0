"""toolchain.evaluation.holdout on small synthetic faces whose expected values are worked out
independently (direct counts, the binomial sum, the calibration module's own rule)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from toolchain.evaluation.calibration import POLICY_FAR, policy_point
from toolchain.evaluation.holdout import (
    far_upper_bound,
    identify,
    leave_one_set_out,
    pair_counts,
)
from toolchain.evaluation.labelled import LabelledFaces, all_pairs
from toolchain.evaluation.pair_metrics import tar_at_far


def binomial_at_most(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


def test_far_upper_bound_of_none_accepted_is_the_closed_form() -> None:
    for n in (1, 297, 5453):
        assert far_upper_bound(0, n) == pytest.approx(1 - 0.05 ** (1 / n), rel=1e-9)


@pytest.mark.parametrize(("k", "n"), [(1, 10), (3, 20), (9, 9143)])
def test_far_upper_bound_leaves_five_percent_below(k: int, n: int) -> None:
    bound = far_upper_bound(k, n)
    assert k / n < bound < 1
    if n <= 20:  # exact binomial sum at the bound: P(X <= k) is the 5 % left over
        assert binomial_at_most(k, n, bound) == pytest.approx(0.05, abs=1e-9)


def test_far_upper_bound_known_value_and_edges() -> None:
    # Clopper-Pearson one-sided 95 % for 1 of 10 (tables: 0.3942)
    assert far_upper_bound(1, 10) == pytest.approx(0.39416, abs=1e-5)
    assert far_upper_bound(10, 10) == 1.0
    for bad in ((1, 0), (-1, 5), (6, 5)):
        with pytest.raises(ValueError):
            far_upper_bound(*bad)
    with pytest.raises(ValueError):
        far_upper_bound(0, 5, confidence=1.0)


def test_pair_counts_rates() -> None:
    counts = pair_counts(2, 100, 9, 10)
    assert (counts.far, counts.tar) == (0.02, 0.9)
    assert counts.accuracy == pytest.approx((9 + 98) / 110)
    assert counts.far_upper == pytest.approx(far_upper_bound(2, 100))
    with pytest.raises(ValueError, match="both kinds"):
        pair_counts(0, 0, 1, 1)


def faces_on_a_line(xs: list[float], names: list[str], sets: list[str] | None = None,
                    photos: list[str] | None = None) -> LabelledFaces:
    """Unit vectors at angle x (radians): the distance of two is 2 sin(|x1 - x2| / 2)."""
    e = np.stack([np.cos(xs), np.sin(xs)], axis=1).astype(np.float32)
    n = len(xs)
    return LabelledFaces(e, list(names), sets or ["s"] * n,
                         [Path(p) for p in (photos or [f"{i}.jpg" for i in range(n)])])


def test_identify_leave_one_out() -> None:
    # a a | b b | c (alone): a at 0 and 0.1, b at 1.0 and 1.5, c at 0.3
    faces = faces_on_a_line([0.0, 0.1, 1.0, 1.5, 0.3], ["a", "a", "b", "b", "c"])
    distances, _ = all_pairs(faces)
    chord = 2 * math.sin(0.25)  # b's two faces: 0.5 rad apart, the farthest nearest pair
    found = identify(distances, faces.names, threshold=chord - 1e-4)
    assert found is not None
    # a -> a (both); b at 1.0 -> b at 1.5 (0.5) beats c at 0.3 (0.7); b at 1.5 -> b
    assert (found.queries, found.nearest_right) == (4, 4)
    assert found.accepted_right == 2  # the b pair is just beyond the threshold
    # c's nearest is a at 0.1: 0.2 rad, within the threshold: not rejected
    assert (found.strangers, found.strangers_rejected) == (1, 0)
    assert identify(distances, faces.names, threshold=0.1).strangers_rejected == 1
    alone, _ = all_pairs(faces_on_a_line([0.0, 1.0], ["a", "b"]))
    assert identify(alone, ["a", "b"], 1.0) is None


def three_sets(seed: int = 0) -> LabelledFaces:
    """Three sets of three people, four faces each, people spread around the circle."""
    rng = np.random.default_rng(seed)
    xs, names, sets, photos = [], [], [], []
    for s, set_name in enumerate("ABC"):
        for p in range(3):
            centre = (3 * s + p) * 2 * math.pi / 9
            for f in range(4):
                xs.append(centre + rng.normal(0, 0.25))
                names.append(f"{set_name}{p}")
                sets.append(set_name)
                photos.append(f"{set_name}/{p}_{f}.jpg")
    return faces_on_a_line(xs, names, sets, photos)


def direct(faces: LabelledFaces, keep: set[str], threshold: float) -> tuple[int, int, int, int]:
    mine = faces.rows([i for i, s in enumerate(faces.sets) if s in keep])
    d, same = all_pairs(mine)
    return (int(np.sum(d[~same] <= threshold)), int((~same).sum()),
            int(np.sum(d[same] <= threshold)), int(same.sum()))


def test_leave_one_set_out_over_three_sets() -> None:
    faces = three_sets()
    result = leave_one_set_out(faces, ["A", "B", "C"], 1.0, "A, B, C", far=0.05)
    assert result is not None and [f.held_out for f in result.folds] == ["A", "B", "C"]
    for fold in result.folds:
        others = {"A", "B", "C"} - {fold.held_out}
        assert set(fold.calibrated_on) == others
        # the calibration's own rule on every pair of the other sets' faces (cross-set pairs
        # included, as the export over all sets)
        calibration = faces.rows([i for i, s in enumerate(faces.sets) if s in others])
        d, same = all_pairs(calibration)
        assert fold.ours.threshold == round(tar_at_far(d, same, 0.05).threshold, 6)
        assert fold.ours.threshold == policy_point(d, same, 0.05)[0]
        point = fold.ours.calibration
        # two sets of 12 faces: 48 impostor pairs within each, 12 x 12 across
        assert point is not None and point.impostor_pairs == 48 + 48 + 144
        fa, impostors, ta, genuine = direct(faces, {fold.held_out}, fold.ours.threshold)
        assert (fold.ours.pairs.false_accepts, fold.ours.pairs.impostor_pairs) == (fa, impostors)
        assert (fold.ours.pairs.true_accepts, fold.ours.pairs.genuine_pairs) == (ta, genuine)
        assert (impostors, genuine) == (48, 18)  # 12 faces: 66 pairs, 3 x 6 of them genuine
        assert fold.faces == 12 and fold.peer is None and fold.both_found is None
    pooled = result.pooled.ours
    assert pooled.impostor_pairs == 3 * 48
    assert pooled.false_accepts == sum(f.ours.pairs.false_accepts for f in result.folds)
    assert result.pooled.peer is None and result.shared_people == () and result.skipped == ()


def test_the_peer_by_the_same_procedure_on_the_faces_both_found() -> None:
    ours = three_sets()
    peer = three_sets(seed=1)
    # the peer missed one face of set A: that photo leaves both sides of the comparison
    gone = peer.photos.index(Path("A/0_0.jpg"))
    peer = peer.rows([i for i in range(len(peer.names)) if i != gone])
    result = leave_one_set_out(ours, ["A", "B", "C"], 1.0, far=POLICY_FAR, peer=peer,
                               peer_name="peer 1.0", peer_tolerance=0.5)
    assert result is not None
    fold = result.folds[0]
    assert (fold.held_out, fold.faces, fold.both_found) == ("A", 12, 11)
    assert fold.ours_same_faces is not None and fold.peer is not None
    assert fold.peer_fixed is not None and fold.peer_fixed.threshold == 0.5
    assert fold.peer_fixed.calibration is None
    # both sides over the same pairs: 11 faces, 55 pairs, 6 + 6 + 3 genuine
    for decision in (fold.ours_same_faces, fold.peer, fold.peer_fixed):
        assert (decision.pairs.impostor_pairs, decision.pairs.genuine_pairs) == (40, 15)
    kept = peer.rows([i for i, s in enumerate(peer.sets) if s != "A"])
    d, same = all_pairs(kept)
    assert fold.peer.threshold == policy_point(d, same)[0]
    assert result.pooled.peer is not None and result.pooled.peer.impostor_pairs == 40 + 48 + 48


def test_shared_people_and_too_few_sets() -> None:
    faces = three_sets()
    faces.names[-1] = "A0"  # someone of A named again in C
    result = leave_one_set_out(faces, ["A", "B", "C"], 1.0)
    assert result is not None and result.shared_people == ("A0",)
    assert leave_one_set_out(faces.subset("A"), ["A"], 1.0) is None
