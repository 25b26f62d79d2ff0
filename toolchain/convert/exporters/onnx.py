"""The ``onnx`` format: tf2onnx from the SavedModel, the model contract in ``metadata_props``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import toolchain
from toolchain.convert.exporters.context import (
    INPUT_NAME,
    OUTPUT_NAMES,
    ExportContext,
    validate_outputs,
)
from toolchain.convert.formats import FormatSpec
from toolchain.convert.runners import SIGNATURE
from toolchain.core.atomic import atomic_file
from toolchain.core.contracts import INPUT_SIZE
from toolchain.core.errors import EnvironmentToolError, IntegrityError
from toolchain.evaluation.calibration import FarThreshold

ONNX_OPSET = 17

PREPROCESSING = (
    "per image over the whole 160x160x3 crop: x = float32(pixels); "
    "x = (x - mean(x)) / max(std(x), 1/sqrt(N)) with N = 160*160*3 = 76800 "
    "(toolchain.core.preprocess.prewhiten)"
)
INPUT_CONTRACT = (
    f"{INPUT_NAME}: float32 [batch, 160, 160, 3], layout NHWC, RGB face crop 160x160x3 "
    "(by default_crop: toolchain.core.crop.CropSpec; 'align' warps the five MTCNN landmarks "
    "onto a fixed template with a similarity transform, 'box' takes the MTCNN box clipped to "
    "the image; Pillow bilinear resampling), prewhitened"
)
OUTPUT_CONTRACT = (
    "embedding: float32 [batch, 128], raw output of the original Bottleneck_BatchNorm layer, "
    "NOT normalized: L2-normalize before comparing. "
    "embedding_l2: float32 [batch, 128], the same L2-normalized (x / sqrt(max(sum(x^2), 1e-10)))"
)
METRIC = (
    "euclidean distance between L2-normalized embeddings; same person if distance <= "
    "default_threshold (faces cropped by default_crop)"
)


def onnx_metadata(context: ExportContext, threshold: FarThreshold) -> dict[str, str]:
    """The contract carried in the ONNX ``metadata_props``, with the calibrated threshold."""
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
        "default_crop": threshold.crop,
        "threshold_policy": threshold.policy,
        "threshold_far": f"{threshold.far:g}",
        "threshold_impostor_pairs": str(threshold.impostor_pairs),
        "threshold_data": "; ".join(threshold.data),
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


def export_onnx(context: ExportContext, spec: FormatSpec) -> list[Path]:
    """Convert the SavedModel; check it, run it in ONNX Runtime, compare, write it."""
    import onnx

    proto = _onnx_model(context.path("savedmodel"))
    _name_dims(proto)
    proto.doc_string = (
        "FaceNet InceptionResNetV1 recovered from facenet_keras.h5; see metadata_props 'contract'"
    )
    final = context.path(spec.name)
    with atomic_file(final) as tmp:
        onnx.save(proto, str(tmp))
        metadata = onnx_metadata(context, context.calibrate(tmp))
        onnx.helper.set_model_props(proto, metadata)
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
        validate_outputs(spec, tmp, context)
    return [final]
