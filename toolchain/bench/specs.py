"""What the parent asks one worker process to measure (``python -m toolchain.bench SPEC RESULT``).

Each task is one dataclass; the parent writes it as JSON (:func:`encode`) and the worker reads it
back (:func:`decode`) and runs the task of its type. Paths are strings, as they travel in JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

Detector = Literal["ours", "package"]
"""The ONNX MTCNN of :mod:`toolchain.runtime.mtcnn`, or the ``mtcnn`` package it was exported
from."""


@dataclass(frozen=True)
class SgemmSpec:
    """Float32 ``n x n`` matmuls."""

    n: int
    repeats: int


@dataclass(frozen=True)
class EmbedSpec:
    """Embedding throughput of one format's model at batch 1 and 16 in its runner."""

    fmt: str
    path: str
    artifacts: str
    repeats: int
    b1_calls: int
    b16_calls: int


@dataclass(frozen=True)
class PairedSpec:
    """ONNX Runtime and OpenVINO models in one process, their runs alternated (format name ->
    model)."""

    models: dict[str, str]
    artifacts: str
    repeats: int
    b1_calls: int
    b16_calls: int


@dataclass(frozen=True)
class OrtOptionsSpec:
    """Each session setting of :data:`toolchain.bench.worker.ORT_SETTINGS` on one model."""

    path: str
    artifacts: str
    repeats: int
    b1_calls: int
    b16_calls: int


@dataclass(frozen=True)
class OrtSessionSpec:
    """Import ONNX Runtime and create one session (a fresh process measures its cold cost)."""

    path: str
    cached: bool


@dataclass(frozen=True)
class DetectSpec:
    """Face detection over photos, ms per photo."""

    detector: Detector
    photos: list[str]
    models_dir: str
    repeats: int


@dataclass(frozen=True)
class RecognizeSpec:
    """The ``recognize`` pipeline over photos (``full_resolution``: no pyramid size limit)."""

    photos: list[str]
    artifacts: str
    gallery: str
    repeats: int
    full_resolution: bool = False


@dataclass(frozen=True)
class SeedRecognizeSpec:
    """The seed-style pipeline (:class:`toolchain.bench.baselines.SeedPipeline`) over photos."""

    photos: list[str]
    keras: str
    gallery_npz: str
    repeats: int


@dataclass(frozen=True)
class SeedColdStartSpec:
    """The seed-style pipeline on one photo, once (the process's wall time is the measurement)."""

    photo: str
    keras: str
    gallery_npz: str


@dataclass(frozen=True)
class EnrollSpec:
    """Enroll ``(person, photo)`` items into a gallery (largest face of each photo)."""

    items: list[list[str]]
    artifacts: str
    gallery: str


@dataclass(frozen=True)
class VideoSpec:
    """Tracking faces in a video file (:func:`toolchain.video.track`), frames/s."""

    clip: str
    artifacts: str
    gallery: str
    every: int
    repeats: int
    frames: int | None = None
    """Frames per repetition (``None``: the whole clip)."""


TaskSpec = (SgemmSpec | EmbedSpec | PairedSpec | OrtOptionsSpec | OrtSessionSpec | DetectSpec
            | RecognizeSpec | SeedRecognizeSpec | SeedColdStartSpec | EnrollSpec | VideoSpec)

SPEC_TYPES: dict[str, type[TaskSpec]] = {cls.__name__: cls for cls in get_args(TaskSpec)}
"""Every task, by the name its JSON carries."""


def encode(spec: TaskSpec) -> str:
    """The JSON text of a task."""
    return json.dumps({"task": type(spec).__name__, "fields": asdict(spec)})


def decode(text: str) -> TaskSpec:
    """The task written by :func:`encode`.

    Raises:
        ValueError: an unknown task.
        TypeError: fields that are not the task's.
    """
    doc: dict[str, Any] = json.loads(text)
    cls = SPEC_TYPES.get(doc["task"])
    if cls is None:
        raise ValueError(f"unknown bench task {doc['task']!r}")
    return cls(**doc["fields"])
