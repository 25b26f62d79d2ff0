"""What one bench run measured: sections, rows, targets and the report that holds them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

GFLOP_PER_FACE = 2.83
"""Floating-point operations of one 160x160 forward pass (2 x 1.417 G multiply-adds)."""


class Section(StrEnum):
    """The part of the report a row belongs to (in report order)."""

    SGEMM = "sgemm"
    EMBEDDING = "embedding"
    PAIRED = "paired"
    ORT_OPTIONS = "ort_options"
    DETECTION = "detection"
    END_TO_END = "end_to_end"
    COLD_START = "cold_start"
    REAL_SIZE = "real_size"
    VIDEO = "video"


LARGE_SIZE = (6000, 4000)
"""Pixels of the bench's 24 MP photo (a shared photo upscaled)."""

DETECT_PACKAGE = "mtcnn package"
DETECT_OURS = "onnx mtcnn"
E2E_SEED = "seed-style (mtcnn package + Keras predict per face)"
E2E_OURS = "facenet recognize pipeline (onnx mtcnn + ort)"
COLD_SEED = "TF pipeline (mtcnn package + Keras) recognize one.jpg"
COLD_OURS = "facenet recognize one.jpg"
OURS_REAL = "facenet recognize pipeline, default detection"
FULL_REAL = "facenet recognize pipeline, full-resolution detection"
DLIB_REAL = "face_recognition CLI per photo (dlib HOG)"
LARGE_ROW = f"facenet recognize one {LARGE_SIZE[0]}x{LARGE_SIZE[1]} photo, fresh process"
VIDEO_CLIP_RATE = "the clip's own frame rate (real time)"
VIDEO_EVERY = "facenet recognize clip.mp4 --every {every}"
UPSCALED_SIZE = (1920, 1080)
"""The size the shared clip is scaled up to for the 1080p row (more pixels to decode and scan)."""


def video_row(every: int, size: tuple[int, int] | None = None) -> str:
    """Name of the video row analyzing one frame in ``every`` (of the clip scaled to ``size``)."""
    row = VIDEO_EVERY.format(every=every)
    return row if size is None else row.replace("clip.mp4", f"clip.mp4 at {size[0]}x{size[1]}")


def embedding_row(label: str, batch: int) -> str:
    """Name of the embedding row of runtime ``label`` at ``batch`` (``ort-fp32 b16``)."""
    return f"{label} b{batch}"


def paired_row(label: str, batch: int) -> str:
    """Name of an alternated row (``ort-int8 b16 (alternated)``, ``ov-int8 b1 (alternated)``)."""
    return f"{embedding_row(label, batch)} (alternated)"


@dataclass
class Row:
    """One measurement.

    Attributes:
        section: the part of the report it belongs to.
        name: what was measured (unique within its section).
        unit: unit of ``samples``.
        samples: one value per timed repetition.
        higher_is_better: whether larger samples are faster.
        baseline: name of the row of the same section this one's ``ratio`` is against.
        ratio: speed relative to ``baseline`` (> 1: faster), medians of both.
        gflops: achieved GFLOP/s (embedding rows).
        sgemm_fraction: ``gflops`` over the machine's sgemm rate (:func:`sgemm_rate`).
        peak_rss_mb: peak RSS of the process that measured it.
        detail: anything else worth keeping (load time, faces found, ...).
    """

    section: Section
    name: str
    unit: str
    samples: list[float]
    higher_is_better: bool = True
    baseline: str | None = None
    ratio: float | None = None
    gflops: float | None = None
    sgemm_fraction: float | None = None
    peak_rss_mb: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        """Median of the samples."""
        return float(np.median(self.samples))

    @property
    def low(self) -> float:
        """Smallest sample."""
        return float(np.min(self.samples))

    @property
    def high(self) -> float:
        """Largest sample."""
        return float(np.max(self.samples))

    def as_json(self) -> dict[str, Any]:
        """The row with its statistics."""
        out = asdict(self)
        out.update(median=self.median, min=self.low, max=self.high)
        return out


def find_row(rows: list[Row], section: Section, name: str) -> Row | None:
    """The row called ``name`` in ``section``, if it was measured."""
    return next((r for r in rows if r.section == section and r.name == name), None)


def sgemm_rate(rows: list[Row]) -> float | None:
    """The machine's sgemm rate: the fastest sgemm row's median."""
    return max((r.median for r in rows if r.section == Section.SGEMM), default=None)


@dataclass
class Target:
    """One target of the issue, as a value measured in this run.

    Attributes:
        name: what the target is.
        value: the measured value, ``None`` when its rows were not measured.
        goal: the goal as written in the report (``>= 1.5x``).
        met: whether ``value`` reaches the goal.
        detail: the rows it was computed from, or ``not measured``.
    """

    name: str
    value: float | None
    goal: str
    met: bool
    detail: str


@dataclass
class BenchReport:
    """Everything one bench run measured."""

    rows: list[Row]
    targets: list[Target]
    meta: dict[str, Any]

    def row(self, section: Section, name: str) -> Row | None:
        """The row called ``name`` in ``section``."""
        return find_row(self.rows, section, name)

    def as_json(self) -> dict[str, Any]:
        """The JSON document."""
        return {
            "meta": self.meta,
            "rows": [r.as_json() for r in self.rows],
            "targets": [asdict(t) for t in self.targets],
        }
