"""The recognizer's detector protocol and its results: faces, matches, comparisons, enrollments.

:class:`FaceDetector` is what :class:`~toolchain.runtime.recognizer.Recognizer` needs of a face
detector (the ONNX MTCNN, or a test's fake); :class:`Face`, :class:`Match`, :class:`PhotoFaces`,
:class:`PhotoMatches`, :class:`Comparison` / :class:`ComparedFace` and :class:`EnrollOutcome` /
:class:`EnrollStatus` are its results (:func:`enroll_outcome` decides the latter);
:class:`ThresholdSource` says where a threshold came from.

Each result has ONE serializer, its ``to_dict()``: the JSON shape the CLI (``--json``), the batch
outputs (JSON Lines, Parquet) and the HTTP API all write, declared once more as the service's
response models (``toolchain.service.schemas``). Boxes are ``{"x", "y", "width", "height"}``
(:func:`toolchain.core.boxes.box_dict`), distances rounded to 6 decimals.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from toolchain.core.boxes import box_dict, rounded
from toolchain.core.preprocess import largest_face
from toolchain.gallery import Candidate
from toolchain.runtime.images import LoadedImage


class DetectionLike(Protocol):
    """What a face detector returns per face (see ``toolchain.runtime.mtcnn.Detection``)."""

    @property
    def box(self) -> tuple[float, float, float, float]: ...

    @property
    def confidence(self) -> float: ...

    @property
    def keypoints(self) -> Mapping[str, tuple[float, float]]: ...


class FaceDetector(Protocol):
    """A face detector on RGB uint8 images."""

    def detect(self, image: np.ndarray) -> Sequence[DetectionLike]: ...


@dataclass(frozen=True)
class Face:
    """A detected face with its crop and embedding."""

    box: tuple[float, float, float, float]
    """``(x, y, width, height)`` in pixels of the upright RGB image."""
    confidence: float
    keypoints: dict[str, tuple[float, float]]
    crop: np.ndarray = field(repr=False)
    """``(160, 160, 3)`` uint8 RGB, the model's input before prewhitening."""
    embedding: np.ndarray = field(repr=False)
    """``(128,)`` float32, unit length."""

    @property
    def area(self) -> float:
        """Box area in pixels."""
        return float(self.box[2] * self.box[3])

    def to_dict(self, embedding: bool = False) -> dict[str, Any]:
        """The face in JSON: box, confidence, the five landmarks, and (if asked) the embedding."""
        found: dict[str, Any] = {
            "box": box_dict(self.box), "confidence": rounded(self.confidence),
            "landmarks": {k: [round(v[0], 2), round(v[1], 2)] for k, v in self.keypoints.items()},
        }
        if embedding:
            found["embedding"] = [round(float(v), 7) for v in self.embedding]
        return found


class ThresholdSource(enum.StrEnum):
    """Where the match threshold in force comes from, first that applies (compares equal to, and
    prints as, its value)."""

    GIVEN = "given"
    """``threshold=`` / ``--threshold``."""
    GALLERY = "calibrated, stored in the gallery"
    """``facenet eval dataset --store-threshold`` stored it in the gallery."""
    MODEL = "model metadata"
    """The model's ``default_threshold`` metadata (set by the export)."""
    BUILT_IN = "built-in default"
    """:data:`toolchain.runtime.recognizer.FALLBACK_THRESHOLD`: the model carries none."""


class CropSource(enum.StrEnum):
    """Where the crop in force comes from, first that applies (prints as its value)."""

    GIVEN = "given"
    """``crop=`` / ``--margin``, ``--align``."""
    GALLERY = "the gallery's"
    """The gallery was enrolled with it."""
    MODEL = "model metadata"
    """The model's ``default_crop`` metadata (set by the export with its threshold)."""
    BUILT_IN = "built-in default"
    """The bare box: a model without ``default_crop`` had its threshold chosen on box crops."""


@dataclass(frozen=True)
class Match:
    """A face of a query photo and who it is."""

    box: tuple[float, float, float, float]
    confidence: float
    name: str | None
    """The closest enrolled person within the threshold, or ``None`` (unknown)."""
    distance: float | None
    """Distance to the closest enrolled person (``None`` when the gallery is empty)."""
    candidates: tuple[Candidate, ...]
    """The top-k closest people, closest first, whatever the threshold."""
    margin: float | None = None
    """``threshold - distance``: positive when the face is accepted as ``name``, and how far it
    is from flipping; ``None`` when the gallery is empty."""
    runner_up: Candidate | None = None
    """The closest OTHER enrolled person (whatever ``top_k``), ``None`` if only one is enrolled:
    a runner-up close to ``distance`` means the call between the two was close."""

    @property
    def label(self) -> str:
        """``name``, or ``"unknown"``."""
        return self.name if self.name is not None else "unknown"

    def to_dict(self) -> dict[str, Any]:
        """The recognized face in JSON (``name`` is ``null`` for an unknown face, ``label``
        then says ``unknown``)."""
        return {
            "box": box_dict(self.box), "confidence": rounded(self.confidence),
            "name": self.name, "label": self.label, "distance": rounded(self.distance),
            "margin": rounded(self.margin),
            "runner_up": None if self.runner_up is None else self.runner_up.to_dict(),
            "candidates": [c.to_dict() for c in self.candidates],
        }


@dataclass(frozen=True)
class ComparedFace:
    """The face of one photo that :class:`Comparison` compared."""

    source: str
    """The photo's path (or ``"image A"`` / ``"image B"`` for an array)."""
    number: int
    """Its number among the photo's faces, 1 = the most confident (the order of
    :meth:`~toolchain.runtime.recognizer.Recognizer.faces` and of ``facenet recognize``)."""
    faces: int
    """How many faces the photo holds."""
    box: tuple[float, float, float, float]
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """The compared face in JSON."""
        return {"source": self.source, "face": self.number, "faces": self.faces,
                "box": box_dict(self.box), "confidence": rounded(self.confidence)}


@dataclass(frozen=True)
class Comparison:
    """Are two faces the same person: their distance against the threshold in force."""

    a: ComparedFace
    b: ComparedFace
    distance: float
    """Euclidean distance between the two unit embeddings (0 identical, 2 opposite)."""
    threshold: float
    threshold_source: ThresholdSource
    crop: str = "box"
    """The crop spec text both faces were embedded with."""
    crop_source: CropSource = CropSource.BUILT_IN

    @property
    def same(self) -> bool:
        """The distance is at most the threshold (the rule ``recognize`` applies)."""
        return self.distance <= self.threshold

    @property
    def decision(self) -> Literal["same", "different"]:
        """``"same"`` or ``"different"`` person."""
        return "same" if self.same else "different"

    @property
    def margin(self) -> float:
        """``threshold - distance``: positive = same person, its size how clear the call is."""
        return self.threshold - self.distance

    def to_dict(self) -> dict[str, Any]:
        """The comparison in JSON: both faces, the distance, the threshold and crop in force
        with their sources, the decision."""
        return {
            "a": self.a.to_dict(), "b": self.b.to_dict(), "distance": rounded(self.distance),
            "threshold": self.threshold, "threshold_source": self.threshold_source.value,
            "margin": rounded(self.margin), "decision": self.decision, "crop": self.crop,
            "crop_source": self.crop_source.value,
        }


@dataclass(frozen=True)
class PhotoFaces:
    """The faces of one photo, or why it could not be read."""

    path: Path
    image: LoadedImage | None
    faces: list[Face]
    error: str | None = None

    def to_dict(self, embedding: bool = False) -> dict[str, Any]:
        """``{"file", "error", "faces"}``."""
        return {"file": str(self.path), "error": self.error,
                "faces": [f.to_dict(embedding) for f in self.faces]}


@dataclass(frozen=True)
class PhotoMatches:
    """The matches of one photo, or why it could not be read."""

    path: Path
    image: LoadedImage | None
    matches: list[Match]
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"file", "error", "faces"}``, each face a :meth:`Match.to_dict`."""
        return {"file": str(self.path), "error": self.error,
                "faces": [m.to_dict() for m in self.matches]}


class EnrollStatus(str, enum.Enum):
    """What :meth:`~toolchain.runtime.recognizer.Recognizer.enroll_many` did with one photo.

    Compares equal to its value.
    """

    ADDED = "added"
    ALREADY = "already"
    """This face is in the gallery already (under :attr:`EnrollOutcome.enrolled_as`)."""
    NO_FACE = "no_face"
    TOO_SMALL = "too_small"
    """Every face is under the enrollment minimum (``min_enroll_face``)."""
    MULTIPLE_FACES = "multiple_faces"
    ERROR = "error"
    """The photo could not be read."""


@dataclass(frozen=True)
class EnrollOutcome:
    """What happened to one photo given to
    :meth:`~toolchain.runtime.recognizer.Recognizer.enroll_many`."""

    path: Path
    name: str
    status: EnrollStatus
    message: str = ""
    face: Face | None = None
    enrolled_as: str | None = None
    """For ``already``: the person the gallery holds this face under (may differ from ``name``)."""

    @property
    def ok(self) -> bool:
        """The face is in the gallery now."""
        return self.status in (EnrollStatus.ADDED, EnrollStatus.ALREADY)

    def to_dict(self) -> dict[str, Any]:
        """The outcome in JSON (``box``: the enrolled face's, ``null`` when none was)."""
        return {"file": str(self.path), "name": self.name, "status": self.status.value,
                "message": self.message or None, "enrolled_as": self.enrolled_as,
                "box": box_dict(self.face.box) if self.face is not None else None}


def enroll_outcome(name: str, photo: PhotoFaces, largest: bool, min_face: float, *,
                   largest_hint: str = "use --largest to enroll the biggest",
                   min_face_hint: str = " (--min-enroll-face)") -> EnrollOutcome:
    """What :meth:`~toolchain.runtime.recognizer.Recognizer.enroll_many` does with one photo:
    faces under ``min_face`` px (short side) do not count.

    The hints end the messages of a photo with several faces and of one whose faces are too
    small: the command line's options by default; the HTTP API names its own field (and has no
    minimum to change)."""
    if photo.error is not None:
        return EnrollOutcome(photo.path, name, EnrollStatus.ERROR, photo.error)
    if not photo.faces:
        return EnrollOutcome(photo.path, name, EnrollStatus.NO_FACE,
                             f"{photo.path}: no face found")
    usable = [f for f in photo.faces if min(f.box[2], f.box[3]) >= min_face]
    if not usable:
        biggest = photo.faces[largest_face([f.box for f in photo.faces])]
        return EnrollOutcome(
            photo.path, name, EnrollStatus.TOO_SMALL,
            f"{photo.path}: the face is {biggest.box[2]:.0f}x{biggest.box[3]:.0f} px, under "
            f"the {min_face:g} px short side needed to enroll{min_face_hint}",
        )
    if len(usable) > 1 and not largest:
        return EnrollOutcome(
            photo.path, name, EnrollStatus.MULTIPLE_FACES,
            f"{photo.path}: {len(usable)} faces; {largest_hint}",
        )
    face = usable[largest_face([f.box for f in usable])]
    return EnrollOutcome(photo.path, name, EnrollStatus.ADDED, face=face)


def faces_of(found: Sequence[tuple[Sequence[DetectionLike], Sequence[np.ndarray]]],
             vectors: np.ndarray) -> list[list[Face]]:
    """The :class:`Face` of each (detection, crop) of each photo of ``found``, with its row of
    ``vectors`` (the crops of every photo embedded as one batch, in that order)."""
    result: list[list[Face]] = []
    row = 0
    for detections, crops in found:
        faces = []
        for det, crop in zip(detections, crops, strict=True):
            faces.append(Face(
                box=tuple(float(v) for v in det.box),  # type: ignore[arg-type]
                confidence=float(det.confidence),
                keypoints={k: (float(v[0]), float(v[1])) for k, v in det.keypoints.items()},
                crop=crop, embedding=vectors[row],
            ))
            row += 1
        result.append(faces)
    return result


def matches_of(faces: Sequence[Face], ranked: Sequence[Sequence[Candidate]], threshold: float,
               top_k: int) -> list[Match]:
    """One :class:`Match` per face from its ranked gallery candidates: named when the nearest is
    within ``threshold``, ``top_k`` candidates kept, the runner-up and the margin recorded."""
    matches = []
    for face, candidates in zip(faces, ranked, strict=True):
        best = candidates[0] if candidates else None
        matches.append(Match(
            box=face.box, confidence=face.confidence,
            name=best.name if best is not None and best.distance <= threshold else None,
            distance=best.distance if best is not None else None,
            candidates=tuple(candidates[:top_k]),
            margin=threshold - best.distance if best is not None else None,
            runner_up=candidates[1] if len(candidates) > 1 else None,
        ))
    return matches
