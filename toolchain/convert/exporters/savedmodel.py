"""The ``savedmodel`` format: ``facenet_savedmodel/`` with a ``serving_default`` signature.

The ONNX and TFLite converters read it from disk; :func:`is_current` tells the orchestrator
whether the copy there (its stamp ``assets.extra/facenet_export.json``: toolchain version and
manifest sha256) can be reused or must be exported first.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from toolchain.convert.exporters.context import (
    INPUT_NAME,
    STAMP_FILE,
    ExportContext,
    validate_outputs,
)
from toolchain.convert.formats import FormatSpec
from toolchain.convert.runners import SIGNATURE
from toolchain.core.atomic import atomic_dir
from toolchain.core.contracts import INPUT_SIZE
from toolchain.core.errors import IntegrityError

log = logging.getLogger(__name__)


def is_current(context: ExportContext) -> bool:
    """Whether this run wrote the SavedModel or the one on disk has the current stamp."""
    path = context.path("savedmodel")
    if "savedmodel" in context.written:
        return True
    stamp_file = path / STAMP_FILE
    if not stamp_file.is_file():
        return False
    try:
        on_disk = json.loads(stamp_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    if on_disk != context.stamp:
        return False
    log.info("reusing %s (stamp matches the weights manifest)", path)
    return True


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


def export_savedmodel(context: ExportContext, spec: FormatSpec) -> list[Path]:
    """Export a ``tf.Module`` holding the weights and the signature.

    Keras' ``ExportArchive`` stores every variable twice (``variables`` and ``_all_variables``,
    175 MB); a plain module tracking the underlying ``tf.Variable`` objects stores them once.
    """
    import tensorflow as tf

    model = context.model
    input_spec = tf.TensorSpec([None, INPUT_SIZE, INPUT_SIZE, 3], tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[input_spec], autograph=False)
    def serve(x: Any) -> dict[str, Any]:
        raw, l2 = model(x, training=False)
        return {"embedding": raw, "embedding_l2": l2}

    module = tf.Module(name="facenet")
    module.model_variables = [v.value for v in model.weights]
    module.serve = serve
    final = context.path(spec.name)
    with atomic_dir(final) as tmp:
        tf.saved_model.save(module, str(tmp), signatures={SIGNATURE: serve})
        (tmp / STAMP_FILE).parent.mkdir(parents=True, exist_ok=True)
        (tmp / STAMP_FILE).write_text(json.dumps(context.stamp, indent=2, sort_keys=True) + "\n")
        _signature_check(tmp)
        validate_outputs(spec, tmp, context)
    return [final]
