"""The ``keras`` format: ``facenet.keras``, loadable with ``safe_mode=True``."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from toolchain.convert.exporters.context import ExportContext, validate_outputs
from toolchain.convert.formats import FormatSpec
from toolchain.core.atomic import atomic_file


def export_keras(context: ExportContext, spec: FormatSpec) -> list[Path]:
    """Save the model as a ``.keras`` archive; reload it with ``safe_mode=True`` and compare."""
    model = context.model  # built and strictly loaded before anything is created on disk
    final = context.path(spec.name)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".keras-staging.", dir=final.parent))
    try:
        staged = staging / final.name
        model.save(staged)
        validate_outputs(spec, staged, context)
        with atomic_file(final) as tmp:
            os.replace(staged, tmp)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [final]
