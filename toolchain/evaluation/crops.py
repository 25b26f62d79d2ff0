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
           faces: int) -> Scores:
    """The :class:`Scores` of labelled pair distances.

    Raises:
        ValueError: no pairs of one kind.
    """
    ver = verification(distances, same)
    return Scores(name, faces, int(same.sum()), int((~same).sum()), ver.auc, ver.eer,
                  tuple(tar_at_far(distances, same, far) for far in REPORTED_FARS), threshold,
                  accuracy_at(distances, same, threshold),
                  int(np.sum(distances[~same] <= threshold)))


def set_scores(faces: LabelledFaces, sets: Sequence[LabelledSet], threshold: float
               ) -> tuple[Scores, ...]:
    """Scores per set (those with both kinds of pairs) and over all sets, at ``threshold``."""
    result = []
    for name in [s.name for s in sets] + [ALL_SETS]:
        mine = faces if name == ALL_SETS else faces.subset(name)
        distances, same = all_pairs(mine)
        if same.any() and (~same).any():
            result.append(scores(name, distances, same, threshold, len(mine.names)))
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

    def crop(self, text: str) -> CropScores:
        """The scores of one crop."""
        return next(c for c in self.crops if c.crop == text)


def best_crop(crops: Sequence[CropScores]) -> str:
    """The crop with the highest TAR at the policy's FAR over all pairs; ties: the lower EER."""
    return min(crops, key=lambda c: (-c.threshold.tar, c.of(ALL_SETS).eer)).crop


def _peer_rows(sets: Sequence[LabelledSet], ours: LabelledFaces, threshold: float,
               peer: PeerPhotos) -> tuple[PeerRow, ...]:
    """Both at their defaults over the faces of the photos where both found every named face."""
    theirs = collect(sets, peer.found)
    common = set(ours.photos) & set(theirs.photos)
    rows = []
    for labelled in sets:
        mine, peers = ours.subset(labelled.name), theirs.subset(labelled.name)
        a = mine.rows([i for i, photo in enumerate(mine.photos) if photo in common])
        b = peers.rows([i for i, photo in enumerate(peers.photos) if photo in common])
        d_ours, same = all_pairs(a)
        d_peer, _ = all_pairs(b)
        if a.names != b.names or not same.any() or not (~same).any():
            continue
        rows.append(PeerRow(
            labelled.name, len(same), len(a.names),
            scores(labelled.name, d_ours, same, threshold, len(a.names)),
            scores(labelled.name, d_peer, same, PEER_TOLERANCE, len(b.names)),
            len(mine.names), len(peers.names)))
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
        results.append(CropScores(text, policy, set_scores(faces, sets, policy.value)))
    default_threshold = embedder.default_threshold or results[texts.index(default_crop)
                                                               ].threshold.value
    box_faces = embedded[BOX.text]
    missing = tuple(f"{path}: {why}" for path, why in box_faces.missing)
    return CropStudy(
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        model=str(embedder.path), model_fingerprint=embedder.fingerprint, far=far,
        sets=results[0].threshold.data, crops=tuple(results), best=best_crop(results),
        default_crop=default_crop, default_threshold=default_threshold,
        previous=set_scores(box_faces, sets, PREVIOUS_THRESHOLD),
        peer=(_peer_rows(sets, embedded[default_crop], default_threshold, peer)
              if peer is not None else None),
        peer_name=peer.name if peer is not None else None,
        missing=missing,
    )
