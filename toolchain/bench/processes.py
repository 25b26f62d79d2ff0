"""The bench's child processes: wall time and their own peak RSS, worker tasks over JSON files."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolchain.bench.specs import TaskSpec, encode
from toolchain.core.errors import EnvironmentToolError

log = logging.getLogger(__name__)


@dataclass
class ProcessRun:
    """One child process: its wall time, peak RSS and (for workers) result."""

    wall_s: float
    peak_rss_mb: float
    result: dict[str, Any] = field(default_factory=dict)


def run_process(cmd: Sequence[str], env: dict[str, str] | None = None) -> ProcessRun:
    """Run ``cmd`` to completion; wall time and the child's own peak RSS (``os.wait4``).

    Raises:
        EnvironmentToolError: non-zero exit (the tail of its stderr is in the message).
    """
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read().decode("utf-8", "replace").strip().splitlines()[-5:]
            raise EnvironmentToolError(
                f"{' '.join(cmd[:4])} ... exited {proc.returncode}: " + " | ".join(tail)
            )
    return ProcessRun(wall, usage.ru_maxrss / 1024.0)


BYTECODE_PROBE = ("import importlib.util as u, os, sys; origin = u.find_spec('typer').origin; "
                  "print(int(sys.dont_write_bytecode), int(os.path.exists(u.cache_from_source("
                  "origin))))")
"""Whether the interpreter may write bytecode, and whether it holds typer's (one of the first
modules ``facenet`` imports; found, not imported, so the probe writes nothing): ``1 0`` means
every start compiles every module it imports."""


def bytecode_state(python: str) -> str:
    """How ``python`` (with this process's environment) gets the bytecode of the modules a command
    imports: ``held by the environment``, ``written by the first run`` or ``compiled at every
    start``. The last one costs a one-photo run about 0.6 s of CPU time (issue 25: an environment
    built without compiling, run with ``PYTHONDONTWRITEBYTECODE``)."""
    proc = subprocess.run([python, "-c", BYTECODE_PROBE], capture_output=True, text=True,
                          check=False)
    flags = proc.stdout.split()
    if proc.returncode != 0 or len(flags) != 2:
        return "unknown"
    no_write, held = flags
    if held == "1":
        return "held by the environment"
    return "compiled at every start" if no_write == "1" else "written by the first run"


def run_worker(spec: TaskSpec, work: Path, env: dict[str, str] | None = None) -> ProcessRun:
    """Run one bench task in a fresh ``python -m toolchain.bench`` process."""
    tag = f"{type(spec).__name__}-{time.monotonic_ns()}"
    spec_path, result_path = work / f"{tag}.spec.json", work / f"{tag}.result.json"
    spec_path.write_text(encode(spec), encoding="utf-8")
    log.info("bench: %s", type(spec).__name__)
    run = run_process(
        [sys.executable, "-m", "toolchain.bench", str(spec_path), str(result_path)], env
    )
    run.result = json.loads(result_path.read_text(encoding="utf-8"))
    return run
