"""The int8 variant sweep (``facenet bench int8``): every way of quantizing, checked and timed.

:func:`sweep_variants` quantizes every :data:`toolchain.convert.quantize.VARIANTS` entry, checks it
and times it against the fp32 model in the same process, and writes ``reports/int8_variants.json``;
:func:`best_variant` picks what :data:`toolchain.convert.quantize.CHOSEN` records.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.convert.parity import load_reference
from toolchain.convert.quantize import (
    CHOSEN,
    MIN_COSINE,
    VARIANTS,
    Int8Check,
    Int8Variant,
    calibration_batches,
    check_int8,
    embed,
    fp32_model,
    quantize,
    run_model,
)
from toolchain.core.atomic import write_json
from toolchain.core.paths import Layout
from toolchain.core.preprocess import prewhiten

log = logging.getLogger(__name__)

VARIANTS_REPORT = "int8_variants.json"
TIMING_BATCH = 16

SPEED_TOLERANCE = 0.10
"""Variants within this fraction of the fastest accepted one count as equally fast."""


@dataclass
class VariantRecord:
    """One row of the variant sweep.

    Attributes:
        variant: how it was quantized.
        check: its accuracy (``None`` if quantization or loading failed).
        faces_per_s_b16: median batch-16 throughput.
        fp32_faces_per_s_b16: median batch-16 throughput of the fp32 model, same process.
        speedup: ratio of the two.
        size_bytes: model size.
        quantize_seconds: wall time of the quantization (including calibration).
        error: why it failed, if it did.
    """

    variant: Int8Variant
    check: Int8Check | None = None
    faces_per_s_b16: float | None = None
    fp32_faces_per_s_b16: float | None = None
    speedup: float | None = None
    size_bytes: int | None = None
    quantize_seconds: float | None = None
    error: str | None = None
    timings_b16: list[float] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        """Met the accuracy bound."""
        return self.check is not None and self.check.ok


def paired_times(
    baseline: Path, candidate: Path, x16: np.ndarray, repeats: int
) -> tuple[list[float], list[float]]:
    """Seconds per batch-16 run of two models, alternated run by run after a warm-up of each.

    Alternating keeps both series under the same machine load, so their ratio holds even when
    other processes come and go during the measurement.
    """
    from toolchain.runtime.ort_options import OrtSettings, create_session

    settings = OrtSettings(cache_optimized=False)
    sessions = [create_session(baseline, settings), create_session(candidate, settings)]
    feeds = [{s.get_inputs()[0].name: x16} for s in sessions]
    for session, feed in zip(sessions, feeds, strict=True):
        session.run(None, feed)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for session, feed, out in zip(sessions, feeds, times, strict=True):
            start = time.perf_counter()
            session.run(None, feed)
            out.append(time.perf_counter() - start)
    return times


def sweep_variants(
    layout: Layout, variants: Sequence[Int8Variant] = VARIANTS, repeats: int = 7
) -> list[VariantRecord]:
    """Quantize, check and time every variant; write ``reports/int8_variants.json``.

    Each variant's batch-16 runs alternate with fp32 runs (:func:`paired_times`), so its speedup
    is measured under the same machine load.
    """
    fp32 = fp32_model(layout)
    reference = load_reference(layout)
    batches = calibration_batches(reference)
    x = prewhiten(reference.crops)
    x16 = x[:TIMING_BATCH]
    fp32_embeddings = embed(fp32, x)
    records: list[VariantRecord] = []
    with tempfile.TemporaryDirectory(prefix="facenet-int8-sweep-") as work:
        for variant in variants:
            record = VariantRecord(variant)
            path = Path(work) / f"{variant.name}.onnx"
            try:
                start = time.perf_counter()
                quantize(fp32, path, variant, batches)
                record.quantize_seconds = time.perf_counter() - start
                record.size_bytes = path.stat().st_size
                record.check = check_int8(run_model(path, x), fp32_embeddings, reference)
                fp32_times, record.timings_b16 = paired_times(fp32, path, x16, repeats)
            except Exception as exc:  # a failing variant is a result, not a crash
                record.error = f"{type(exc).__name__}: {exc}"
                log.warning("variant %s failed: %s", variant.name, record.error)
                records.append(record)
                continue
            record.faces_per_s_b16 = TIMING_BATCH / float(np.median(record.timings_b16))
            record.fp32_faces_per_s_b16 = TIMING_BATCH / float(np.median(fp32_times))
            record.speedup = record.faces_per_s_b16 / record.fp32_faces_per_s_b16
            log.info(
                "%-28s %7.1f faces/s (x%.2f vs fp32)  %s",
                variant.name, record.faces_per_s_b16, record.speedup, record.check.describe(),
            )
            records.append(record)
    write_json(layout.reports_dir / VARIANTS_REPORT, variants_report(records))
    return records


def best_variant(records: Sequence[VariantRecord]) -> VariantRecord | None:
    """The fastest variant that met the accuracy bound.

    Variants within :data:`SPEED_TOLERANCE` of the fastest are equally fast on a noisy machine;
    among those, the one with the largest min cosine on the held-out val crops wins.
    """
    accepted = [r for r in records if r.accepted and r.speedup is not None and r.check]
    if not accepted:
        return None
    fastest = max(r.speedup or 0.0 for r in accepted)
    tied = [r for r in accepted if (r.speedup or 0.0) >= fastest * (1 - SPEED_TOLERANCE)]
    return max(tied, key=lambda r: r.check.min_cos_original_val if r.check else 0.0)


def variants_report(records: Sequence[VariantRecord]) -> dict[str, Any]:
    """The JSON document of a sweep."""
    import onnxruntime

    best = best_variant(records)
    rows = []
    for r in records:
        row: dict[str, Any] = {
            "variant": asdict(r.variant),
            "accepted": r.accepted,
            "faces_per_s_b16": r.faces_per_s_b16,
            "fp32_faces_per_s_b16": r.fp32_faces_per_s_b16,
            "speedup_vs_fp32": r.speedup,
            "size_bytes": r.size_bytes,
            "quantize_seconds": r.quantize_seconds,
            "timings_b16_s": r.timings_b16,
            "error": r.error,
        }
        if r.check is not None:
            row["check"] = asdict(r.check)
        rows.append(row)
    return {
        "onnxruntime": onnxruntime.__version__,
        "min_cosine_bound": MIN_COSINE,
        "calibration": "prewhitened TRAIN reference crops only",
        "timing": f"batch {TIMING_BATCH}, medians; fp32 and variant runs alternated",
        "chosen_in_code": CHOSEN.name,
        "speed_tolerance": SPEED_TOLERANCE,
        "best": best.variant.name if best else None,
        "variants": rows,
    }
