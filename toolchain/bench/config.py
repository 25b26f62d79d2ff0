"""How much one bench run measures (``facenet bench runtimes`` options and the quick setting)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SHARED_EXAMPLES = (Path(__file__).resolve().parents[3] / "shared" / "data"
                   / "face_recognition_examples")
"""Real photos of six people next to the checkout (``photos/`` queries, ``people/<name>/``)."""


@dataclass(frozen=True)
class BenchConfig:
    """How much to measure.

    Attributes:
        repeats: timed repetitions of each measurement (after the warm-up).
        quick: the tiny setting for tests (few photos, tiny matmul, one run each).
        recognize_python: interpreter that runs ``-m toolchain recognize`` for the cold start
            (e.g. the runtime environment's, which has no TensorFlow); default: this one.
        face_recognition_python: interpreter of an environment with the ``face_recognition``
            package (``requirements/baseline.txt``); without it that baseline is not measured.
        real_photos: folder with ``photos/`` and ``people/<name>/`` (real-size photos); the
            real-size rows are skipped when it is missing.
    """

    repeats: int = 5
    quick: bool = False
    recognize_python: Path | None = None
    face_recognition_python: Path | None = None
    real_photos: Path = SHARED_EXAMPLES

    @property
    def sgemm_n(self) -> int:
        """Side of the square sgemm matrices."""
        return 256 if self.quick else 3072

    @property
    def b1_calls(self) -> int:
        """Batch-1 calls per timed repetition."""
        return 2 if self.quick else 16

    @property
    def b16_calls(self) -> int:
        """Batch-16 calls per timed repetition."""
        return 1 if self.quick else 2

    @property
    def detect_photos(self) -> int | None:
        """Photos per detection repetition (``None``: all)."""
        return 2 if self.quick else None

    @property
    def e2e_photos(self) -> int | None:
        """Photos per end-to-end repetition (``None``: all)."""
        return 2 if self.quick else None

    @property
    def e2e_repeats(self) -> int:
        """End-to-end repetitions (a seed-style pass over all photos takes minutes)."""
        return min(self.repeats, 3)

    @property
    def cold_runs(self) -> int:
        """Fresh processes per cold-start measurement."""
        return 1 if self.quick else max(3, self.repeats)

    @property
    def enroll_per_person(self) -> int | None:
        """Train photos per person enrolled into the bench gallery (``None``: all)."""
        return 1 if self.quick else None
