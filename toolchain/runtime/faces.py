"""The recognizer's detector protocol and its results: faces, matches, enrollment outcomes.

:class:`FaceDetector` is what :class:`~toolchain.runtime.recognizer.Recognizer` needs of a face
detector (the ONNX MTCNN, or a test's fake); :class:`Face`, :class:`Match`, :class:`PhotoFaces`,
:class:`PhotoMatches` and :class:`EnrollOutcome` / :class:`EnrollStatus` are its results.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from toolchain.runtime.gallery import Candidate
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

    @property
    def label(self) -> str:
        """``name``, or ``"unknown"``."""
        return self.name if self.name is not None else "unknown"


@dataclass(frozen=True)
class PhotoFaces:
    """The faces of one photo, or why it could not be read."""

    path: Path
    image: LoadedImage | None
    faces: list[Face]
    error: str | None = None


@dataclass(frozen=True)
class PhotoMatches:
    """The matches of one photo, or why it could not be read."""

    path: Path
    image: LoadedImage | None
    matches: list[Match]
    error: str | None = None


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
