"""The default match threshold, set by a false-accept rate over labelled photos.

A false accept (a stranger let in under an enrolled name) is the expensive error of face
recognition, so the field states operating points as a false-accept rate (FAR) and the share of
genuine pairs still accepted there (TAR; FaceNet's paper reports VAL at FAR = 1e-3). The policy
here: over every pair of labelled faces of the given sets, the threshold is the one that accepts
at most ``far`` of the impostor (different-person) pairs (:func:`toolchain.evaluation.pair_metrics.
tar_at_far`). With ``N`` impostor pairs the rate is only measured to about ``1 / N``; the result
records ``N`` so a reader can judge it.

:func:`embed_sets` detects every labelled photo once (:class:`DetectedPhotos`) and embeds its
named faces under a crop; :func:`far_threshold` applies the policy. The export calibrates the
model's ``default_threshold`` this way (with the model's ``default_crop``), and
:mod:`toolchain.evaluation.crops` compares crops with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from toolchain.core.crop import CropSpec
from toolchain.evaluation.labelled import LabelledFaces, LabelledSet, all_pairs, collect
from toolchain.evaluation.pair_metrics import FarPoint, tar_at_far
from toolchain.runtime.faces import DetectionLike, FaceDetector
from toolchain.runtime.images import read_image

POLICY_FAR = 1e-3
"""The false-accept rate of the default threshold (FaceNet's paper: VAL at FAR = 1e-3)."""


class Embeds(Protocol):
    """What embeds crops: ``(B, 160, 160, 3)`` uint8 -> ``(B, D)`` unit vectors
    (:class:`~toolchain.runtime.embedder.Embedder`)."""

    def embed(self, crops: np.ndarray) -> np.ndarray: ...


class DetectedPhotos:
    """Each labelled photo decoded and detected once, for embedding under several crops."""

    def __init__(self, detector: FaceDetector):
        self.detector = detector
        self._seen: dict[Path, tuple[np.ndarray, list[DetectionLike]]] = {}

    def get(self, path: Path) -> tuple[np.ndarray, list[DetectionLike]]:
        """The photo's RGB pixels and detections.

        Raises:
            InputError: the photo cannot be read.
        """
        if path not in self._seen:
            pixels = read_image(path).pixels
            self._seen[path] = pixels, list(self.detector.detect(pixels))
        return self._seen[path]


def embed_sets(photos: DetectedPhotos, embedder: Embeds, sets: Sequence[LabelledSet],
               crop: CropSpec, progress: Callable[[Path], None] | None = None) -> LabelledFaces:
    """The labelled faces of ``sets`` embedded under ``crop`` (see :func:`labelled.collect`)."""

    def found(path: Path) -> tuple[list[DetectionLike], Callable[[Sequence[int]], np.ndarray]]:
        pixels, detections = photos.get(path)

        def vectors(indices: Sequence[int]) -> np.ndarray:
            crops = [crop.crop(pixels, detections[i].box, detections[i].keypoints)
                     for i in indices]
            return np.asarray(embedder.embed(np.stack(crops)), np.float32)

        return detections, vectors

    return collect(sets, found, progress)


@dataclass(frozen=True)
class FarThreshold:
    """A threshold calibrated by the FAR policy, and what it was calibrated on.

    Attributes:
        value: same person if distance <= value (rounded to 6 decimals).
        far: the target false-accept rate.
        crop: the crop spec text of the faces.
        impostor_pairs: different-person pairs the rate is measured over.
        genuine_pairs: same-person pairs.
        false_accepts: impostor pairs within ``value``.
        tar: share of genuine pairs within ``value``.
        data: one line per labelled set (name, photos, faces, people).
    """

    value: float
    far: float
    crop: str
    impostor_pairs: int
    genuine_pairs: int
    false_accepts: int
    tar: float
    data: tuple[str, ...]

    @property
    def policy(self) -> str:
        """One line naming the rule, for metadata and reports."""
        return (f"largest threshold accepting at most FAR {self.far:g} of the impostor pairs "
                f"(euclidean distance of L2-normalized embeddings, crop {self.crop}): "
                f"{self.false_accepts} of {self.impostor_pairs} impostor pairs and "
                f"{self.tar:.2%} of {self.genuine_pairs} genuine pairs accepted")


def describe_sets(faces: LabelledFaces, sets: Sequence[LabelledSet]) -> tuple[str, ...]:
    """One line per set: its name, photos used, faces and people."""
    lines = []
    for labelled in sets:
        mine = faces.subset(labelled.name)
        lines.append(f"{labelled.name}: {len(set(mine.photos))} of {len(labelled.photos)} "
                     f"photos, {len(mine.names)} faces, {len(set(mine.names))} people")
    return tuple(lines)


def policy_point(distances: np.ndarray, same: np.ndarray,
                 far: float = POLICY_FAR) -> tuple[float, FarPoint]:
    """The FAR policy over labelled pair distances: the threshold as a model ships it (rounded
    to 6 decimals) and the rule's point on those pairs. The export and the out-of-sample check
    (:mod:`toolchain.evaluation.holdout`) both calibrate through it.

    Raises:
        ValueError: no pairs of one kind, or ``far`` outside [0, 1].
    """
    point = tar_at_far(distances, same, far)
    return round(point.threshold, 6), point


def far_threshold(faces: LabelledFaces, sets: Sequence[LabelledSet], crop: CropSpec,
                  far: float = POLICY_FAR) -> FarThreshold:
    """The FAR policy over every pair of ``faces``.

    Raises:
        ValueError: no pairs of one kind, or ``far`` outside [0, 1].
    """
    value, point = policy_point(*all_pairs(faces), far)
    return FarThreshold(value, far, crop.text, point.impostor_pairs, point.genuine_pairs,
                        point.false_accepts, point.tar, describe_sets(faces, sets))
