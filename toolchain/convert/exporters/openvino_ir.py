"""The ``openvino`` and ``openvino-int8`` formats: OpenVINO IR from ``facenet.onnx``, and its NNCF
post-training int8 quantization calibrated on the TRAIN reference crops only.

``openvino.convert_model`` reads the fp32 ONNX model; its ``metadata_props`` (the model contract,
default threshold and crop, weights sha256) land in the IR's ``rt_info["framework"]``, where
:mod:`toolchain.runtime.backends` reads them back. The IR keeps float32 weights
(``compress_to_fp16=False``): parity holds it to the fp32 tolerance.

The int8 IR is ``nncf.quantize`` of the fp32 IR with :data:`INT8_SETTINGS`, calibrated on the
prewhitened train crops exactly as the ``onnx-int8`` format (:func:`toolchain.convert.quantize.
calibration_batches`); the val crops are only judged on. Before it is written it must meet the
int8 bound of :class:`toolchain.convert.quantize.Int8Check` on every reference crop.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from toolchain.convert.exporters.context import ExportContext, validate_outputs
from toolchain.convert.formats import FormatSpec
from toolchain.convert.quantize import calibration_batches, check_int8, embed
from toolchain.core.atomic import atomic_dir, sha256_file
from toolchain.core.contracts import OPENVINO_XML
from toolchain.core.errors import MissingArtifactError, ParityError
from toolchain.core.preprocess import prewhiten
from toolchain.runtime.backends import OPENVINO_FRAMEWORK_INFO

log = logging.getLogger(__name__)

CONVERSION_KEY = "openvino_conversion"
"""The ``rt_info["framework"]`` entry saying how an IR was made."""


@dataclass(frozen=True)
class OpenVinoInt8Settings:
    """How NNCF quantizes the IR.

    Attributes:
        preset: ``performance`` (symmetric activations) or ``mixed`` (asymmetric).
        fast_bias_correction: NNCF's fast bias correction; off runs the full one, which
            re-estimates every quantized layer's bias shift on the calibration crops.
        keep_float: ``first_conv`` (the stem's first convolution) and/or ``head`` (the bottleneck
            dense layer and every node after it: its batch norm, the L2 output) left in float.
        range_estimator: NNCF's activation range estimator set (``minmax``, ``mean_minmax``...);
            ``default``: NNCF's own choice for the preset.
    """

    preset: str = "performance"
    fast_bias_correction: bool = False
    keep_float: tuple[str, ...] = ("first_conv", "head")
    range_estimator: str = "default"


INT8_SETTINGS = OpenVinoInt8Settings(range_estimator="minmax")
"""What ``openvino-int8`` is quantized with. Tried on the reference crops (min cosine vs the
original over all crops; the bound is 0.995): NNCF's defaults 0.983; its mixed preset 0.976;
mean-quantile ranges 0.951; the stem's first convolution and the bottleneck kept in float (as the
``onnx-int8`` variant keeps them) 0.977, with the full bias correction 0.988, and with global
min-max activation ranges on top 0.997 (histogram ranges 0.996). Every variant identified 25/25."""


def _source(context: ExportContext) -> Path:
    path = context.path("onnx")
    if not path.is_file():
        raise MissingArtifactError(
            f"{path} is missing; run `facenet model export --format onnx` first")
    return path


def _save(model: Any, directory: Path, note: str) -> Path:
    import openvino as ov

    model.set_rt_info(note, [OPENVINO_FRAMEWORK_INFO, CONVERSION_KEY])
    xml = directory / OPENVINO_XML
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return xml


def export_openvino(context: ExportContext, spec: FormatSpec) -> list[Path]:
    """Convert ``facenet.onnx`` to an fp32 IR; validate it on OpenVINO; write the directory."""
    import openvino as ov

    source = _source(context)
    model = ov.convert_model(str(source))
    note = (f"openvino {ov.__version__} convert_model of {source.name} (sha256 "
            f"{sha256_file(source)}), float32 weights")
    final = context.path(spec.name)
    with atomic_dir(final) as tmp:
        _save(model, tmp, note)
        validate_outputs(spec, tmp, context)
    return [final]


def _float_nodes(model: Any, keep_float: tuple[str, ...]) -> list[str]:
    ops = list(model.get_ordered_ops())
    names: list[str] = []
    if "first_conv" in keep_float:
        names += [op.get_friendly_name() for op in ops if op.get_type_name() == "Convolution"][:1]
    if "head" in keep_float:
        dense = [i for i, op in enumerate(ops) if op.get_type_name() == "MatMul"]
        names += [op.get_friendly_name() for op in ops[dense[-1]:]] if dense else []
    return names


def quantize_ir(fp32_xml: Path, settings: OpenVinoInt8Settings, batches: list[Any]) -> Any:
    """``nncf.quantize`` of the IR at ``fp32_xml`` calibrated on ``batches`` (prewhitened)."""
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    model = ov.Core().read_model(str(fp32_xml))
    advanced = None
    if settings.range_estimator != "default":
        advanced = AdvancedQuantizationParameters(
            activations_range_estimator_params=getattr(
                RangeEstimatorParametersSet, settings.range_estimator.upper()))
    presets = {"performance": nncf.QuantizationPreset.PERFORMANCE,
               "mixed": nncf.QuantizationPreset.MIXED}
    return nncf.quantize(
        model, nncf.Dataset(batches), preset=presets[settings.preset],
        subset_size=len(batches), fast_bias_correction=settings.fast_bias_correction,
        ignored_scope=nncf.IgnoredScope(names=_float_nodes(model, settings.keep_float),
                                        validate=False),
        advanced_parameters=advanced,
    )


def export_openvino_int8(context: ExportContext, spec: FormatSpec) -> list[Path]:
    """Quantize the fp32 IR with NNCF on the train crops; check the int8 bound; write it.

    Raises:
        MissingArtifactError: the fp32 IR or the reference is missing.
        ParityError: the quantized model misses the int8 bound.
    """
    import nncf

    assert spec.parent is not None and spec.runner is not None
    fp32_xml = context.path(spec.parent) / OPENVINO_XML
    if not fp32_xml.is_file():
        raise MissingArtifactError(
            f"{fp32_xml} is missing; run `facenet model export --format {spec.parent}` first")
    reference = context.reference
    batches = calibration_batches(reference)
    quantized = quantize_ir(fp32_xml, INT8_SETTINGS, batches)
    described = ", ".join(f"{k}={v}" for k, v in asdict(INT8_SETTINGS).items())
    note = (f"nncf {nncf.__version__} quantize ({described}) of {fp32_xml.parent.name}; "
            f"calibrated on {len(batches)} prewhitened TRAIN reference crops")
    x = prewhiten(reference.crops)
    final = context.path(spec.name)
    with atomic_dir(final) as tmp:
        _save(quantized, tmp, note)
        check = check_int8(spec.runner.run(tmp, x), embed(_source(context), x), reference)
        log.info("openvino-int8: %s", check.describe())
        if not check.ok:
            raise ParityError(f"openvino-int8 misses the int8 bound: {check.describe()}")
    return [final]
