"""Static int8 FaceNet on ONNX Runtime: how the ``onnx-int8`` format is quantized and judged.

The fp32 ``facenet.onnx`` is quantized with :func:`onnxruntime.quantization.quantize_static`,
calibrated ONLY on the TRAIN reference crops (``reference/index.json`` split ``train``),
prewhitened by :func:`toolchain.core.preprocess.prewhiten` exactly as at inference. The val crops
are never seen by the calibration; they are what the accuracy is judged on, together with the train
crops, against the ORIGINAL graph's reference embeddings.

:mod:`toolchain.convert.int8_sweep` quantizes every :data:`VARIANTS` entry, checks and times it;
:data:`CHOSEN` is the fastest variant that met the accuracy bound in that sweep, and is what
:func:`export_int8` (the ``onnx-int8`` exporter, :mod:`toolchain.convert.exporters.onnx_int8`)
writes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from toolchain.convert.formats import FORMATS, tolerance
from toolchain.convert.parity import L2_OUTPUT_MAX_ABS, Reference, identify, load_reference
from toolchain.core.atomic import atomic_file
from toolchain.core.errors import MissingArtifactError, ParityError
from toolchain.core.paths import Layout
from toolchain.core.preprocess import l2_normalize, prewhiten

log = logging.getLogger(__name__)

MIN_COSINE = tolerance("onnx-int8").min_cos
"""Smallest allowed cosine between an int8 embedding and the ORIGINAL graph's, on every crop
(the ``onnx-int8`` tolerance of the format table)."""

CALIBRATION_BATCH = 1
"""Crops per calibration run; the histogram calibrators (entropy, percentile) need equal-sized
batches, and one crop per run is the only size that divides every train count."""

EXPORT_HINT = "run `nox -s export` (it runs `facenet model export --format onnx`)"


@dataclass(frozen=True)
class Int8Variant:
    """One way of quantizing the model.

    Attributes:
        name: short label used in reports.
        quant_format: ``qdq`` (QuantizeLinear/DequantizeLinear pairs, fused by ORT at load) or
            ``qoperator`` (QLinearConv & co. written into the graph).
        per_channel: one weight scale per output channel (else one per tensor).
        activations: ``u8`` or ``s8``.
        weights: ``s8`` or ``u8``.
        reduce_range: 7-bit weights (avoids the u8*s8 pair-sum saturation of AVX2 ``vpmaddubsw``).
        op_types: operator types to quantize (empty: everything ORT can quantize).
        exclude: ``first_conv`` (the stem's first convolution) and/or ``head`` (the last dense
            layer and every node after it: bottleneck, its batch norm, the L2 output), kept in
            float.
        calibration: ``minmax``, ``entropy`` or ``percentile``.
        preprocess: run ``quant_pre_process`` (ORT shape inference + graph optimization) first.
    """

    name: str
    quant_format: str = "qdq"
    per_channel: bool = True
    activations: str = "u8"
    weights: str = "s8"
    reduce_range: bool = False
    op_types: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ("head",)
    calibration: str = "minmax"
    preprocess: bool = True


VARIANTS: tuple[Int8Variant, ...] = (
    Int8Variant("qdq-pc-u8s8"),
    Int8Variant("qdq-pc-u8s8-noprep", preprocess=False),
    Int8Variant("qdq-pt-u8s8", per_channel=False),
    Int8Variant("qdq-pc-u8s8-rr", reduce_range=True),
    Int8Variant("qdq-pc-u8u8", weights="u8"),
    Int8Variant("qdq-pc-s8s8", activations="s8"),
    Int8Variant("qdq-pc-u8s8-conv-only", op_types=("Conv",)),
    Int8Variant("qdq-pc-u8s8-first-float", exclude=("first_conv", "head")),
    Int8Variant("qdq-pc-u8s8-head-int8", exclude=()),
    Int8Variant("qdq-pc-u8s8-percentile", calibration="percentile"),
    Int8Variant("qdq-pc-u8s8-entropy", calibration="entropy"),
    Int8Variant("qdq-pc-u8s8-percentile-first-float", calibration="percentile",
                exclude=("first_conv", "head")),
    Int8Variant("qop-pc-u8s8", quant_format="qoperator"),
    Int8Variant("qop-pt-u8s8", quant_format="qoperator", per_channel=False),
)
"""Everything :func:`sweep_variants` tries (the issue's list: format, per-channel vs per-tensor,
u8/s8 choices, reduce_range, excluded nodes, ORT pre-processing, calibration method)."""

CHOSEN = next(v for v in VARIANTS if v.name == "qdq-pc-u8s8-percentile-first-float")
"""The variant the ``onnx-int8`` exporter writes: :func:`toolchain.convert.int8_sweep.best_variant`
of the sweep (its measurements are in ``reports/int8_variants.json``). The accepted u8s8 variants
run equally fast within the machine's noise; percentile calibration with the stem's first
convolution in float kept the largest margin on the held-out val crops."""


@dataclass
class Int8Check:
    """Accuracy of an int8 model on the reference crops.

    Attributes:
        min_cos_original: smallest cosine vs the ORIGINAL graph over all crops (the bound).
        min_cos_original_val: the same over the val crops only (never calibrated on).
        min_cos_fp32_val: smallest cosine vs the fp32 ONNX model over the val crops.
        mean_cos_original: mean cosine vs the ORIGINAL graph over all crops.
        identified: val crops whose nearest train crop is the same person.
        total: val crops.
        l2_max_abs: max ``|embedding_l2 - l2_normalize(embedding)|`` (``None``: no such output).
    """

    min_cos_original: float
    min_cos_original_val: float
    min_cos_fp32_val: float
    mean_cos_original: float
    identified: int
    total: int
    l2_max_abs: float | None = None

    @property
    def ok(self) -> bool:
        """Whether the accuracy bound holds (cosine, perfect identification, L2 output)."""
        return (
            self.min_cos_original >= MIN_COSINE
            and self.total > 0
            and self.identified == self.total
            and (self.l2_max_abs is None or self.l2_max_abs <= L2_OUTPUT_MAX_ABS)
        )

    def describe(self) -> str:
        """One line for logs and errors."""
        return (
            f"min cos vs original {self.min_cos_original:.5f} (val {self.min_cos_original_val:.5f},"
            f" bound {MIN_COSINE}), min cos vs fp32 on val {self.min_cos_fp32_val:.5f}, "
            f"identification {self.identified}/{self.total}"
            + ("" if self.l2_max_abs is None else
               f", embedding_l2 max|d| {self.l2_max_abs:.1e} (<= {L2_OUTPUT_MAX_ABS:g})")
        )


def fp32_model(layout: Layout) -> Path:
    """The fp32 ONNX model, or :class:`MissingArtifactError` naming the nox session."""
    path = FORMATS["onnx"].path(layout.models_dir)
    if not path.is_file():
        raise MissingArtifactError(f"{path} is missing; {EXPORT_HINT}")
    return path


def calibration_batches(reference: Reference) -> list[np.ndarray]:
    """Prewhitened TRAIN crops in batches of :data:`CALIBRATION_BATCH` (val never included)."""
    rows = [i for i, split in enumerate(reference.splits) if split == "train"]
    if not rows:
        raise MissingArtifactError(
            "the reference has no train crops to calibrate on; run `nox -s recover`"
        )
    x = prewhiten(reference.crops[rows])
    return [x[i : i + CALIBRATION_BATCH] for i in range(0, len(x), CALIBRATION_BATCH)]


class _Reader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over prepared batches."""

    def __init__(self, input_name: str, batches: Sequence[np.ndarray]):
        self._input_name = input_name
        self._batches = list(batches)
        self._it: Iterator[np.ndarray] = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        return None if batch is None else {self._input_name: batch}

    def rewind(self) -> None:
        self._it = iter(self._batches)


def _excluded_nodes(model_path: Path, exclude: Sequence[str]) -> list[str]:
    import onnx

    nodes = list(onnx.load(str(model_path), load_external_data=False).graph.node)
    names: list[str] = []
    if "first_conv" in exclude:
        names += [n.name for n in nodes if n.op_type == "Conv"][:1]
    if "head" in exclude:
        dense = [i for i, n in enumerate(nodes) if n.op_type in ("MatMul", "Gemm")]
        if dense:
            names += [n.name for n in nodes[dense[-1] :]]
    return names


def quantize(
    fp32: Path, output: Path, variant: Int8Variant, batches: Sequence[np.ndarray]
) -> None:
    """Quantize ``fp32`` into ``output`` as ``variant`` describes, calibrating on ``batches``."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    types = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}
    formats = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    input_name = onnx.load(str(fp32), load_external_data=False).graph.input[0].name
    reader = _Reader(input_name, batches)
    with tempfile.TemporaryDirectory(prefix="facenet-int8-") as work:
        source = fp32
        if variant.preprocess:
            source = Path(work) / "preprocessed.onnx"
            quant_pre_process(str(fp32), str(source), skip_symbolic_shape=True)
        chatter = io.StringIO()  # the histogram calibrators print progress to stdout
        with contextlib.redirect_stdout(chatter):
            quantize_static(
                str(source),
                str(output),
                reader,
                quant_format=formats[variant.quant_format],
                op_types_to_quantize=list(variant.op_types) or None,
                per_channel=variant.per_channel,
                reduce_range=variant.reduce_range,
                activation_type=types[variant.activations],
                weight_type=types[variant.weights],
                nodes_to_exclude=_excluded_nodes(source, variant.exclude) or None,
                calibrate_method=methods[variant.calibration],
            )
        log.debug("quantize_static: %s", chatter.getvalue().strip())
    model = onnx.load(str(output))
    onnx.checker.check_model(model)
    described = ", ".join(f"{k}={v}" for k, v in asdict(variant).items())
    props = {p.key: p.value for p in model.metadata_props}
    props["quantization"] = (
        f"onnxruntime {_ort_version()} quantize_static ({described}); calibrated on "
        f"{sum(len(b) for b in batches)} prewhitened TRAIN reference crops"
    )
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(output))


def _ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def run_model(model: Path, x: np.ndarray, batch: int = 32) -> dict[str, np.ndarray]:
    """Every output of ``model`` (by name, in graph order) on prewhitened crops ``x``."""
    from toolchain.runtime.ort_options import OrtSettings, create_session

    session = create_session(model, OrtSettings(cache_optimized=False))
    name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    parts = [session.run(names, {name: x[i : i + batch]}) for i in range(0, len(x), batch)]
    return {n: np.concatenate([p[k] for p in parts]) for k, n in enumerate(names)}


def embed(model: Path, x: np.ndarray) -> np.ndarray:
    """The first output (the raw embedding) of ``model`` on prewhitened crops ``x``."""
    return next(iter(run_model(model, x).values()))


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(np.sum(l2_normalize(a) * l2_normalize(b), axis=-1, dtype=np.float64))


def check_int8(
    outputs: dict[str, np.ndarray], fp32: np.ndarray, reference: Reference
) -> Int8Check:
    """Judge an int8 model's outputs (first: raw embedding) against the original and fp32."""
    int8 = next(iter(outputs.values()))
    val = np.array([s == "val" for s in reference.splits])
    vs_original = _cos(int8, reference.embeddings)
    vs_fp32 = _cos(int8, fp32)
    ident = identify(int8, reference)
    l2 = outputs.get("embedding_l2")
    return Int8Check(
        min_cos_original=float(vs_original.min()),
        min_cos_original_val=float(vs_original[val].min()) if val.any() else float("nan"),
        min_cos_fp32_val=float(vs_fp32[val].min()) if val.any() else float("nan"),
        mean_cos_original=float(vs_original.mean()),
        identified=ident.correct_closed,
        total=ident.total,
        l2_max_abs=None if l2 is None else float(np.max(np.abs(l2_normalize(int8) - l2))),
    )


@dataclass
class Int8Export:
    """What :func:`export_int8` wrote.

    Attributes:
        path: ``models/facenet_int8.onnx``.
        variant: how it was quantized.
        check: its accuracy on the reference crops.
        calibration_crops: number of train crops calibrated on.
    """

    path: Path
    variant: Int8Variant
    check: Int8Check
    calibration_crops: int


def export_int8(
    layout: Layout, variant: Int8Variant = CHOSEN, reference: Reference | None = None
) -> Int8Export:
    """The ``onnx-int8`` exporter: quantize, validate, then atomically write ``facenet_int8.onnx``.

    Validation: ``onnx.checker``, ONNX Runtime runs it on every reference crop, and
    :class:`Int8Check` holds (min cosine vs the original >= :data:`MIN_COSINE`, every val crop
    identified). Nothing is written when any of it fails.

    Raises:
        MissingArtifactError: ``facenet.onnx`` or the reference is missing.
        ParityError: the quantized model misses the accuracy bound.
    """
    fp32 = fp32_model(layout)
    reference = reference or load_reference(layout)
    batches = calibration_batches(reference)
    x = prewhiten(reference.crops)
    final = FORMATS["onnx-int8"].path(layout.models_dir)
    with atomic_file(final) as tmp:
        quantize(fp32, tmp, variant, batches)
        check = check_int8(run_model(tmp, x), embed(fp32, x), reference)
        log.info("onnx-int8 (%s): %s", variant.name, check.describe())
        if not check.ok:
            raise ParityError(f"int8 model ({variant.name}) misses the bound: {check.describe()}")
    return Int8Export(final, variant, check, sum(len(b) for b in batches))
