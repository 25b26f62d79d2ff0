"""``facenet model convert``: any legacy Keras ``.h5`` to the chosen formats, with proof.

:func:`convert_file` refuses everything it can before writing anything, in this order: the output
directory (it must be new, empty, or an earlier ``convert`` output, which is replaced whole), the
file (:mod:`toolchain.legacy`: read with h5py, config parsed), its code (exit 5 unless every
Lambda is catalogue-vetted or mapped with ``--lambda``), its layers (exit 3: ``unsupported layer
X (N of them)``), the ``--inputs`` files (exit 3) and the legacy environment (exit 6). Then it
dumps the weights (deterministic npz + manifest), starts the ORIGINAL graph on the parity inputs
in the legacy environment, rebuilds the config in Keras 3, loads the dumped weights strictly,
exports and validates each format, compares everything with the original and writes the output
directory atomically: ``weights/``, the models, ``parity.json``/``parity.md``,
``parity/inputs.npz`` + ``parity/original_outputs.npz`` and ``convert.json``. A file without a
``model_config`` (``save_weights``) gets its weights dumped and nothing else, and says so.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import toolchain
from toolchain.convert.formats import FP32
from toolchain.convert.generic import parity
from toolchain.convert.generic.build import build_keras, check_supported
from toolchain.convert.generic.exporters import (
    GENERIC_FILES,
    Exported,
    ExportJob,
    export_all,
    onnx_metadata,
)
from toolchain.convert.generic.runners import keras_infer, run_rows
from toolchain.convert.generic.weights import load_dumped
from toolchain.convert.weights import LoadReport
from toolchain.core.atomic import atomic_dir
from toolchain.core.contracts import MANIFEST_FILE
from toolchain.core.errors import InputError
from toolchain.legacy.bindings import (
    LambdaBinding,
    MappedFunction,
    binding_records,
    load_functions,
    parse_mappings,
    vet_lambdas,
)
from toolchain.legacy.config import ModelSpec, class_counts, parse_model, tensor_names
from toolchain.legacy.dump import WeightsDump, dump_model, dump_weights_only, is_weights_only
from toolchain.legacy.h5file import read_legacy
from toolchain.legacy.model import LegacyModel
from toolchain.legacy.npzfile import npz_bytes

log = logging.getLogger(__name__)

REPORT = "convert.json"
REPORT_FORMAT = "facenet-toolchain/convert-report/1"
WEIGHTS_DIR = "weights"
PROBE_ROWS = 8


@dataclass(frozen=True)
class ConvertRequest:
    """What ``facenet model convert`` was asked to do (see its ``--help``)."""

    h5: Path
    out: Path
    formats: tuple[str, ...] = ("onnx",)
    lambdas: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    samples: int = 16
    input_range: tuple[float, float] = (-1.0, 1.0)
    seed: int = 0
    atol: float = FP32.max_abs if FP32.max_abs is not None else 1e-5
    legacy_python: Path | None = None


@dataclass
class ConvertResult:
    """What was written and measured (``convert.json`` holds all of it)."""

    out: Path
    weights_only: bool
    report: dict[str, Any]
    formats: list[Exported] = field(default_factory=list)

    @property
    def parity_ok(self) -> bool | None:
        """Whether every output was within tolerance (``None``: no parity, weights only)."""
        verdict = self.report.get("parity")
        return None if verdict is None else bool(verdict["ok"])


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class _Steps:
    """Names and times each step (wall and this process' CPU seconds: on a shared machine the
    wall time depends on the load, the CPU time much less); tells the caller what runs now."""

    def __init__(self, on_step: Callable[[str], None]) -> None:
        self.on_step = on_step
        self.done: list[dict[str, Any]] = []
        self.start = self.last = time.perf_counter()
        self.cpu_start = self.cpu_last = _cpu(resource.RUSAGE_SELF)
        self.name: str | None = None

    def __call__(self, name: str) -> None:
        now, cpu = time.perf_counter(), _cpu(resource.RUSAGE_SELF)
        if self.name is not None:
            self.done.append({"step": self.name, "seconds": round(now - self.last, 2),
                              "cpu_seconds": round(cpu - self.cpu_last, 2),
                              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                              // 1024})
        self.name, self.last, self.cpu_last = name, now, cpu
        self.on_step(name)

    def total(self) -> float:
        """Close the last step; the wall seconds since the start."""
        self("done")
        return round(time.perf_counter() - self.start, 2)

    def cpu(self) -> dict[str, float]:
        """CPU seconds of this process and of its finished children (the legacy graph)."""
        return {"self": round(_cpu(resource.RUSAGE_SELF) - self.cpu_start, 2),
                "children": round(_cpu(resource.RUSAGE_CHILDREN), 2)}


def check_output_dir(out: Path) -> None:
    """Refuse an output directory ``convert`` may not replace whole.

    Raises:
        InputError: ``out`` is not a directory, or holds files and no ``convert.json``.
    """
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise InputError(f"{out} exists and is not a directory")
        if any(out.iterdir()) and not (out / REPORT).is_file():
            raise InputError(f"{out} holds files that are not an earlier facenet model convert "
                             "output;"
                             " refusing to replace it (choose a new or empty directory)")


def _formats(names: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [n for n in names if n != "all" and n not in GENERIC_FILES]
    if unknown or not names:
        raise InputError(f"unknown format(s) {unknown}; choose from "
                         f"{', '.join([*GENERIC_FILES, 'all'])}")
    return names


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "toolchain": toolchain.__version__}
    for dist in ("tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "onnx", "onnxruntime",
                 "openvino", "ai-edge-litert", "h5py", "numpy"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found


def _machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    model = next((line.split(":", 1)[1].strip() for line in lines
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores_usable": len(os.sched_getaffinity(0)),
            "load_average": [round(v, 2) for v in os.getloadavg()]}


def _write_weights(staging: Path, dump: WeightsDump) -> Path:
    weights = staging / WEIGHTS_DIR
    weights.mkdir()
    for name, data in dump.files.items():
        (weights / name).write_bytes(data)
    return weights


def _source(dump: WeightsDump) -> dict[str, Any]:
    return dict(dump.manifest["source"])


def _report_write(staging: Path, report: dict[str, Any]) -> None:
    (staging / REPORT).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


def _weights_only(request: ConvertRequest, steps: _Steps) -> ConvertResult:
    steps("dump weights (no model_config)")
    dump = dump_weights_only(request.h5)
    with atomic_dir(request.out) as staging:
        _write_weights(staging, dump)
        report = {
            "format": REPORT_FORMAT, "source": _source(dump), "weights_only": True,
            "note": "weights-only file (model.save_weights): no model_config, so no graph to "
                    "rebuild or export; only the weights were dumped",
            "weights": {"dir": WEIGHTS_DIR, "npz": len(dump.layers),
                        "parameters": dump.parameters},
            "formats": [], "parity": None, "versions": _versions(),
        }
        report["timings"] = steps.done
        report["total_seconds"] = steps.total()
        _report_write(staging, report)
    return ConvertResult(request.out, True, report)


@dataclass(frozen=True)
class _Plan:
    """Everything checked before anything is written or TensorFlow is imported."""

    h5: Path
    model: LegacyModel
    spec: ModelSpec
    bindings: list[LambdaBinding]
    mappings: list[MappedFunction]
    functions: dict[str, Callable[..., Any]]
    inputs: tuple[tuple[str, tuple[int | None, ...]], ...]
    outputs: tuple[str, ...]
    fixed_batch: int | None
    rows: parity.InputSet
    legacy_python: Path

    @property
    def batch(self) -> int:
        """Rows per call: the batch size the model declares, else 16."""
        return self.fixed_batch or 16

    @property
    def probe(self) -> int:
        """Rows each export is validated on (a multiple of a declared batch size)."""
        fixed = self.fixed_batch
        return max(fixed, PROBE_ROWS // fixed * fixed) if fixed else PROBE_ROWS


def _plan(request: ConvertRequest, h5: Path) -> _Plan:
    """Read, vet and check everything (code first, then the graph, the layers, the inputs, the
    legacy environment); import the mapped functions."""
    model = read_legacy(h5)
    mappings = parse_mappings(request.lambdas)
    bindings = vet_lambdas(model.code, mappings)
    spec = parse_model(model.model_config)
    check_supported(spec, str(request.h5))
    shapes = [s for s in spec.input_shapes() if s is not None]
    io = tuple(zip(tensor_names(spec.inputs), shapes, strict=True))
    declared = {s[0] for s in shapes if s[0] is not None}
    if len(declared) > 1:
        raise InputError(f"{request.h5}: inputs declare different batch sizes {declared}")
    fixed = declared.pop() if declared else None
    rows = parity.make_inputs(io, max(request.samples, 1), *request.input_range, request.seed,
                              list(request.inputs))
    if fixed and rows.rows % fixed:
        raise InputError(f"{request.h5}: the model takes batches of exactly {fixed} rows; give "
                         f"a multiple of {fixed} rows (--samples and --inputs), not {rows.rows}")
    python = parity.legacy_python(request.legacy_python)
    return _Plan(h5, model, spec, bindings, mappings, load_functions(bindings), io,
                 tensor_names(spec.outputs), fixed, rows, python)


def _contract(plan: _Plan, dump: WeightsDump, manifest_sha256: str) -> dict[str, Any]:
    """What ``model.onnx`` says about itself (``metadata_props``) and ``convert.json`` repeats."""
    return {
        "source_file": plan.h5.name, "source_sha256": dump.manifest["source"]["sha256"],
        "keras_version": plan.model.keras_version or "unknown",
        "model_class": plan.spec.class_name,
        "inputs": [{"name": n, "layer": r.layer, "shape": list(s)}
                   for (n, s), r in zip(plan.inputs, plan.spec.inputs, strict=True)],
        "outputs": [{"name": n, "layer": r.layer}
                    for n, r in zip(plan.outputs, plan.spec.outputs, strict=True)],
        "lambdas": [b.describe() for b in plan.bindings],
        "weights_manifest_sha256": manifest_sha256,
        "converter": "facenet model convert: config-driven Keras 3 rebuild",
    }


def convert_file(request: ConvertRequest,
                 on_step: Callable[[str], None] = log.info) -> ConvertResult:
    """Convert one legacy ``.h5`` (see the module docstring for the order of the checks).

    Raises:
        InputError: a bad file, argument, ``--inputs`` file or output directory (exit 3); an
            unsupported layer (:class:`~toolchain.convert.generic.layers.UnsupportedLayerError`).
        UnsafeCodeError: code that is neither catalogue-vetted nor mapped (exit 5).
        MissingArtifactError: no legacy environment (exit 6).
        IntegrityError, WeightsRejectedError: the weights do not fit the rebuild (exit 4).
        ParityError: an export or the parity check is beyond tolerance (exit 7; for the parity
            check, after the output directory was written).
        EnvironmentToolError: a converter or the legacy run failed unexpectedly (exit 8).
    """
    steps = _Steps(on_step)
    steps("read and vet")
    formats = _formats(request.formats)
    check_output_dir(request.out)
    h5 = request.h5.resolve() if request.h5.exists() else request.h5
    if not h5.is_file():
        raise InputError(f"{request.h5}: no such file" if not h5.exists()
                         else f"{request.h5}: not a regular file")
    if is_weights_only(h5):
        return _weights_only(replace(request, h5=h5), steps)
    plan = _plan(request, h5)
    steps("dump weights")
    dump = dump_model(plan.model, plan.bindings)
    with tempfile.TemporaryDirectory(prefix="facenet-convert-") as work_dir:
        work = Path(work_dir)
        legacy = parity.LegacyRun(plan.legacy_python, h5, [m.text for m in plan.mappings],
                                  plan.rows, work)
        try:
            steps("import TensorFlow and Keras 3")
            import keras  # noqa: F401  (timed on its own: seconds on a cold start)

            steps("rebuild in Keras 3")
            keras_model = build_keras(plan.spec, plan.bindings, plan.functions)
            with atomic_dir(request.out) as staging:
                weights = _write_weights(staging, dump)
                steps("load the weights strictly")
                loaded = load_dumped(keras_model, plan.spec, weights)
                contract = _contract(plan, dump, loaded.manifest_sha256)
                job = ExportJob(keras_model,
                                tuple((n, (plan.fixed_batch, *s[1:])) for n, s in plan.inputs),
                                plan.outputs, plan.functions,
                                {n: a[:plan.probe] for n, a in plan.rows.feeds.items()},
                                request.atol, onnx_metadata(contract), plan.batch)
                exported = export_all(job, formats, staging, work / "scratch", steps)
                steps("parity with the original graph (Keras 2.15)")
                report = _parity(staging, job, exported, plan.rows, legacy, request.atol)
                report.update(_report(request, dump, plan.spec, plan.bindings, contract,
                                      exported, loaded))
                report["timings"] = steps.done
                report["total_seconds"] = steps.total()
                report["cpu_seconds"] = steps.cpu()
                _report_write(staging, report)
        finally:
            legacy.stop()
    result = ConvertResult(request.out, False, report, [e for e in exported if e.kept])
    parity.raise_if_failed(report["parity"], request.out / "parity.md")
    return result


def _parity(staging: Path, job: ExportJob, exported: list[Exported], inputs: parity.InputSet,
            legacy: parity.LegacyRun, atol: float) -> dict[str, Any]:
    """Run the rebuild and each kept format on every input row; compare with the original."""
    runs = {"rebuild": keras_infer(job.model, job.outputs)}
    runs.update({e.name: e.infer for e in exported if e.kept})
    results = {name: run_rows(infer, inputs.feeds, job.batch) for name, infer in runs.items()}
    original = legacy.outputs()
    checks = [c for name, got in results.items()
              for c in parity.compare(name, got, original, atol, job.outputs)]
    legacy_info = {"runtime": "Keras 2.15 in the legacy environment (legacy_env/legacy_graph.py)",
                   "built_from": "the file's model_config, Lambdas bound, load_weights"}
    parity_report = parity.report_json(checks, inputs, atol, legacy_info)
    (staging / "parity").mkdir()
    (staging / "parity" / "inputs.npz").write_bytes(npz_bytes(inputs.feeds))
    (staging / "parity" / "original_outputs.npz").write_bytes(npz_bytes(original))
    (staging / "parity.json").write_text(json.dumps(parity_report, indent=2, sort_keys=True)
                                         + "\n")
    (staging / "parity.md").write_text(parity.report_md(parity_report))
    worst = {name: max(c.max_abs for c in checks if c.fmt == name) for name in results}
    return {"parity": {"ok": parity_report["ok"], "worst_max_abs": worst, "tolerance": atol,
                       "rows": inputs.rows, "failed": parity_report["failed"],
                       "report": "parity.md"}}


def _report(request: ConvertRequest, dump: WeightsDump, spec: ModelSpec,
            bindings: list[LambdaBinding],
            contract: dict[str, Any], exported: list[Exported], loaded: LoadReport
            ) -> dict[str, Any]:
    counts = class_counts(spec)
    return {
        "format": REPORT_FORMAT,
        "source": _source(dump),
        "weights_only": False,
        "command": {"formats": list(request.formats), "lambdas": list(request.lambdas),
                    "inputs": list(request.inputs), "samples": request.samples,
                    "input_range": list(request.input_range), "seed": request.seed,
                    "atol": request.atol},
        "model": {"class": spec.class_name, "name": spec.name,
                  "layers": sum(counts.values()), "layers_by_class": dict(counts.most_common()),
                  "parameters": loaded.parameters, "inputs": contract["inputs"],
                  "outputs": contract["outputs"]},
        "lambdas": binding_records(bindings),
        "weights": {"dir": WEIGHTS_DIR, "npz": len(dump.layers), "tensors": loaded.tensors,
                    "manifest": f"{WEIGHTS_DIR}/{MANIFEST_FILE}",
                    "manifest_sha256": loaded.manifest_sha256},
        "formats": [{"name": e.name, "path": e.path.name, "size_bytes": e.size_bytes,
                     "seconds": round(e.seconds, 2), "kept": e.kept,
                     "validation_max_abs": e.max_abs} for e in exported],
        "machine": _machine(),
        "versions": _versions(),
    }
