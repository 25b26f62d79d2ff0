"""The machine a bench run measures: CPU model and features, library versions, the sgemm rate.

The sgemm rows are a large float32 numpy matmul, measured at the start and at the end of the run
(the spread shows how much the machine's load moved during the run); on AVX-512 CPUs also with
OpenBLAS forced onto its AVX-512 kernel (numpy's OpenBLAS may pick its AVX2 Haswell kernel for
CPUs it does not know, such as recent AMD cores). The machine's sgemm rate is the fastest of
these rows' medians, so "fraction of sgemm" never flatters a runtime.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from importlib import metadata

import numpy as np

from toolchain.core.machine import ISA_FLAGS, cpu_model, isa

__all__ = ["ISA_FLAGS", "cpu_model", "isa", "repeat", "sgemm_gflops", "timed", "versions"]

AVX512_CORETYPE = "COOPERLAKE"
"""OpenBLAS kernel forced for the AVX-512 sgemm row (AVX-512 FMA; runs on any AVX-512F CPU)."""

VERSIONED = ("numpy", "onnxruntime", "openvino", "nncf", "tensorflow-cpu", "tensorflow", "keras",
             "ai-edge-litert", "mtcnn")
"""Distributions whose installed versions the report records."""


def repeat(fn: Callable[[], object], repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn``."""
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    """One warm-up call, then the seconds of ``repeats`` timed calls."""
    fn()
    return repeat(fn, repeats)


def sgemm_gflops(n: int, repeats: int) -> list[float]:
    """GFLOP/s of ``repeats`` float32 ``n x n`` matmuls (after a warm-up)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    return [2.0 * n**3 / t / 1e9 for t in timed(lambda: a @ b, repeats)]


def versions() -> dict[str, str]:
    """Python's version and each installed distribution of :data:`VERSIONED`."""
    out = {"python": platform.python_version()}
    for dist in VERSIONED:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out
