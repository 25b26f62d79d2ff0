"""Exporters: one registry, each exporter writing atomically and validating its own output.

An exporter is a name, a description and a function ``(ExportContext) -> list[Path]``. It writes
into a temporary sibling, checks what it wrote (reload, run on reference crops, compare with the
in-memory Keras model by :func:`toolchain.convert.parity.compare`) and only then renames it into
place, so a failed export never replaces a good file. :func:`register_exporter` adds one; modules in
:data:`EXPORTER_MODULES` register theirs when imported (the MTCNN exporter, for instance).

FaceNet formats and files under ``artifacts/models/``::

    keras        facenet.keras            (safe_mode=True loadable, ScaleSum instead of Lambda)
    savedmodel   facenet_savedmodel/      (serving_default: input -> embedding, embedding_l2)
    onnx         facenet.onnx             (tf2onnx from the SavedModel, contract in metadata_props)
    tflite       facenet.tflite           (TFLiteConverter.from_saved_model, float32)
    tflite-fp16  facenet_fp16.tflite      (float16 weights)
    tflite-int8  facenet_int8.tflite      (dynamic-range int8 weights)

``--format all`` runs every registered exporter in dependency order (keras -> savedmodel ->
onnx / tflite*). Converters that start from the SavedModel reuse the one on disk when its stamp
(``assets.extra/facenet_export.json``: toolchain version and manifest sha256) is current, and
export it first otherwise.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

import toolchain
from toolchain.convert.parity import (
    TOLERANCES,
    Check,
    Reference,
    Threshold,
    check_l2_output,
    choose_threshold,
    compare,
    disk_size,
    load_reference,
)
from toolchain.convert.weights import LoadReport, read_manifest
from toolchain.core.atomic import atomic_dir, atomic_file, sha256_file, write_json
from toolchain.core.errors import EnvironmentToolError, InputError, IntegrityError, ParityError
from toolchain.core.integrity import verify_file
from toolchain.core.paths import Layout
from toolchain.core.preprocess import INPUT_SIZE, prewhiten

log = logging.getLogger(__name__)

MODEL_FILES: dict[str, str] = {
    "keras": "facenet.keras",
    "savedmodel": "facenet_savedmodel",
    "onnx": "facenet.onnx",
    "tflite": "facenet.tflite",
    "tflite-fp16": "facenet_fp16.tflite",
    "tflite-int8": "facenet_int8.tflite",
    "onnx-int8": "facenet_int8.onnx",
}
"""Where each FaceNet format is written, relative to ``artifacts/models``."""

INPUT_NAME = "input"
"""The input name of the SavedModel signature, ONNX graph and TFLite signature."""

OUTPUT_NAMES = ("embedding", "embedding_l2")
"""Output names, in order: raw 128-d ``Bottleneck_BatchNorm`` output, then its L2 normalization."""

SIGNATURE = "serving_default"
ONNX_OPSET = 17
PROBE_ROWS = 8
"""Reference crops each exporter runs its own output on before accepting it."""

STAMP_FILE = Path("assets.extra") / "facenet_export.json"
"""Inside the SavedModel: what it was exported from (``assets.extra`` is TF's place for extras)."""

EXPORTER_MODULES: tuple[str, ...] = ("toolchain.convert.mtcnn_export", "toolchain.convert.quantize")
"""Modules that register more exporters when imported."""

PREPROCESSING = (
    "per image over the whole 160x160x3 crop: x = float32(pixels); "
    "x = (x - mean(x)) / max(std(x), 1/sqrt(N)) with N = 160*160*3 = 76800 "
    "(toolchain.core.preprocess.prewhiten)"
)
INPUT_CONTRACT = (
    f"{INPUT_NAME}: float32 [batch, 160, 160, 3], layout NHWC, RGB face crop 160x160x3 "
    "(MTCNN box clipped to the image, no margin, Pillow bilinear resize: "
    "toolchain.core.preprocess.crop_face), prewhitened"
)
OUTPUT_CONTRACT = (
    "embedding: float32 [batch, 128], raw output of the original Bottleneck_BatchNorm layer, "
    "NOT normalized: L2-normalize before comparing. "
    "embedding_l2: float32 [batch, 128], the same L2-normalized (x / sqrt(max(sum(x^2), 1e-10)))"
)
METRIC = (
    "euclidean distance between L2-normalized embeddings; same person if distance <= "
    "default_threshold"
)


@dataclass
class ExportContext:
    """What exporters share: the artifacts layout and lazily built inputs.

    Attributes:
        layout: the artifacts tree.
        written: paths written so far, per exporter, in this run.
    """

    layout: Layout
    written: dict[str, list[Path]] = field(default_factory=dict)

    @cached_property
    def manifest(self) -> dict[str, Any]:
        """The weights manifest (``MissingArtifactError`` naming ``nox -s recover`` if absent)."""
        return read_manifest(self.layout.manifest)

    @cached_property
    def _loaded(self) -> tuple[Any, LoadReport]:
        from toolchain.convert.weights import build_loaded_model

        self.manifest  # noqa: B018  (fail on a missing manifest before building the model)
        verify_file(self.layout.manifest, self.layout)
        start = time.perf_counter()
        model, report = build_loaded_model(self.layout.weights_dir)
        log.info(
            "built InceptionResNetV1 and loaded %d tensors strictly in %.1f s",
            report.tensors,
            time.perf_counter() - start,
        )
        return model, report

    @property
    def model(self) -> Any:
        """The rebuilt Keras 3 model with the recovered weights (built on first use)."""
        return self._loaded[0]

    @property
    def load_report(self) -> LoadReport:
        """What the strict loader filled."""
        return self._loaded[1]

    @cached_property
    def reference(self) -> Reference:
        """Reference crops and ORIGINAL-graph embeddings."""
        return load_reference(self.layout)

    @cached_property
    def probe(self) -> np.ndarray:
        """A few prewhitened reference crops each exporter checks its output on."""
        return prewhiten(self.reference.crops[:PROBE_ROWS])

    @cached_property
    def expected(self) -> dict[str, np.ndarray]:
        """The in-memory Keras model's outputs on :attr:`probe`."""
        import tensorflow as tf

        model = self.model
        fn = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec([None, *self.probe.shape[1:]], tf.float32)],
            autograph=False,
        )
        raw, l2 = fn(tf.constant(self.probe))
        return {"embedding": raw.numpy(), "embedding_l2": l2.numpy()}

    @cached_property
    def threshold(self) -> Threshold:
        """Default match threshold chosen on the original graph's reference embeddings."""
        return choose_threshold(self.reference.embeddings, self.reference.persons)

    @cached_property
    def stamp(self) -> dict[str, str]:
        """What an export is made from; a SavedModel with another stamp is stale."""
        return {
            "toolchain_version": toolchain.__version__,
            "manifest_sha256": sha256_file(self.layout.manifest),
            "source_sha256": str(self.manifest["source"]["sha256"]),
        }

    def path(self, fmt: str) -> Path:
        """Final path of FaceNet format ``fmt``."""
        return self.layout.models_dir / MODEL_FILES[fmt]

    def savedmodel_dir(self) -> Path:
        """A current SavedModel: this run's, the one on disk if its stamp matches, or a new one."""
        path = self.path("savedmodel")
        if "savedmodel" in self.written:
            return path
        stamp_file = path / STAMP_FILE
        if stamp_file.is_file():
            try:
                on_disk = json.loads(stamp_file.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                on_disk = None
            if on_disk == self.stamp:
                log.info("reusing %s (stamp matches the weights manifest)", path)
                return path
        log.info("%s missing or stale: exporting it first", path)
        run_exporters(self, ["savedmodel"])
        return path


@dataclass(frozen=True)
class Exporter:
    """One export format.

    Attributes:
        name: the ``--format`` value.
        description: one line for ``--help`` and logs.
        func: writes (atomically, validated) and returns the paths written.
        after: exporters that must run first when both are selected.
        in_all: whether ``--format all`` includes it.
    """

    name: str
    description: str
    func: Callable[[ExportContext], list[Path]]
    after: tuple[str, ...] = ()
    in_all: bool = True


EXPORTERS: dict[str, Exporter] = {}
"""The registry, in registration order."""


def register_exporter(
    name: str, description: str, after: Sequence[str] = (), in_all: bool = True
) -> Callable[[Callable[[ExportContext], list[Path]]], Callable[[ExportContext], list[Path]]]:
    """Decorator registering ``func(context) -> written paths`` as exporter ``name``."""

    def decorate(
        func: Callable[[ExportContext], list[Path]],
    ) -> Callable[[ExportContext], list[Path]]:
        if name in EXPORTERS or name == "all":
            raise ValueError(f"exporter {name!r} is already registered")
        EXPORTERS[name] = Exporter(name, description, func, tuple(after), in_all)
        return func

    return decorate


def load_exporters() -> dict[str, Exporter]:
    """Import :data:`EXPORTER_MODULES` so their exporters register; return the registry."""
    for module in EXPORTER_MODULES:
        importlib.import_module(module)
    return EXPORTERS


def resolve(names: Iterable[str]) -> list[Exporter]:
    """The exporters for ``--format`` values (``all`` = every ``in_all`` one), dependency-ordered.

    Raises:
        InputError: an unknown format.
    """
    registry = load_exporters()
    wanted: set[str] = set()
    for name in names:
        if name == "all":
            wanted.update(n for n, e in registry.items() if e.in_all)
        elif name in registry:
            wanted.add(name)
        else:
            raise InputError(
                f"unknown export format {name!r}; choose from {', '.join([*registry, 'all'])}"
            )
    ordered: list[Exporter] = []

    def visit(name: str) -> None:
        exporter = registry[name]
        if exporter in ordered:
            return
        for dep in exporter.after:
            if dep in wanted:
                visit(dep)
        ordered.append(exporter)

    for name in registry:
        if name in wanted:
            visit(name)
    return ordered


@dataclass
class ExportResult:
    """One exporter run.

    Attributes:
        name: exporter name.
        paths: what it wrote.
        seconds: wall time including validation.
        size_bytes: total size on disk of ``paths``.
    """

    name: str
    paths: list[Path]
    seconds: float
    size_bytes: int


def run_exporters(context: ExportContext, names: Iterable[str]) -> list[ExportResult]:
    """Run the selected exporters in dependency order; return what each wrote and its time."""
    results = []
    for exporter in resolve(names):
        log.info("export %s: %s", exporter.name, exporter.description)
        start = time.perf_counter()
        paths = exporter.func(context)
        seconds = time.perf_counter() - start
        context.written[exporter.name] = paths
        size = sum(disk_size(p) for p in paths)
        log.info("export %s: %.1f s, %.1f MB", exporter.name, seconds, size / 1e6)
        results.append(ExportResult(exporter.name, paths, seconds, size))
    return results


def write_export_report(layout: Layout, results: Sequence[ExportResult]) -> Path:
    """Merge this run's timings and sizes into ``reports/export.json``."""
    path = layout.reports_dir / "export.json"
    report: dict[str, Any] = {}
    if path.is_file():
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            report = {}
    for r in results:
        report[r.name] = {
            "paths": [str(p) for p in r.paths],
            "seconds": round(r.seconds, 2),
            "size_bytes": r.size_bytes,
            "toolchain_version": toolchain.__version__,
        }
    write_json(path, report)
    return path


def validate_outputs(fmt: str, outputs: dict[str, np.ndarray], context: ExportContext) -> None:
    """Check an exported model's outputs on the probe crops against the in-memory Keras model.

    Raises:
        IntegrityError: outputs are missing or misnamed.
        ParityError: shape, dtype or values are off the tolerance table.
    """
    if sorted(outputs) != sorted(OUTPUT_NAMES):
        raise IntegrityError(f"{fmt}: outputs {sorted(outputs)}, expected {list(OUTPUT_NAMES)}")
    checks: list[Check] = compare(
        fmt, "keras-memory", outputs["embedding"], context.expected["embedding"], TOLERANCES[fmt]
    )
    checks.append(check_l2_output(fmt, outputs["embedding"], outputs["embedding_l2"]))
    failed = [c for c in checks if not c.ok]
    if failed:
        raise ParityError(
            f"{fmt} export rejected: " + "; ".join(f"{c.check}: {c.detail}" for c in failed)
        )
    values = next(c for c in checks if c.check == "values")
    log.info("%s validated on %d crops: %s", fmt, len(context.probe), values.detail)


@register_exporter("keras", "Keras 3 .keras archive (safe_mode=True loadable)")
def export_keras(context: ExportContext) -> list[Path]:
    """Save the model as ``facenet.keras``; reload it with ``safe_mode=True`` and compare."""
    from toolchain.convert.parity import run_keras

    model = context.model  # built and strictly loaded before anything is created on disk
    final = context.path("keras")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".keras-staging.", dir=final.parent))
    try:
        staged = staging / final.name
        model.save(staged)
        validate_outputs("keras", run_keras(staged, context.probe), context)
        with atomic_file(final) as tmp:
            os.replace(staged, tmp)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [final]


def _signature_check(path: Path) -> None:
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures.get(SIGNATURE)
    if signature is None:
        raise IntegrityError(f"{path}: no {SIGNATURE} signature")
    inputs = signature.structured_input_signature[1]
    spec = inputs.get(INPUT_NAME)
    if (
        list(inputs) != [INPUT_NAME]
        or spec is None
        or spec.dtype != tf.float32
        or spec.shape.as_list() != [None, INPUT_SIZE, INPUT_SIZE, 3]
    ):
        raise IntegrityError(f"{path}: {SIGNATURE} takes {inputs}, expected {INPUT_NAME} float32")


@register_exporter("savedmodel", "TF SavedModel with a serving_default signature", after=("keras",))
def export_savedmodel(context: ExportContext) -> list[Path]:
    """Export ``facenet_savedmodel/``: a ``tf.Module`` holding the weights and the signature.

    Keras' ``ExportArchive`` stores every variable twice (``variables`` and ``_all_variables``,
    175 MB); a plain module tracking the underlying ``tf.Variable`` objects stores them once.
    """
    import tensorflow as tf

    from toolchain.convert.parity import run_savedmodel

    model = context.model
    spec = tf.TensorSpec([None, INPUT_SIZE, INPUT_SIZE, 3], tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[spec], autograph=False)
    def serve(x: Any) -> dict[str, Any]:
        raw, l2 = model(x, training=False)
        return {"embedding": raw, "embedding_l2": l2}

    module = tf.Module(name="facenet")
    module.model_variables = [v.value for v in model.weights]
    module.serve = serve
    final = context.path("savedmodel")
    with atomic_dir(final) as tmp:
        tf.saved_model.save(module, str(tmp), signatures={SIGNATURE: serve})
        (tmp / STAMP_FILE).parent.mkdir(parents=True, exist_ok=True)
        (tmp / STAMP_FILE).write_text(json.dumps(context.stamp, indent=2, sort_keys=True) + "\n")
        _signature_check(tmp)
        validate_outputs("savedmodel", run_savedmodel(tmp, context.probe), context)
    return [final]


def onnx_metadata(context: ExportContext) -> dict[str, str]:
    """The contract carried in the ONNX ``metadata_props``."""
    threshold = context.threshold
    source = context.manifest["source"]
    props = {
        "input_name": INPUT_NAME,
        "input_layout": "NHWC",
        "input_size": f"{INPUT_SIZE}x{INPUT_SIZE}x3",
        "input_color": "RGB",
        "input": INPUT_CONTRACT,
        "preprocessing": PREPROCESSING,
        "output_names": ",".join(OUTPUT_NAMES),
        "output": OUTPUT_CONTRACT,
        "distance_metric": METRIC,
        "default_threshold": f"{threshold.value:.6f}",
        "threshold_method": (
            f"{threshold.method}; balanced accuracy {threshold.balanced_accuracy:.4f} over "
            f"{threshold.same_pairs} same / {threshold.different_pairs} different pairs, "
            f"max same {threshold.max_same:.4f}, min different {threshold.min_different:.4f}"
        ),
        "source_file": str(source.get("file", "")),
        "source_sha256": str(source["sha256"]),
        "weights_manifest_sha256": context.stamp["manifest_sha256"],
        "toolchain_version": toolchain.__version__,
    }
    props["contract"] = json.dumps(props, sort_keys=True)
    return props


def _onnx_model(savedmodel: Path) -> Any:
    import tensorflow as tf
    import tf2onnx

    loaded = tf.saved_model.load(str(savedmodel))
    spec = [tf.TensorSpec([None, INPUT_SIZE, INPUT_SIZE, 3], tf.float32, name=INPUT_NAME)]

    @tf.function(input_signature=spec, autograph=False)
    def forward(x: Any) -> dict[str, Any]:
        return loaded.signatures[SIGNATURE](input=x)

    try:
        proto, _ = tf2onnx.convert.from_function(forward, input_signature=spec, opset=ONNX_OPSET)
    except Exception as exc:  # tf2onnx raises bare Exceptions of many kinds
        raise EnvironmentToolError(f"tf2onnx failed on {savedmodel}: {exc}") from exc
    return proto


def _name_dims(proto: Any) -> None:
    """Rename the dynamic batch dimension of inputs and outputs to ``batch``; order outputs."""
    for value in (*proto.graph.input, *proto.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        if not dim.HasField("dim_value"):
            dim.dim_param = "batch"
    outputs = {o.name: o for o in proto.graph.output}
    if sorted(outputs) != sorted(OUTPUT_NAMES) or [i.name for i in proto.graph.input] != [
        INPUT_NAME
    ]:
        raise IntegrityError(
            f"tf2onnx produced {[i.name for i in proto.graph.input]} -> {sorted(outputs)}, "
            f"expected [{INPUT_NAME}] -> {list(OUTPUT_NAMES)}"
        )
    ordered = [outputs[name] for name in OUTPUT_NAMES]
    copies = [type(o)() for o in ordered]
    for copy, original in zip(copies, ordered, strict=True):
        copy.CopyFrom(original)
    del proto.graph.output[:]
    proto.graph.output.extend(copies)


@register_exporter(
    "onnx", "ONNX (tf2onnx from the SavedModel, opset 17, contract metadata)", after=("savedmodel",)
)
def export_onnx(context: ExportContext) -> list[Path]:
    """Convert the SavedModel to ``facenet.onnx``; check it, run it in ONNX Runtime, compare."""
    import onnx

    from toolchain.convert.parity import run_onnx

    metadata = onnx_metadata(context)
    proto = _onnx_model(context.savedmodel_dir())
    _name_dims(proto)
    onnx.helper.set_model_props(proto, metadata)
    proto.doc_string = (
        "FaceNet InceptionResNetV1 recovered from facenet_keras.h5; see metadata_props 'contract'"
    )
    final = context.path("onnx")
    with atomic_file(final) as tmp:
        onnx.save(proto, str(tmp))
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except onnx.checker.ValidationError as exc:
            raise IntegrityError(f"onnx.checker rejected the export: {exc}") from exc
        stored = {
            p.key: p.value for p in onnx.load(str(tmp), load_external_data=False).metadata_props
        }
        if stored != metadata:
            raise IntegrityError("ONNX metadata_props did not round-trip")
        validate_outputs("onnx", run_onnx(tmp, context.probe), context)
    return [final]


def _tflite_exporter(fmt: str, quantization: str | None) -> Callable[[ExportContext], list[Path]]:
    def export(context: ExportContext) -> list[Path]:
        import tensorflow as tf

        from toolchain.convert.parity import run_tflite

        converter = tf.lite.TFLiteConverter.from_saved_model(
            str(context.savedmodel_dir()), signature_keys=[SIGNATURE]
        )
        if quantization is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "fp16":
            converter.target_spec.supported_types = [tf.float16]
        try:
            flatbuffer = converter.convert()
        except Exception as exc:  # the converter raises ConverterError and plain Exceptions
            raise EnvironmentToolError(f"TFLite conversion ({fmt}) failed: {exc}") from exc
        final = context.path(fmt)
        with atomic_file(final) as tmp:
            tmp.write_bytes(flatbuffer)
            validate_outputs(fmt, run_tflite(tmp, context.probe), context)
        return [final]

    export.__name__ = f"export_{fmt.replace('-', '_')}"
    export.__doc__ = f"TFLiteConverter.from_saved_model -> {MODEL_FILES[fmt]}, run in LiteRT."
    return export


register_exporter("tflite", "TFLite float32 (LiteRT)", after=("savedmodel",))(
    _tflite_exporter("tflite", None)
)
register_exporter("tflite-fp16", "TFLite with float16 weights", after=("savedmodel",))(
    _tflite_exporter("tflite-fp16", "fp16")
)
register_exporter("tflite-int8", "TFLite with dynamic-range int8 weights", after=("savedmodel",))(
    _tflite_exporter("tflite-int8", "int8")
)


def facenet_model_paths(layout: Layout) -> dict[str, Path]:
    """Every FaceNet format's path, in chain order (what ``facenet parity`` checks)."""
    return {fmt: layout.models_dir / name for fmt, name in MODEL_FILES.items()}
