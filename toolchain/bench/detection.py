"""Face detection timing: the ONNX Runtime MTCNN against the ``mtcnn`` package, same photos."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.convert.mtcnn_weights import package_detector
from toolchain.core.errors import InputError
from toolchain.core.paths import Layout
from toolchain.runtime.mtcnn import MTCNNDetector


def _summary(times: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
            "mean_ms": statistics.fmean(times)}


def bench_detection(photos: Sequence[np.ndarray], models_dir: Path | None = None,
                    warmup: int = 3) -> dict[str, Any]:
    """Time face detection per image: the ONNX runtime detector versus the ``mtcnn`` package.

    Both detectors get ``warmup`` untimed calls first; then each photo is timed with ours and
    with the package back to back, so both see the same machine load. The package is imported
    here (it needs TensorFlow); ours uses only ONNX Runtime, from ``models_dir`` (default: the
    artifacts' models directory).

    Returns:
        ``{"images": n, "ours": {median_ms, min_ms, max_ms, mean_ms}, "package": {...},
        "speedup_median": package median / our median, "speedup_per_image_median": median over
        photos of package time / our time}``.
    """
    if not photos:
        raise InputError("no photos to benchmark")
    ours = MTCNNDetector(Layout().models_dir if models_dir is None else models_dir)
    package = package_detector()
    for image in photos[:warmup]:
        ours.detect(image)
        package.detect_faces(image)
    our_times, package_times = [], []
    for image in photos:
        start = time.perf_counter()
        ours.detect(image)
        middle = time.perf_counter()
        package.detect_faces(image)
        package_times.append((time.perf_counter() - middle) * 1000.0)
        our_times.append((middle - start) * 1000.0)
    result: dict[str, Any] = {
        "images": len(photos),
        "ours": _summary(our_times),
        "package": _summary(package_times),
    }
    result["speedup_median"] = result["package"]["median_ms"] / result["ours"]["median_ms"]
    result["speedup_per_image_median"] = statistics.median(
        p / o for p, o in zip(package_times, our_times, strict=True))
    return result
