"""The ``mtcnn`` format: the three MTCNN nets of the pinned ``mtcnn`` package as ONNX (see
:mod:`toolchain.convert.mtcnn_export`)."""

from __future__ import annotations

from pathlib import Path

from toolchain.convert.exporters.context import ExportContext
from toolchain.convert.formats import FormatSpec
from toolchain.convert.mtcnn_export import export_mtcnn


def export_mtcnn_format(context: ExportContext, spec: FormatSpec) -> list[Path]:
    """:func:`~toolchain.convert.mtcnn_export.export_mtcnn` into the artifacts' models folder."""
    return export_mtcnn(context.layout.models_dir)
