"""Export a generic rebuild to each format, each validated against the in-memory model.

The formats are those of :data:`toolchain.convert.formats.FORMATS` (``keras``, ``savedmodel``,
``onnx``, ``tflite``, ``openvino``): their parents, descriptions and float32 tolerance come from
that table; :data:`GENERIC_FILES` only says where the generic path puts each one and which runner
(:mod:`.runners`) runs it. As on the FaceNet path, ONNX and TFLite are converted from the
SavedModel (``tf2onnx.convert.from_keras`` is broken on Keras 3; ``TFLiteConverter.
from_concrete_functions`` writes NaNs), and OpenVINO from the ONNX model. A parent that was not
asked for is exported into a scratch directory and not kept. Every exported model is run on the
probe rows in its own runtime and compared with the in-memory Keras 3 model, output by output,
before the command goes on (:class:`~toolchain.core.errors.ParityError`, exit 7, otherwise).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import toolchain
from toolchain.convert.formats import FORMATS
from toolchain.convert.generic import runners
from toolchain.convert.generic.runners import Arrays, Infer
from toolchain.convert.parity import disk_size
from toolchain.convert.runners import SIGNATURE
from toolchain.core.errors import EnvironmentToolError, IntegrityError, ParityError

log = logging.getLogger(__name__)

ONNX_OPSET = 17

TF2ONNX_CATCH_ERRORS = "TF2ONNX_CATCH_ERRORS"
"""tf2onnx deep-copies the whole graph, weights included, before each of its optimizer passes so
that a failing pass can be skipped: for the 25M-parameter benchmark model that costs 6 of its 20
CPU seconds and raises its peak memory from 4.1 to 5.8 GB (the same 48-node graph comes out
either way). With this variable set it does not copy; if an optimizer then fails, the conversion
runs again the default way."""

GENERIC_FILES: dict[str, str] = {
    "keras": runners.KERAS_FILE,
    "savedmodel": runners.SAVEDMODEL_DIR,
    "onnx": runners.ONNX_FILE,
    "tflite": runners.TFLITE_FILE,
    "openvino": runners.OPENVINO_DIR,
}
"""The formats ``facenet model convert --to`` writes (``all``: every one), in chain order, and where
each goes in the output directory."""


@dataclass
class ExportJob:
    """What every exporter of one conversion shares.

    Attributes:
        model: the rebuilt Keras 3 model, weights loaded.
        inputs: input names and shapes (batch axis first, ``None`` when dynamic).
        outputs: output names, in order.
        functions: the mapped Lambda functions by name (custom objects of the ``.keras`` file).
        probe: a few input rows each export is validated on.
        atol: the largest accepted ``|export - in-memory|`` of any output element.
        metadata: ``metadata_props`` of the ONNX model (the contract and provenance).
        batch: rows per call when running a model.
        paths: where each exported format is (kept or scratch), filled as they are written.
    """

    model: Any
    inputs: tuple[tuple[str, tuple[int | None, ...]], ...]
    outputs: tuple[str, ...]
    functions: Mapping[str, Callable[..., Any]]
    probe: Arrays
    atol: float
    metadata: dict[str, str]
    batch: int = 16
    paths: dict[str, Path] = field(default_factory=dict)
    in_memory: Arrays | None = None
    savedmodel: Any = None
    """The SavedModel as ``tf.saved_model.load`` read it back (validated, then converted)."""

    def expected(self) -> Arrays:
        """The in-memory model's outputs on the probe rows (computed once)."""
        if self.in_memory is None:
            infer = runners.keras_infer(self.model, self.outputs)
            self.in_memory = runners.run_rows(infer, self.probe, self.batch)
        return self.in_memory


@dataclass(frozen=True)
class Exported:
    """One exported format: where, how big, how long, its validation, and its loaded model."""

    name: str
    path: Path
    kept: bool
    seconds: float
    size_bytes: int
    max_abs: float
    infer: Infer = field(repr=False, compare=False)


def plan(names: Sequence[str]) -> list[str]:
    """The formats to export for ``names``, parents first (``all`` = every generic format)."""
    wanted = set(GENERIC_FILES) if "all" in names else set(names)
    ordered: list[str] = []

    def visit(name: str) -> None:
        parent = FORMATS[name].parent
        if parent is not None and parent in GENERIC_FILES and parent != "keras":
            visit(parent)
        if name not in ordered:
            ordered.append(name)

    for name in GENERIC_FILES:
        if name in wanted:
            visit(name)
    return ordered


def _specs(job: ExportJob) -> list[Any]:
    import tensorflow as tf

    return [tf.TensorSpec(list(shape), tf.float32, name=name) for name, shape in job.inputs]


def export_keras(job: ExportJob, target: Path) -> Infer:
    """``model.keras``; reloaded with ``safe_mode=True``."""
    job.model.save(target)
    return runners.load_keras(target, job.outputs, job.functions)


def export_savedmodel(job: ExportJob, target: Path) -> Infer:
    """A ``tf.Module`` holding the variables once and a ``serving_default`` signature with named
    inputs and outputs."""
    import tensorflow as tf

    model, outputs = job.model, job.outputs

    @tf.function(input_signature=_specs(job), autograph=False)
    def serve(*args: Any) -> dict[str, Any]:
        result = model(list(args) if len(args) > 1 else args[0], training=False)
        result = result if isinstance(result, list | tuple) else [result]
        return dict(zip(outputs, result, strict=True))

    module = tf.Module(name="converted")
    module.model_variables = [v.value for v in model.weights]
    module.serve = serve
    tf.saved_model.save(module, str(target), signatures={SIGNATURE: serve})
    job.savedmodel = tf.saved_model.load(str(target))
    return runners.load_savedmodel(target, job.savedmodel)


def _onnx_proto(job: ExportJob, savedmodel: Path) -> Any:
    """tf2onnx of the SavedModel's signature (read back from disk by the savedmodel export)."""
    import tensorflow as tf
    import tf2onnx

    loaded = job.savedmodel or tf.saved_model.load(str(savedmodel))
    specs = _specs(job)
    names = [name for name, _ in job.inputs]

    @tf.function(input_signature=specs, autograph=False)
    def forward(*args: Any) -> dict[str, Any]:
        return loaded.signatures[SIGNATURE](**dict(zip(names, args, strict=True)))

    previous = os.environ.get(TF2ONNX_CATCH_ERRORS)
    try:
        os.environ[TF2ONNX_CATCH_ERRORS] = "FALSE"
        try:
            proto, _ = tf2onnx.convert.from_function(forward, input_signature=specs,
                                                     opset=ONNX_OPSET)
        except Exception:  # an optimizer failed: again the default way, which skips it
            log.info("tf2onnx without per-optimizer copies failed; converting with them")
            del os.environ[TF2ONNX_CATCH_ERRORS]
            proto, _ = tf2onnx.convert.from_function(forward, input_signature=specs,
                                                     opset=ONNX_OPSET)
    except Exception as exc:  # tf2onnx raises bare Exceptions of many kinds
        raise EnvironmentToolError(f"tf2onnx failed on {savedmodel}: {exc}") from exc
    finally:
        os.environ.pop(TF2ONNX_CATCH_ERRORS, None)
        if previous is not None:
            os.environ[TF2ONNX_CATCH_ERRORS] = previous
    return proto


def _order_onnx(job: ExportJob, proto: Any) -> None:
    """Name dynamic batch axes ``batch``; check the names; outputs in the model's order."""
    for value in (*proto.graph.input, *proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
    outputs = {o.name: o for o in proto.graph.output}
    inputs = [i.name for i in proto.graph.input]
    if sorted(outputs) != sorted(job.outputs) or inputs != [n for n, _ in job.inputs]:
        raise IntegrityError(f"tf2onnx produced {inputs} -> {sorted(outputs)}, expected "
                             f"{[n for n, _ in job.inputs]} -> {list(job.outputs)}")
    copies = []
    for name in job.outputs:
        copy = type(outputs[name])()
        copy.CopyFrom(outputs[name])
        copies.append(copy)
    del proto.graph.output[:]
    proto.graph.output.extend(copies)


def export_onnx(job: ExportJob, target: Path) -> Infer:
    """ONNX (opset 17) from the SavedModel, the contract in ``metadata_props``, checked."""
    import onnx

    proto = _onnx_proto(job, job.paths["savedmodel"])
    _order_onnx(job, proto)
    proto.doc_string = (f"{job.metadata.get('source_file', 'a legacy Keras model')} converted by "
                        "facenet model convert; see metadata_props 'contract'")
    onnx.helper.set_model_props(proto, job.metadata)
    onnx.save(proto, str(target))
    try:
        onnx.checker.check_model(str(target), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise IntegrityError(f"onnx.checker rejected the export: {exc}") from exc
    stored = {p.key: p.value for p in onnx.load(str(target), load_external_data=False)
              .metadata_props}
    if stored != job.metadata:
        raise IntegrityError("ONNX metadata_props did not round-trip")
    return runners.load_onnx(target)


def export_tflite(job: ExportJob, target: Path) -> Infer:
    """TFLite float32 from the SavedModel."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(job.paths["savedmodel"]),
                                                         signature_keys=[SIGNATURE])
    try:
        flatbuffer = converter.convert()
    except Exception as exc:  # the converter raises ConverterError and plain Exceptions
        raise EnvironmentToolError(f"TFLite conversion failed: {exc}") from exc
    target.write_bytes(flatbuffer)
    return runners.load_tflite(target)


def export_openvino(job: ExportJob, target: Path) -> Infer:
    """OpenVINO IR (float32 weights) from the ONNX model; its metadata in ``rt_info``."""
    import openvino as ov

    from toolchain.runtime.backends import OPENVINO_FRAMEWORK_INFO

    model = ov.convert_model(str(job.paths["onnx"]))
    model.set_rt_info(f"openvino {ov.__version__} convert_model of {runners.ONNX_FILE}",
                      [OPENVINO_FRAMEWORK_INFO, "openvino_conversion"])
    target.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(target / runners.OPENVINO_XML), compress_to_fp16=False)
    return runners.load_openvino(target)


EXPORTERS: dict[str, Callable[[ExportJob, Path], Infer]] = {
    "keras": export_keras, "savedmodel": export_savedmodel, "onnx": export_onnx,
    "tflite": export_tflite, "openvino": export_openvino,
}


def max_abs_diff(got: Arrays, want: Arrays) -> float:
    """Largest element difference over every output (``inf`` for a missing output, a shape
    mismatch or a non-finite value)."""
    worst = 0.0
    for name, expected in want.items():
        value = got.get(name)
        if value is None or value.shape != expected.shape or not np.all(np.isfinite(value)):
            return float("inf")
        worst = max(worst, float(np.max(np.abs(value.astype(np.float64) - expected)))
                    if value.size else 0.0)
    return worst


def export_all(job: ExportJob, names: Sequence[str], out_dir: Path, scratch: Path,
               on_step: Callable[[str], None] = log.info) -> list[Exported]:
    """Export ``names`` (and the parents they are converted from) and validate each.

    Raises:
        ParityError: an export's outputs differ from the in-memory model beyond ``job.atol``.
        EnvironmentToolError: a converter failed.
        IntegrityError: an export is malformed (names, checker, metadata).
    """
    wanted = set(GENERIC_FILES) if "all" in names else set(names)
    done: list[Exported] = []
    for name in plan(names):
        on_step(f"export {name}: {FORMATS[name].description}")
        start = time.perf_counter()
        kept = name in wanted
        target = (out_dir if kept else scratch) / GENERIC_FILES[name]
        infer = EXPORTERS[name](job, target)
        job.paths[name] = target
        got = runners.run_rows(infer, job.probe, job.batch)
        diff = max_abs_diff(got, job.expected())
        if not diff <= job.atol:
            raise ParityError(f"{name} export rejected: its outputs differ from the rebuilt model "
                              f"by up to {diff:.3g} (> {job.atol:g}) on the probe inputs")
        seconds = time.perf_counter() - start
        log.info("%s: %.1f s, validated (max|d| %.2e)", name, seconds, diff)
        done.append(Exported(name, target, kept, seconds, disk_size(target), diff, infer))
    return done


def onnx_metadata(contract: Mapping[str, Any]) -> dict[str, str]:
    """``metadata_props``: each contract entry as text, and the whole as JSON (``contract``)."""
    props = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True)
             for k, v in contract.items()}
    props["toolchain_version"] = toolchain.__version__
    props["contract"] = json.dumps(props, sort_keys=True)
    return props
