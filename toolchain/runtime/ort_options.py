"""ONNX Runtime session settings chosen from measurements, and a cached pre-optimized model.

Measured with ``facenet bench`` (section ``ort_options`` of ``artifacts/reports/bench.json``) on
the 2-core AVX2 machine the toolchain targets:

* ``intra_op_num_threads`` = the cores this process may run on: one thread per core is the fastest
  at batch 16 and never slower at batch 1; more threads than cores only adds contention.
* ``inter_op_num_threads`` = 1 with sequential execution: the FaceNet and MTCNN graphs are chains
  of convolutions, each of which already uses every core, so running branches in parallel only
  makes the branch kernels fight over the same cores.
* graph optimization level ``all``: the NCHWc layout transform and conv+activation fusions are the
  difference between the extended and all levels at batch 16.
* the ``all`` optimizations cost most of the session creation time of a fresh process; they are
  applied once and the optimized graph is saved next to the model (``<model>.optimized``) with a
  sidecar (``<model>.optimized.json``) recording the source's sha256, the ONNX Runtime version and
  the CPU's instruction-set flags, and the optimized graph's own sha256. Later sessions check
  that sha256 (what runs is exactly what was optimized from the fingerprinted source), load the
  saved graph with optimizations off and start several times faster. The cache is rebuilt when
  any key changes or the graph's bytes do not match, and skipped (with a warning) when the models
  directory is read-only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolchain.core.atomic import atomic_file, sha256_file, write_json

if TYPE_CHECKING:
    import onnxruntime

log = logging.getLogger(__name__)

OPTIMIZED_SUFFIX = ".optimized"
"""Suffix appended to a model's file name for its cached optimized graph."""

GRAPH_LEVELS = ("disabled", "basic", "extended", "all")
"""Graph optimization levels, as named in :class:`OrtSettings`."""

EXECUTION_MODES = ("sequential", "parallel")
"""Execution modes, as named in :class:`OrtSettings`."""


def core_count() -> int:
    """Cores this process may run on (CPU affinity, which also reflects container limits)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class OrtSettings:
    """What a session is created with.

    Attributes:
        intra_op_threads: threads inside one operator; 0 means :func:`core_count`.
        inter_op_threads: threads running independent operators (parallel mode only).
        graph_optimization: one of :data:`GRAPH_LEVELS`.
        execution_mode: one of :data:`EXECUTION_MODES`.
        allow_spinning: intra-op threads busy-wait between operators instead of sleeping.
        cache_optimized: save the optimized graph next to the model and reuse it.
        enable_mem_pattern: pre-plan memory from the first run's shapes (off for models fed
            many input shapes, such as MTCNN's P-Net over an image pyramid).
    """

    intra_op_threads: int = 0
    inter_op_threads: int = 1
    graph_optimization: str = "all"
    execution_mode: str = "sequential"
    allow_spinning: bool = True
    cache_optimized: bool = True
    enable_mem_pattern: bool = True

    def __post_init__(self) -> None:
        if self.graph_optimization not in GRAPH_LEVELS:
            raise ValueError(f"graph_optimization must be one of {GRAPH_LEVELS}")
        if self.execution_mode not in EXECUTION_MODES:
            raise ValueError(f"execution_mode must be one of {EXECUTION_MODES}")
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise ValueError("thread counts must be >= 0")

    def describe(self) -> dict[str, Any]:
        """The settings with the thread count resolved, for reports."""
        out = asdict(self)
        out["intra_op_threads"] = self.intra_op_threads or core_count()
        return out


DEFAULT_SETTINGS = OrtSettings()
"""The settings every runtime session uses unless told otherwise (see the module docstring)."""


def session_options(
    settings: OrtSettings = DEFAULT_SETTINGS, graph_optimization: str | None = None
) -> onnxruntime.SessionOptions:
    """Build ``SessionOptions`` from ``settings`` (``graph_optimization`` overrides its level)."""
    import onnxruntime as ort

    levels = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = settings.intra_op_threads or core_count()
    opts.inter_op_num_threads = settings.inter_op_threads
    opts.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL
        if settings.execution_mode == "parallel"
        else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    opts.graph_optimization_level = levels[graph_optimization or settings.graph_optimization]
    opts.enable_mem_pattern = settings.enable_mem_pattern
    opts.add_session_config_entry(
        "session.intra_op.allow_spinning", "1" if settings.allow_spinning else "0"
    )
    opts.log_severity_level = 3
    return opts


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = sorted(line.split(":", 1)[1].split())
                    return hashlib.sha256(" ".join(flags).encode()).hexdigest()[:16]
    except OSError:
        pass
    return platform.processor() or platform.machine()


def optimized_path(model: Path) -> Path:
    """Where the cached optimized graph of ``model`` lives."""
    return model.with_name(model.name + OPTIMIZED_SUFFIX)


def _sidecar(model: Path) -> Path:
    return model.with_name(model.name + OPTIMIZED_SUFFIX + ".json")


def model_sha256(model: Path) -> str:
    """sha256 of ``model``, from the cache sidecar when the file's size and mtime still match it.

    Hashing the whole model is a noticeable part of a fresh process's start; a process that has
    just created a session through :func:`create_session` gets the digest for free.
    """
    model = Path(model)
    try:
        recorded = json.loads(_sidecar(model).read_text(encoding="utf-8"))
        stat = model.stat()
        if (
            isinstance(recorded, dict)
            and (recorded.get("source_size"), recorded.get("source_mtime_ns"))
            == (stat.st_size, stat.st_mtime_ns)
            and isinstance(recorded.get("source_sha256"), str)
        ):
            return str(recorded["source_sha256"])
    except (OSError, ValueError):
        pass
    return sha256_file(model)


def _cache_key(model: Path, settings: OrtSettings, sha256: str) -> dict[str, Any]:
    import onnxruntime as ort

    return {
        "source_sha256": sha256,
        "onnxruntime": ort.__version__,
        "cpu_flags": _cpu_flags(),
        "graph_optimization": settings.graph_optimization,
    }


def _cached_key_matches(model: Path, settings: OrtSettings) -> bool:
    """Whether the sidecar describes this source model; hashes it only if size or mtime moved."""
    sidecar, optimized = _sidecar(model), optimized_path(model)
    try:
        recorded = json.loads(sidecar.read_text(encoding="utf-8"))
        stat, opt_size = model.stat(), optimized.stat().st_size
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict) or recorded.get("optimized_size") != opt_size:
        return False
    if recorded.get("optimized_sha256") != sha256_file(optimized):
        log.warning("%s does not match its recorded sha256; rebuilding it", optimized.name)
        return False
    same_file = (recorded.get("source_size"), recorded.get("source_mtime_ns")) == (
        stat.st_size,
        stat.st_mtime_ns,
    )
    sha = recorded.get("source_sha256") if same_file else sha256_file(model)
    key = _cache_key(model, settings, str(sha))
    matches = all(recorded.get(k) == v for k, v in key.items())
    if matches and not same_file:
        recorded.update(source_size=stat.st_size, source_mtime_ns=stat.st_mtime_ns)
        try:
            write_json(sidecar, recorded)
        except OSError:
            log.debug("cannot refresh %s", sidecar)
    return matches


def _build_cache(model: Path, settings: OrtSettings) -> onnxruntime.InferenceSession:
    """Optimize ``model`` into a temporary sibling, rename it into place, record the sidecar."""
    import onnxruntime as ort

    optimized = optimized_path(model)
    stat = model.stat()
    sha = sha256_file(model)
    with atomic_file(optimized) as tmp:
        opts = session_options(settings)
        opts.optimized_model_filepath = str(tmp)
        session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    record = _cache_key(model, settings, sha)
    record.update(
        source=model.name,
        source_size=stat.st_size,
        source_mtime_ns=stat.st_mtime_ns,
        optimized_size=optimized.stat().st_size,
        optimized_sha256=sha256_file(optimized),
    )
    write_json(_sidecar(model), record)
    log.info("saved the optimized graph of %s to %s", model.name, optimized.name)
    return session


def create_session(
    model: Path, settings: OrtSettings = DEFAULT_SETTINGS
) -> onnxruntime.InferenceSession:
    """A CPU session for ``model`` with ``settings``, through the optimized-graph cache.

    The cache applies when ``settings.cache_optimized`` is set and the level is not ``disabled``.
    A stale, corrupt or unwritable cache never fails the call: the session is then created from
    the source model directly.
    """
    import onnxruntime as ort

    model = Path(model)
    providers = ["CPUExecutionProvider"]
    if not settings.cache_optimized or settings.graph_optimization == "disabled":
        return ort.InferenceSession(str(model), session_options(settings), providers=providers)
    if _cached_key_matches(model, settings):
        try:
            return ort.InferenceSession(
                str(optimized_path(model)),
                session_options(settings, graph_optimization="disabled"),
                providers=providers,
            )
        except Exception as exc:  # any load failure means: rebuild the cache
            log.warning("cached optimized graph %s unusable (%s); rebuilding",
                        optimized_path(model).name, exc)
    try:
        return _build_cache(model, settings)
    except OSError as exc:
        log.warning("cannot cache the optimized graph next to %s (%s)", model, exc)
        return ort.InferenceSession(str(model), session_options(settings), providers=providers)
