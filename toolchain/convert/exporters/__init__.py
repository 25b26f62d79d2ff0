"""Exporters: one module per format family, run by one orchestrator.

The formats and which function exports each are declared in
:data:`toolchain.convert.formats.FORMATS`; :mod:`.registry` resolves and runs them in parent-chain
order, :mod:`.context` holds what they share. Modules: :mod:`.keras`, :mod:`.savedmodel`,
:mod:`.onnx`, :mod:`.tflite` (float32, float16, dynamic int8), :mod:`.onnx_int8` (static int8),
:mod:`.mtcnn`.
"""

from toolchain.convert.exporters.context import (
    INPUT_NAME,
    OUTPUT_NAMES,
    STAMP_FILE,
    ExportContext,
)
from toolchain.convert.exporters.registry import (
    ExportResult,
    resolve,
    run_exporters,
    write_export_report,
)

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAMES",
    "STAMP_FILE",
    "ExportContext",
    "ExportResult",
    "resolve",
    "run_exporters",
    "write_export_report",
]
