"""The ``onnx-int8`` format: static int8 quantization of ``facenet.onnx`` (see
:mod:`toolchain.convert.quantize`, which also holds the variant sweep)."""

from __future__ import annotations

from pathlib import Path

from toolchain.convert.exporters.context import ExportContext
from toolchain.convert.formats import FormatSpec
from toolchain.convert.quantize import export_int8


def export_onnx_int8(context: ExportContext, spec: FormatSpec) -> list[Path]:
    """:func:`~toolchain.convert.quantize.export_int8` with the chosen variant."""
    return [export_int8(context.layout, reference=context.reference).path]
