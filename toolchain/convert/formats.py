"""THE format table: every export format is declared here once, and only here.

A :class:`FormatSpec` says what ``facenet model export --format NAME`` writes (its files under
``artifacts/models``), which format it is converted from (its parent: exported first when both are
selected, and compared with it by ``facenet model parity``), the tolerance parity holds it to
against the ORIGINAL graph and its parent, the runtime it runs in
(:mod:`toolchain.convert.runners`), the function that exports it (``module:function`` under
:mod:`toolchain.convert.exporters`) and its row label in ``facenet bench runtimes``. The exporter
registry, the parity checks, the int8 bound and the bench all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from toolchain.convert.runners import KERAS, LITERT, ONNXRUNTIME, OPENVINO, SAVEDMODEL, Runner
from toolchain.core import contracts


@dataclass(frozen=True)
class Tolerance:
    """Acceptance limits on L2-normalized embeddings.

    Attributes:
        max_abs: largest allowed ``|a - b|`` over all elements, or ``None`` for no limit.
        min_cos: smallest allowed cosine similarity of any row pair.
    """

    max_abs: float | None
    min_cos: float


FP32 = Tolerance(max_abs=1e-5, min_cos=0.999999)
"""Float32 formats: the same arithmetic as the original, up to operator order."""


@dataclass(frozen=True)
class FormatSpec:
    """One export format.

    Attributes:
        name: the ``--format`` value and the name in parity reports.
        description: one line for ``export --help`` and logs.
        exporter: ``module:function`` (module relative to ``toolchain.convert.exporters``) of
            ``function(context, spec) -> written paths``.
        files: what it writes, relative to ``artifacts/models`` (a file or a directory).
        parent: the format it is converted from, or ``None``.
        tolerance: parity limits against the original graph and the parent; ``None`` for
            formats ``facenet model parity`` does not check (they validate themselves on export).
        runner: the runtime that runs it (parity, export validation, bench).
        bench_label: its row in ``facenet bench runtimes``, or ``None`` if not benchmarked.
        in_all: whether ``--format all`` includes it.
    """

    name: str
    description: str
    exporter: str
    files: tuple[str, ...]
    parent: str | None = None
    tolerance: Tolerance | None = None
    runner: Runner | None = None
    bench_label: str | None = None
    in_all: bool = True

    def __post_init__(self) -> None:
        if (self.tolerance is None) != (self.runner is None):
            raise ValueError(f"format {self.name}: tolerance and runner go together")

    def path(self, models_dir: Path) -> Path:
        """The single file or directory a FaceNet format is stored in.

        Raises:
            ValueError: the format writes several files (MTCNN).
        """
        if len(self.files) != 1:
            raise ValueError(f"format {self.name} writes {len(self.files)} files")
        return models_dir / self.files[0]


FORMATS: dict[str, FormatSpec] = {
    spec.name: spec
    for spec in (
        FormatSpec(
            "keras", "Keras 3 .keras archive (safe_mode=True loadable)",
            "keras:export_keras", (contracts.KERAS_FILE,),
            tolerance=FP32, runner=KERAS, bench_label="keras",
        ),
        FormatSpec(
            "savedmodel", "TF SavedModel with a serving_default signature",
            "savedmodel:export_savedmodel", (contracts.SAVEDMODEL_DIR,), parent="keras",
            tolerance=FP32, runner=SAVEDMODEL, bench_label="savedmodel",
        ),
        FormatSpec(
            "mtcnn", "MTCNN P-Net/R-Net/O-Net of mtcnn==1.0.0 to ONNX (face detection)",
            "mtcnn:export_mtcnn_format", tuple(contracts.MTCNN_FILES.values()),
        ),
        FormatSpec(
            "onnx", "ONNX (tf2onnx from the SavedModel, opset 17, contract metadata)",
            "onnx:export_onnx", (contracts.ONNX_FILE,), parent="savedmodel",
            tolerance=FP32, runner=ONNXRUNTIME, bench_label="ort-fp32",
        ),
        FormatSpec(
            "tflite", "TFLite float32 (LiteRT)",
            "tflite:export_fp32", (contracts.TFLITE_FILE,), parent="savedmodel",
            tolerance=FP32, runner=LITERT, bench_label="litert-fp32",
        ),
        FormatSpec(
            "tflite-fp16", "TFLite with float16 weights",
            "tflite:export_fp16", (contracts.TFLITE_FP16_FILE,), parent="savedmodel",
            tolerance=Tolerance(max_abs=None, min_cos=0.9999), runner=LITERT,
            bench_label="litert-fp16",
        ),
        FormatSpec(
            "tflite-int8", "TFLite with dynamic-range int8 weights",
            "tflite:export_int8", (contracts.TFLITE_INT8_FILE,), parent="savedmodel",
            tolerance=Tolerance(max_abs=None, min_cos=0.995), runner=LITERT,
            bench_label="litert-int8",
        ),
        FormatSpec(
            "onnx-int8",
            "ONNX static int8 (quantize_static, per-channel, calibrated on the train crops)",
            "onnx_int8:export_onnx_int8", (contracts.ONNX_INT8_FILE,), parent="onnx",
            tolerance=Tolerance(max_abs=None, min_cos=0.995), runner=ONNXRUNTIME,
            bench_label="ort-int8",
        ),
        FormatSpec(
            "openvino", "OpenVINO IR, float32 (openvino.convert_model of the ONNX model)",
            "openvino_ir:export_openvino", (contracts.OPENVINO_DIR,), parent="onnx",
            tolerance=FP32, runner=OPENVINO, bench_label="ov-fp32",
        ),
        FormatSpec(
            "openvino-int8",
            "OpenVINO IR int8 (NNCF post-training quantization, calibrated on the train crops)",
            "openvino_ir:export_openvino_int8", (contracts.OPENVINO_INT8_DIR,),
            parent="openvino", tolerance=Tolerance(max_abs=None, min_cos=0.995),
            runner=OPENVINO, bench_label="ov-int8",
        ),
    )
}
"""Every format, in registry order (``export --help``, ``--format all``, parity reports). MTCNN
comes before ONNX, whose default threshold is calibrated on faces the exported MTCNN finds, and
after the Keras archive, so weights that fail the strict load leave no model at all."""

FACENET_FORMATS: dict[str, FormatSpec] = {
    name: spec for name, spec in FORMATS.items() if spec.tolerance is not None
}
"""The FaceNet formats ``facenet model parity`` runs and checks, in chain order."""


def tolerance(name: str) -> Tolerance:
    """The parity tolerance of FaceNet format ``name``.

    Raises:
        KeyError: ``name`` is not a FaceNet format.
    """
    spec = FACENET_FORMATS[name]
    assert spec.tolerance is not None
    return spec.tolerance


def runner(name: str) -> Runner:
    """The runner of FaceNet format ``name``.

    Raises:
        KeyError: ``name`` is not a FaceNet format.
    """
    spec = FACENET_FORMATS[name]
    assert spec.runner is not None
    return spec.runner


def model_paths(models_dir: Path) -> dict[str, Path]:
    """Every FaceNet format's path, in chain order (what ``facenet model parity`` checks)."""
    return {name: spec.path(models_dir) for name, spec in FACENET_FORMATS.items()}
