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
  that sha256 (what runs is exactly what was optimized from the fingerprinted source; the digest
  is remembered while the file stays the same: :mod:`toolchain.core.integrity.digests`), load the
  saved graph with optimizations off and start several times faster. The cache is rebuilt when
  any key changes or the graph's bytes do not match.
* the cached graph keeps its weights in a file of their own (``<model>.optimized.data``, ONNX
  external data; its size and sha256 are in the sidecar and checked like the graph's): ONNX
  Runtime then maps the weights instead of parsing and copying 90 MB of protobuf, which halves
  session creation plus first run of the fp32 FaceNet in a fresh process (``facenet recognize
  one.jpg``). The graph and its kernels are the same, so are the embeddings, bit for bit.
* a model whose folder is read-only (a model pack shipped read-only, a container's image) has its
  cache in the user's cache folder instead (:func:`user_cache_dir`), named by the source's sha256
  so that models of several packs never collide; when that cannot be written either, the session
  runs without a cache (one warning), never fails for it.

A caller that has just hashed the model (a model pack checks every file before loading it) passes
the digest as ``sha256``, so the source is never read twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolchain.core.atomic import atomic_file, sha256_file, write_json
from toolchain.core.integrity.digests import CACHE_DIR_ENV, remembered_sha256

if TYPE_CHECKING:
    import onnxruntime

log = logging.getLogger(__name__)

OPTIMIZED_SUFFIX = ".optimized"
"""Suffix appended to a model's file name for its cached optimized graph."""

DATA_SUFFIX = ".data"
"""Suffix appended to the cached graph's file name for the file of its weights."""

EXTERNAL_MIN_BYTES = 1024
"""Initializers of at least this size go to the weights file (the small ones stay inline)."""

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
    """Where the cached optimized graph of ``model`` lives when its folder is writable."""
    return model.with_name(model.name + OPTIMIZED_SUFFIX)


def _sidecar(model: Path) -> Path:
    return model.with_name(model.name + OPTIMIZED_SUFFIX + ".json")


def _weights(optimized: Path) -> Path:
    return optimized.with_name(optimized.name + DATA_SUFFIX)


def user_cache_dir() -> Path | None:
    """Where the optimized graphs of models in read-only folders go: ``$FACENET_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/facenet-toolchain/ort``, else ``~/.cache/facenet-toolchain/ort`` (``None``
    when there is no home folder either). ``$FACENET_CACHE_DIR`` also holds the remembered model
    digests, in its ``digests`` folder (:mod:`toolchain.core.integrity.digests`)."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    except (KeyError, RuntimeError):  # no HOME and no passwd entry
        return None
    return base / "facenet-toolchain" / "ort"


@dataclass(frozen=True)
class CacheSlot:
    """Where one optimized graph, its weights and its sidecar are kept."""

    optimized: Path
    sidecar: Path

    @property
    def data(self) -> Path:
        """The graph's weights (ONNX external data), named in the graph relative to it."""
        return _weights(self.optimized)


def beside(model: Path) -> CacheSlot:
    """The cache next to ``model`` (``<model>.optimized`` and ``<model>.optimized.json``)."""
    return CacheSlot(optimized_path(model), _sidecar(model))


def in_user_cache(sha256: str) -> CacheSlot | None:
    """The cache of the model whose sha256 is ``sha256`` in :func:`user_cache_dir`."""
    folder = user_cache_dir()
    if folder is None:
        return None
    name = f"{sha256}.onnx{OPTIMIZED_SUFFIX}"
    return CacheSlot(folder / name, folder / f"{name}.json")


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
    return remembered_sha256(model)


def _cache_key(settings: OrtSettings, sha256: str) -> dict[str, Any]:
    import onnxruntime as ort

    return {
        "source_sha256": sha256,
        "onnxruntime": ort.__version__,
        "cpu_flags": _cpu_flags(),
        "graph_optimization": settings.graph_optimization,
        "weights": "external",
    }


def _cached_key_matches(model: Path, settings: OrtSettings, slot: CacheSlot,
                        sha256: str | None) -> bool:
    """Whether ``slot`` holds this source model's graph; hashes the source only when no digest is
    given and its size or mtime moved since the sidecar was written."""
    try:
        recorded = json.loads(slot.sidecar.read_text(encoding="utf-8"))
        stat = model.stat()
        sizes = slot.optimized.stat().st_size, slot.data.stat().st_size
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict) or (
            recorded.get("optimized_size"), recorded.get("data_size")) != sizes:
        return False
    for path, field in ((slot.optimized, "optimized_sha256"), (slot.data, "data_sha256")):
        if recorded.get(field) != remembered_sha256(path):
            log.warning("%s does not match its recorded sha256; rebuilding it", path.name)
            return False
    same_file = (recorded.get("source_size"), recorded.get("source_mtime_ns")) == (
        stat.st_size,
        stat.st_mtime_ns,
    )
    sha = sha256 or (recorded.get("source_sha256") if same_file else remembered_sha256(model))
    key = _cache_key(settings, str(sha))
    matches = all(recorded.get(k) == v for k, v in key.items())
    if matches and not same_file:
        recorded.update(source_size=stat.st_size, source_mtime_ns=stat.st_mtime_ns)
        try:
            write_json(slot.sidecar, recorded)
        except OSError:
            log.debug("cannot refresh %s", slot.sidecar)
    return matches


def _load_cached(model: Path, settings: OrtSettings, slot: CacheSlot, sha256: str | None
                 ) -> onnxruntime.InferenceSession | None:
    """A session on the graph cached in ``slot``, or ``None`` when it is absent, stale or
    unusable (then it is rebuilt)."""
    import onnxruntime as ort

    if not _cached_key_matches(model, settings, slot, sha256):
        return None
    try:
        return ort.InferenceSession(
            str(slot.optimized),
            session_options(settings, graph_optimization="disabled"),
            providers=["CPUExecutionProvider"],
        )
    except Exception as exc:  # any load failure means: rebuild the cache
        log.warning("cached optimized graph %s unusable (%s); rebuilding", slot.optimized.name, exc)
        return None


def _build_cache(model: Path, settings: OrtSettings, slot: CacheSlot, sha256: str | None
                 ) -> onnxruntime.InferenceSession:
    """Optimize ``model`` into a temporary folder beside ``slot`` (the graph names its weights
    file by its final name), rename the weights then the graph into place, record the sidecar.

    Raises:
        OSError: the slot's folder cannot be written (nothing is optimized then: the temporary
            files are created first).
    """
    import onnxruntime as ort

    stat = model.stat()
    with atomic_file(slot.optimized) as graph_tmp, atomic_file(slot.data) as data_tmp, \
            tempfile.TemporaryDirectory(prefix=".ort-", dir=slot.optimized.parent) as staging:
        sha = sha256 or sha256_file(model)
        staged = Path(staging) / slot.optimized.name
        opts = session_options(settings)
        opts.optimized_model_filepath = str(staged)
        opts.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", slot.data.name)
        opts.add_session_config_entry(
            "session.optimized_model_external_initializers_min_size_in_bytes",
            str(EXTERNAL_MIN_BYTES))
        session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        if (staged_data := _weights(staged)).exists():  # absent when every weight is small
            os.replace(staged_data, data_tmp)
        os.replace(staged, graph_tmp)
    record = _cache_key(settings, sha)
    record.update(
        source=model.name,
        source_size=stat.st_size,
        source_mtime_ns=stat.st_mtime_ns,
        optimized_size=slot.optimized.stat().st_size,
        optimized_sha256=sha256_file(slot.optimized),
        data_size=slot.data.stat().st_size,
        data_sha256=sha256_file(slot.data),
    )
    write_json(slot.sidecar, record)
    log.info("saved the optimized graph of %s to %s", model.name, slot.optimized)
    return session


def create_session(
    model: Path, settings: OrtSettings = DEFAULT_SETTINGS, sha256: str | None = None
) -> onnxruntime.InferenceSession:
    """A CPU session for ``model`` with ``settings``, through the optimized-graph cache.

    The cache applies when ``settings.cache_optimized`` is set and the level is not ``disabled``:
    next to the model, else (a read-only folder) in :func:`user_cache_dir`. A stale, corrupt or
    unwritable cache never fails the call: the session is then created from the source model
    directly. ``sha256``: the model's digest when the caller has just checked it (the source is
    then never hashed here).
    """
    import onnxruntime as ort

    model = Path(model)

    def plain() -> onnxruntime.InferenceSession:
        return ort.InferenceSession(str(model), session_options(settings),
                                    providers=["CPUExecutionProvider"])

    if not settings.cache_optimized or settings.graph_optimization == "disabled":
        return plain()
    here = beside(model)
    session = _load_cached(model, settings, here, sha256)
    if session is not None:
        return session
    try:
        return _build_cache(model, settings, here, sha256)
    except OSError as exc:
        log.debug("cannot cache the optimized graph next to %s (%s)", model, exc)
    sha256 = sha256 or remembered_sha256(model)
    slot = in_user_cache(sha256)
    if slot is not None:
        session = _load_cached(model, settings, slot, sha256)
        if session is not None:
            return session
        try:
            return _build_cache(model, settings, slot, sha256)
        except OSError as exc:
            log.debug("cannot cache the optimized graph in %s (%s)", slot.optimized.parent, exc)
    log.warning("cannot cache the optimized graph of %s next to it nor in the user's cache "
                "folder (set %s to a writable folder): running without it", model, CACHE_DIR_ENV)
    return plain()
