"""Export the three MTCNN nets of the pinned ``mtcnn`` package to ONNX (modern environment).

The ``mtcnn`` 1.0.0 package ships its weights as ``mtcnn/assets/weights/{pnet,rnet,onet}.lz4``:
lz4-compressed joblib pickles. Unpickling executes whatever code the pickle names, so this module
never lets the package load them itself (``mtcnn.utils.tensorflow.load_weights`` would also pick up
a ``pnet.lz4`` from the current directory first). Instead it locates the installed package without
importing it, checks the installed version, reads each weight file ONCE into memory, compares the
sha256 of those bytes with the pinned digests below and only then unpickles the same bytes; any
mismatch raises :class:`~toolchain.core.errors.IntegrityError` before anything is loaded.

The ``mtcnn`` format of ``facenet model export`` (:mod:`toolchain.convert.exporters.mtcnn`).

The package's own Keras stage models (``mtcnn.network.{pnet,rnet,onet}``) receive the weights and
are traced through a ``tf.function`` with an explicit input signature and converted with
``tf2onnx.convert.from_function`` (``from_keras`` does not work with Keras 3). Each ONNX model is
validated (``onnx.checker`` plus ONNX Runtime against the Keras net on random inputs) before it is
written atomically.

TensorFlow, tf2onnx, onnx, joblib and the ``mtcnn`` package are imported inside functions only.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.convert.mtcnn_weights import (
    MTCNN_VERSION,
    WEIGHT_SHA256,
    build_keras_net,
    installed_weight_files,
    load_verified_weights,
)
from toolchain.core.atomic import write_bytes
from toolchain.core.contracts import MTCNN_FILES
from toolchain.core.errors import EnvironmentToolError, IntegrityError, ParityError
from toolchain.runtime.mtcnn import NET_OUTPUTS

log = logging.getLogger(__name__)

OPSET = 17

MAX_ABS_DIFF = 1e-4
"""Largest allowed |ONNX Runtime - Keras| on any output for random inputs in [-1, 1]."""

_INPUT_SHAPES: dict[str, tuple[int | None, ...]] = {
    "pnet": (None, None, None, 3),
    "rnet": (None, 24, 24, 3),
    "onet": (None, 48, 48, 3),
}
_CHECK_SHAPES: dict[str, list[tuple[int, int, int, int]]] = {
    "pnet": [(1, 12, 12, 3), (2, 37, 53, 3), (1, 180, 131, 3)],
    "rnet": [(1, 24, 24, 3), (7, 24, 24, 3)],
    "onet": [(1, 48, 48, 3), (5, 48, 48, 3)],
}


@dataclass(frozen=True)
class ExportedNet:
    """One converted and validated MTCNN net, not yet written.

    Attributes:
        name: ``pnet``, ``rnet`` or ``onet``.
        onnx: the serialized ONNX model.
        max_abs_diff: largest |ONNX Runtime - Keras| over the random check inputs.
    """

    name: str
    onnx: bytes
    max_abs_diff: float


def _to_onnx(net: str, model: Any) -> Any:
    """Trace ``model`` with a fixed input signature and convert it with tf2onnx."""
    import tensorflow as tf
    import tf2onnx

    names = NET_OUTPUTS[net]
    signature = [tf.TensorSpec(_INPUT_SHAPES[net], tf.float32, name="image")]

    @tf.function(input_signature=signature)
    def forward(image: Any) -> dict[str, Any]:
        return dict(zip(names, model(image), strict=True))

    try:
        proto, _ = tf2onnx.convert.from_function(forward, input_signature=signature, opset=OPSET)
    except Exception as exc:
        raise EnvironmentToolError(f"tf2onnx failed on the MTCNN {net}: {exc}") from exc
    outputs = [o.name for o in proto.graph.output]
    if outputs != list(names):
        raise EnvironmentToolError(f"tf2onnx named the {net} outputs {outputs}, expected {names}")
    return proto


def _max_diff_against_keras(net: str, model: Any, onnx_bytes: bytes) -> float:
    """Run ONNX Runtime and the Keras net on the same random inputs; return the max abs diff."""
    import onnxruntime as ort
    import tensorflow as tf

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    call = tf.function(model)
    rng = np.random.default_rng(20240611)
    worst = 0.0
    for shape in _CHECK_SHAPES[net]:
        x = rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)
        expected = [np.asarray(t) for t in call(tf.constant(x))]
        got = session.run(list(NET_OUTPUTS[net]), {session.get_inputs()[0].name: x})
        for name, e, g in zip(NET_OUTPUTS[net], expected, got, strict=True):
            if e.shape != g.shape:
                raise ParityError(f"MTCNN {net} output {name}: ONNX shape {g.shape} != {e.shape}")
            worst = max(worst, float(np.max(np.abs(e - g))))
    return worst


def convert_net(net: str, weight_file: Path) -> ExportedNet:
    """Convert one net from its verified weights and validate it (nothing is written).

    Raises:
        IntegrityError: the weight file is not the pinned one.
        ParityError: onnx.checker rejects the model, or ONNX Runtime disagrees with the Keras net
            beyond :data:`MAX_ABS_DIFF`.
        EnvironmentToolError: the conversion failed.
    """
    import onnx

    model = build_keras_net(net, load_verified_weights(net, weight_file))
    proto = _to_onnx(net, model)
    proto.doc_string = (
        f"MTCNN {net} of mtcnn=={MTCNN_VERSION} ({weight_file.name} sha256 {WEIGHT_SHA256[net]}), "
        "NHWC float32 input normalized as (rgb - 127.5) / 128"
    )
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ParityError(f"the exported MTCNN {net} fails onnx.checker: {exc}") from exc
    data = proto.SerializeToString()
    diff = _max_diff_against_keras(net, model, data)
    if diff > MAX_ABS_DIFF:
        raise ParityError(f"MTCNN {net}: ONNX Runtime differs from Keras by {diff:.3g} "
                          f"> {MAX_ABS_DIFF:g}")
    return ExportedNet(name=net, onnx=data, max_abs_diff=diff)


def export_mtcnn(models_dir: Path) -> list[Path]:
    """Export P-Net, R-Net and O-Net of the installed, hash-checked ``mtcnn`` package to ONNX.

    All three weight files are verified before any of them is unpickled, and all three nets are
    converted and validated before any file is written (each file is then written atomically),
    so a failure leaves the previous models in place.

    Returns:
        The written paths, in the order P-Net, R-Net, O-Net.
    """
    files = installed_weight_files()
    for net, path in files.items():
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            raise EnvironmentToolError(f"cannot read the mtcnn weights {path}: {exc}") from exc
        if digest != WEIGHT_SHA256[net]:
            raise IntegrityError(f"{path} has sha256 {digest}, expected {WEIGHT_SHA256[net]}")
    converted = [convert_net(net, path) for net, path in files.items()]
    written = []
    for exported in converted:
        path = Path(models_dir) / MTCNN_FILES[exported.name]
        write_bytes(path, exported.onnx)
        log.info("wrote %s (max |ORT - Keras| = %.3g)", path, exported.max_abs_diff)
        written.append(path)
    return written
