"""Which crop suits these weights, and how the default decision compares with a peer's.

:func:`run_study` embeds every labelled face of the given sets
(:mod:`toolchain.evaluation.labelled`) under each crop of :data:`STUDY_CROPS` (each photo detected
once), and measures over every pair of faces, per set and over all sets together: ROC AUC, EER, TAR
at FAR 1e-2 and 1e-3, and the
accuracy at the crop's own policy threshold (:mod:`toolchain.evaluation.calibration`: FAR
:data:`~toolchain.evaluation.calibration.POLICY_FAR` over all sets). The best crop is the one with
the highest TAR at the policy's FAR over all pairs (the operating point users get), ties going to
the lower EER. The model's ``default_crop`` should be it; the study reports whether it is.

It also measures, on the same photos, the ``face_recognition`` package (dlib ResNet; run in its
own environment by :mod:`toolchain.evaluation.peer`) at its default tolerance next to this model at
its default crop and threshold, over the pairs of faces both found, and the previous default (the
bare box at :data:`PREVIOUS_THRESHOLD`), so a reader sees what the policy changed.

All of that is in-sample: each threshold (and the choice of crop) is fitted on the pairs it is
scored on. With two or more sets the study also gives the out-of-sample numbers of the default
crop (:mod:`toolchain.evaluation.holdout`: leave one set out, calibrate on the others by the same
rule, measure on it), for this model and, by the same procedure on the same faces, the peer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from toolchain.core.crop import BOX, CropSpec
from toolchain.evaluation.calibration import (
    POLICY_FAR,
    DetectedPhotos,
    FarThreshold,
    embed_sets,
    far_threshold,
)
from toolchain.evaluation.holdout import OutOfSample, leave_one_set_out, same_faces
from toolchain.evaluation.labelled import LabelledFaces, LabelledSet, all_pairs, collect
from toolchain.evaluation.metrics import verification
from toolchain.evaluation.pair_metrics import FarPoint, accuracy_at, tar_at_far
from toolchain.evaluation.peer import PEER_TOLERANCE, PeerPhotos
from toolchain.runtime.embedder import Embedder

STUDY_CROPS = (
    "box", "margin=16px", "margin=32px", "margin=44px", "margin=10%", "margin=20%",
    "margin=30%", "align", "align,margin=10%", "align,margin=20%",
)
"""The crops compared: the bare box (the seed's), Sandberg's pixel margins (32 at 160 for LFW
evaluation, 44 at 182 for training), margins as a share of the box, and alignment."""

REPORTED_FARS = (1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5)
"""The false-accept rates the study gives the TAR at (the tables show 1e-2 and 1e-3, the chart
all of them)."""

ALL_SETS = "all sets"
"""The name of the scores over every pair of every set together."""

SHIPPED_DATA_KEY = "threshold_data"
"""The model metadata the export writes its calibration data into (one line per set)."""

PREVIOUS_THRESHOLD = 1.227618
"""The default threshold before the FAR policy: the balanced-accuracy midpoint over all pairs of
the 5-celebrity reference crops (bare box) of the original graph."""


@dataclass(frozen=True)
class Scores:
    """Verification over every pair of one set's labelled faces at one threshold."""

    set: str
    faces: int
    genuine_pairs: int
    impostor_pairs: int
    auc: float
    eer: float
    far_points: tuple[FarPoint, ...]
    threshold: float
    accuracy: float
    """Share of pairs decided right at :attr:`threshold`."""
    false_accepts: int
    """Impostor pairs within :attr:`threshold`."""


def scores(name: str, distances: np.ndarray, same: np.ndarray, threshold: float,
           faces: int, far: float = POLICY_FAR) -> Scores:
    """The :class:`Scores` of labelled pair distances, with the TAR at :data:`REPORTED_FARS`
    and at the policy's ``far``.

    Raises:
        ValueError: no pairs of one kind.
    """
    ver = verification(distances, same)
    fars = sorted({*REPORTED_FARS, far})
    return Scores(name, faces, int(same.sum()), int((~same).sum()), ver.auc, ver.eer,
                  tuple(tar_at_far(distances, same, f) for f in fars), threshold,
                  accuracy_at(distances, same, threshold),
                  int(np.sum(distances[~same] <= threshold)))


def set_scores(faces: LabelledFaces, sets: Sequence[LabelledSet], threshold: float,
               far: float = POLICY_FAR) -> tuple[Scores, ...]:
    """Scores per set (those with both kinds of pairs) and over all sets, at ``threshold``."""
    result = []
    for name in [s.name for s in sets] + [ALL_SETS]:
        mine = faces if name == ALL_SETS else faces.subset(name)
        distances, same = all_pairs(mine)
        if same.any() and (~same).any():
            result.append(scores(name, distances, same, threshold, len(mine.names), far))
    return tuple(result)


@dataclass(frozen=True)
class CropScores:
    """One crop: its policy threshold over all sets and its scores per set there."""

    crop: str
    threshold: FarThreshold
    sets: tuple[Scores, ...]

    def of(self, name: str) -> Scores:
        """The scores of one set (or :data:`ALL_SETS`)."""
        return next(s for s in self.sets if s.set == name)

    def tar_at(self, name: str, far: float) -> float:
        """The TAR at ``far`` over the pairs of one set (or :data:`ALL_SETS`)."""
        return next(p.tar for p in self.of(name).far_points if p.far_target == far)


@dataclass(frozen=True)
class PeerRow:
    """This model at its defaults and the peer at its default, over the same pairs of one set."""

    set: str
    pairs: int
    faces: int
    ours: Scores
    peer: Scores
    ours_faces_found: int
    peer_faces_found: int


@dataclass(frozen=True)
class CropStudy:
    """Everything :func:`run_study` measured."""

    created: str
    model: str
    model_fingerprint: str
    far: float
    sets: tuple[str, ...]
    """One line per set: name, photos used, faces, people."""
    crops: tuple[CropScores, ...]
    best: str
    default_crop: str
    default_threshold: float
    previous: tuple[Scores, ...]
    """The bare box at :data:`PREVIOUS_THRESHOLD`, per set."""
    peer: tuple[PeerRow, ...] | None
    peer_name: str | None
    missing: tuple[str, ...]
    """Labelled photos where fewer faces were found than named, or unreadable."""
    best_per_set: dict[str, tuple[str, ...]]
    """Per set: the crops :func:`best_crop`'s rule would pick on that set's pairs alone (more
    than one when they tie). The default crop is chosen over all sets, not cross-validated."""
    out_of_sample: OutOfSample | None
    """Leave-one-set-out numbers of the default crop (``None`` with fewer than two sets)."""

    def crop(self, text: str) -> CropScores:
        """The scores of one crop."""
        return next(c for c in self.crops if c.crop == text)


def best_crop(crops: Sequence[CropScores]) -> str:
    """The crop with the highest TAR at the policy's FAR over all pairs; ties: the lower EER."""
    return min(crops, key=lambda c: (-c.threshold.tar, c.of(ALL_SETS).eer)).crop


def best_per_set(crops: Sequence[CropScores], far: float) -> dict[str, tuple[str, ...]]:
    """Per set (not :data:`ALL_SETS`): every crop tied for :func:`best_crop`'s rule on its pairs."""
    result = {}
    for name in [s.set for s in crops[0].sets if s.set != ALL_SETS]:
        keys = {c.crop: (-c.tar_at(name, far), c.of(name).eer) for c in crops}
        top = min(keys.values())
        result[name] = tuple(crop for crop, key in keys.items() if key == top)
    return result


def _peer_rows(sets: Sequence[LabelledSet], ours: LabelledFaces, threshold: float,
               theirs: LabelledFaces) -> tuple[PeerRow, ...]:
    """Both at their defaults over the faces of the photos where both found every named face."""
    both = same_faces(ours, theirs)
    if both is None:
        return ()
    rows = []
    for labelled in sets:
        a, b = (side.subset(labelled.name) for side in both)
        d_ours, same = all_pairs(a)
        d_peer, _ = all_pairs(b)
        if not same.any() or not (~same).any():
            continue
        rows.append(PeerRow(
            labelled.name, len(same), len(a.names),
            scores(labelled.name, d_ours, same, threshold, len(a.names)),
            scores(labelled.name, d_peer, same, PEER_TOLERANCE, len(b.names)),
            len(ours.subset(labelled.name).names), len(theirs.subset(labelled.name).names)))
    return tuple(rows)


def run_study(
    photos: DetectedPhotos,
    embedder: Embedder,
    sets: Sequence[LabelledSet],
    crops: Sequence[str] = STUDY_CROPS,
    *,
    far: float = POLICY_FAR,
    peer: PeerPhotos | None = None,
    progress: Callable[[str], None] | None = None,
) -> CropStudy:
    """Measure every crop on the labelled sets, and the peer if given (see the module docstring).

    Args:
        photos: the detector's view of the photos (each detected once).
        embedder: the FaceNet embedder; its ``default_crop`` and ``default_threshold`` are the
            defaults compared with the peer.
        sets: the labelled sets.
        crops: crop spec texts to compare (the default crop is added if missing).
        far: the policy's false-accept rate.
        peer: the ``face_recognition`` package's faces of the same photos.
        progress: receives the name of each crop as it starts.

    Raises:
        ValueError: a crop spec is not one, or a set has no pairs of one kind.
    """
    default_crop = CropSpec.parse(embedder.default_crop or BOX.text).text
    texts = list(dict.fromkeys(CropSpec.parse(c).text for c in [*crops, default_crop, BOX.text]))
    results: list[CropScores] = []
    embedded: dict[str, LabelledFaces] = {}
    for text in texts:
        if progress is not None:
            progress(text)
        spec = CropSpec.parse(text)
        faces = embedded[text] = embed_sets(photos, embedder, sets, spec)
        policy = far_threshold(faces, sets, spec, far)
        results.append(CropScores(text, policy, set_scores(faces, sets, policy.value, far)))
    default_threshold = embedder.default_threshold or results[texts.index(default_crop)
                                                               ].threshold.value
    box_faces = embedded[BOX.text]
    missing = tuple(f"{path}: {why}" for path, why in box_faces.missing)
    theirs = collect(sets, peer.found) if peer is not None else None
    return CropStudy(
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        model=str(embedder.path), model_fingerprint=embedder.fingerprint, far=far,
        sets=results[0].threshold.data, crops=tuple(results), best=best_crop(results),
        default_crop=default_crop, default_threshold=default_threshold,
        previous=set_scores(box_faces, sets, PREVIOUS_THRESHOLD),
        peer=(_peer_rows(sets, embedded[default_crop], default_threshold, theirs)
              if theirs is not None else None),
        peer_name=peer.name if peer is not None else None,
        missing=missing,
        best_per_set=best_per_set(results, far),
        out_of_sample=leave_one_set_out(
            embedded[default_crop], [s.name for s in sets], default_threshold,
            embedder.metadata.get(SHIPPED_DATA_KEY, ""), far=far, peer=theirs,
            peer_name=peer.name if peer is not None else None),
    )
