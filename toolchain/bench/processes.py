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
