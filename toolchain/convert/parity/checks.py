"""Parity checks: a format's embeddings against the ORIGINAL graph, itself and its chain parent.

:func:`compare` checks shape, dtype and values separately; :func:`format_checks` adds the
``embedding_l2`` output and the 5-celebrity identification; :func:`chain_checks` compares each
format with its parent in :data:`toolchain.convert.formats.FORMATS`, at the child's tolerance.
Everything returns :class:`Check` dataclasses; :mod:`.report` renders them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from toolchain.convert.formats import FACENET_FORMATS, Tolerance, runner, tolerance
from toolchain.convert.parity.reference import Reference
from toolchain.convert.runners import Outputs
from toolchain.core.preprocess import l2_normalize
from toolchain.evaluation.metrics import Identification, nearest_neighbours

log = logging.getLogger(__name__)

EMBEDDING_DTYPE = np.dtype("float32")

L2_OUTPUT_MAX_ABS = 1e-5
"""Largest allowed ``|embedding_l2 - l2_normalize(embedding)|`` inside one format's outputs."""

ORIGINAL = "original"
"""Name of the original Keras 2 graph's reference embeddings in reports."""

CheckKind = Literal["shape", "dtype", "values", "l2-output", "identification"]


@dataclass
class Check:
    """One verdict: a format's output checked against something.

    Attributes:
        fmt: the format checked (``keras``, ``onnx``, ... or ``original``).
        against: what it is compared with (``original``, a chain parent, ``self`` or ``labels``).
        check: what was checked.
        ok: whether it passed.
        detail: human-readable measurement and limit.
        max_abs: max ``|diff|`` of L2-normalized embeddings (``values`` checks).
        min_cos: minimum cosine similarity (``values`` checks).
        mean_cos: mean cosine similarity (``values`` checks).
    """

    fmt: str
    against: str
    check: CheckKind
    ok: bool
    detail: str
    max_abs: float | None = None
    min_cos: float | None = None
    mean_cos: float | None = None

def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity, computed in float64 (identical rows give exactly 1)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a64, axis=-1) * np.linalg.norm(b64, axis=-1)
    return np.sum(a64 * b64, axis=-1) / np.maximum(norms, 1e-300)


def compare(
    fmt: str, against: str, got: np.ndarray, expected: np.ndarray, tolerance: Tolerance
) -> list[Check]:
    """Compare raw embeddings ``got`` with ``expected``: shape, dtype and values, separately.

    Values are compared after L2 normalization (the only way embeddings are used): the maximum
    absolute element difference and the per-row cosine similarity. NaN or inf fails.

    Returns:
        Three checks (``shape``, ``dtype``, ``values``); ``values`` fails if the shapes differ.
    """
    checks = [
        Check(
            fmt,
            against,
            "shape",
            got.shape == expected.shape,
            f"{tuple(got.shape)} (expected {tuple(expected.shape)})",
        ),
        Check(
            fmt,
            against,
            "dtype",
            got.dtype == EMBEDDING_DTYPE,
            f"{got.dtype} (expected {EMBEDDING_DTYPE})",
        ),
    ]
    if got.shape != expected.shape or got.size == 0:
        checks.append(Check(fmt, against, "values", False, "not compared: shapes differ"))
        return checks
    a = l2_normalize(got.astype(np.float32))
    b = l2_normalize(expected.astype(np.float32))
    if not np.all(np.isfinite(a)):
        checks.append(Check(fmt, against, "values", False, "NaN or inf in the output"))
        return checks
    max_abs = float(np.max(np.abs(a - b)))
    cos = cosines(got, expected)
    min_cos, mean_cos = float(cos.min()), float(cos.mean())
    ok = min_cos >= tolerance.min_cos and (
        tolerance.max_abs is None or max_abs <= tolerance.max_abs
    )
    limit = f"cos >= {tolerance.min_cos}"
    if tolerance.max_abs is not None:
        limit = f"|d| <= {tolerance.max_abs:g}, {limit}"
    detail = f"max|d| {max_abs:.2e}  min cos {min_cos:.10f}  mean cos {mean_cos:.10f}  ({limit})"
    checks.append(Check(fmt, against, "values", ok, detail, max_abs, min_cos, mean_cos))
    return checks


def check_l2_output(fmt: str, raw: np.ndarray, l2: np.ndarray) -> Check:
    """Check a format's ``embedding_l2`` output is ``l2_normalize(embedding)``."""
    if raw.shape != l2.shape:
        return Check(fmt, "self", "l2-output", False, f"shape {l2.shape} != {raw.shape}")
    diff = float(np.max(np.abs(l2_normalize(raw) - l2))) if raw.size else float("nan")
    ok = bool(np.isfinite(diff) and diff <= L2_OUTPUT_MAX_ABS)
    return Check(fmt, "self", "l2-output", ok, f"max|d| {diff:.2e} (<= {L2_OUTPUT_MAX_ABS:g})")


def identify(embeddings: np.ndarray, reference: Reference) -> Identification:
    """Gallery = every train crop's embedding; each val crop takes its nearest neighbour's name.

    Distances are euclidean on L2-normalized embeddings (:mod:`toolchain.evaluation.metrics`).
    """
    e = l2_normalize(embeddings)
    splits = np.array(reference.splits)
    persons = np.array(reference.persons)
    gallery, queries = np.flatnonzero(splits == "train"), np.flatnonzero(splits == "val")
    truth = tuple(persons[queries].tolist())
    if not len(gallery):
        return Identification(truth, truth, (None,) * len(truth))
    index, distance = nearest_neighbours(e[queries], e[gallery])
    return Identification(truth, tuple(persons[gallery][index].tolist()),
                          tuple(distance.tolist()))


def identification_check(fmt: str, embeddings: np.ndarray, reference: Reference) -> Check:
    """Identification must be perfect (every val crop named right)."""
    got = identify(embeddings, reference)
    ok = got.total > 0 and got.correct_closed == got.total
    detail = f"{got.correct_closed}/{got.total} val crops identified"
    if got.mistakes:
        val_paths = [path for path, split in zip(reference.paths, reference.splits, strict=True)
                     if split == "val"]
        detail += " (" + "; ".join(
            f"{val_paths[k]}: {got.truth[k]} -> {got.predicted[k]}" for k in got.mistakes) + ")"
    return Check(fmt, "labels", "identification", ok, detail)



@dataclass
class FormatResult:
    """One format's outputs on all reference crops.

    Attributes:
        fmt: format name.
        path: the model file or directory.
        size_bytes: its size on disk.
        seconds: inference time on all crops (including load).
        outputs: ``embedding`` and ``embedding_l2`` arrays.
    """

    fmt: str
    path: Path
    size_bytes: int
    seconds: float
    outputs: dict[str, np.ndarray]


def disk_size(path: Path) -> int:
    """Bytes of a file, or of every file under a directory."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def run_format(fmt: str, path: Path, x: np.ndarray) -> Outputs:
    """Run FaceNet format ``fmt`` stored at ``path`` on prewhitened crops in its runner."""
    return runner(fmt).run(path, x)


def evaluate_format(fmt: str, path: Path, x: np.ndarray) -> FormatResult:
    """Run format ``fmt`` stored at ``path`` on prewhitened crops ``x``; time it."""
    start = time.perf_counter()
    outputs = run_format(fmt, path, x)
    seconds = time.perf_counter() - start
    log.info("%s: %d crops in %.1f s", fmt, len(x), seconds)
    return FormatResult(fmt, path, disk_size(path), seconds, outputs)


def format_checks(result: FormatResult, reference: Reference) -> list[Check]:
    """Every check of one format against the original graph and itself."""
    fmt = result.fmt
    raw = result.outputs.get("embedding")
    if raw is None:
        return [Check(fmt, ORIGINAL, "shape", False, f"no 'embedding' output in {result.path}")]
    checks = compare(fmt, ORIGINAL, raw, reference.embeddings, tolerance(fmt))
    l2 = result.outputs.get("embedding_l2")
    if l2 is None:
        checks.append(Check(fmt, "self", "l2-output", False, "no 'embedding_l2' output"))
    else:
        checks.append(check_l2_output(fmt, raw, l2))
    if raw.shape == reference.embeddings.shape:
        checks.append(identification_check(fmt, raw, reference))
    return checks


def chain_checks(results: dict[str, FormatResult]) -> list[Check]:
    """Each format against its export-chain parent (the tolerance of the child format)."""
    checks: list[Check] = []
    for fmt, spec in FACENET_FORMATS.items():
        parent = spec.parent
        if parent is not None and fmt in results and parent in results:
            got = results[fmt].outputs["embedding"]
            want = results[parent].outputs["embedding"]
            checks.extend(
                c for c in compare(fmt, parent, got, want, tolerance(fmt)) if c.check == "values"
            )
    return checks


@dataclass
class ParityReport:
    """Everything the parity run measured.

    Attributes:
        checks: every check, in report order.
        results: per-format outputs, sizes and timings.
        reference_rows: number of reference crops.
        model_defaults: the default threshold, crop and threshold policy ``facenet.onnx``
            records (:data:`toolchain.convert.parity.run.MODEL_DEFAULT_KEYS`).
    """

    checks: list[Check]
    results: dict[str, FormatResult]
    reference_rows: int
    model_defaults: dict[str, str]

    @property
    def failed(self) -> list[Check]:
        """Checks that did not pass."""
        return [c for c in self.checks if not c.ok]
