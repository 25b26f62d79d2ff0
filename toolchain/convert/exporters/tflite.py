"""The TFLite formats: ``TFLiteConverter.from_saved_model``, float32, float16 or int8 weights."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from toolchain.convert.exporters.context import ExportContext, validate_outputs
from toolchain.convert.formats import FormatSpec
from toolchain.convert.runners import SIGNATURE
from toolchain.core.atomic import atomic_file
from toolchain.core.errors import EnvironmentToolError

Quantization = Literal["fp32", "fp16", "int8"]


def _convert(context: ExportContext, spec: FormatSpec, quantization: Quantization) -> list[Path]:
    """Convert the SavedModel, run the result in LiteRT on the probe crops, write it."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(context.path("savedmodel")), signature_keys=[SIGNATURE]
    )
    if quantization != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    try:
        flatbuffer = converter.convert()
    except Exception as exc:  # the converter raises ConverterError and plain Exceptions
        raise EnvironmentToolError(f"TFLite conversion ({spec.name}) failed: {exc}") from exc
    final = context.path(spec.name)
    with atomic_file(final) as tmp:
        tmp.write_bytes(flatbuffer)
        validate_outputs(spec, tmp, context)
    return [final]


def export_fp32(context: ExportContext, spec: FormatSpec) -> list[Path]:
    """Float32 TFLite."""
    return _convert(context, spec, "fp32")


def export_fp16(context: ExportContext, spec: FormatSpec) -> list[Path]:
    """TFLite with float16 weights."""
    return _convert(context, spec, "fp16")


def export_int8(context: ExportContext, spec: FormatSpec) -> list[Path]:
    """TFLite with dynamic-range int8 weights."""
    return _convert(context, spec, "int8")
