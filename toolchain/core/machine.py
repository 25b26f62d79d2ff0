"""The machine this runs on: the CPU's model and the instruction-set features that decide which
kernels the runtimes use (standard library only: nox's own Python reads it too, for the main
job's report)."""

from __future__ import annotations

import platform
from pathlib import Path

ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16",
             "amx_int8")
"""CPU flags the report lists (those that decide which kernels the runtimes can use)."""


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def isa() -> list[str]:
    """Which of :data:`ISA_FLAGS` the CPU has (empty when ``/proc/cpuinfo`` is unreadable)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return []
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines()
                  if ln.startswith("flags")), [])
    return [f for f in ISA_FLAGS if f in flags]
