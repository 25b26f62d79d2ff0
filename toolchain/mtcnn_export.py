"""Export the three MTCNN nets of the pinned ``mtcnn`` package to ONNX (modern environment).

The ``mtcnn`` 1.0.0 package ships its weights as ``mtcnn/assets/weights/{pnet,rnet,onet}.lz4``:
lz4-compressed joblib pickles. Unpickling executes whatever code the pickle names, so this module
never lets the package load them itself (``mtcnn.utils.tensorflow.load_weights`` would also pick up
a ``pnet.lz4`` from the current directory first). Instead it locates the installed package without
importing it, checks the installed version, reads each weight file ONCE into memory, compares the
sha256 of those bytes with the pinned digests below and only then unpickles the same bytes; any
mismatch raises :class:`~toolchain.errors.IntegrityError` before anything is loaded.

Registered as the ``mtcnn`` format of ``facenet export`` (``toolchain.exporters``).

The package's own Keras stage models (``mtcnn.network.{pnet,rnet,onet}``) receive the weights and
are traced through a ``tf.function`` with an explicit input signature and converted with
``tf2onnx.convert.from_function`` (``from_keras`` does not work with Keras 3). Each ONNX model is
validated (``onnx.checker`` plus ONNX Runtime against the Keras net on random inputs) before it is
written atomically.

TensorFlow, tf2onnx, onnx, joblib and the ``mtcnn`` package are imported inside functions only.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.atomic import write_bytes
from toolchain.errors import EnvironmentToolError, InputError, IntegrityError, ParityError
from toolchain.exporters import ExportContext, register_exporter
from toolchain.paths import Layout
from toolchain.runtime.mtcnn import MODEL_FILES, NET_OUTPUTS, MTCNNDetector

log = logging.getLogger(__name__)

MTCNN_VERSION = "1.0.0"
"""The only ``mtcnn`` release whose weight files are trusted (``pip install mtcnn==1.0.0``)."""

WEIGHT_SHA256: dict[str, str] = {
    "pnet": "ea6b0c3e685ebee3165326ad6484acc95f2ef78f1c94fbf40a55704fa989f7b5",
    "rnet": "cb00e6460f3c98b0bfafaba3c0a0ded4bdf6e62cee7174d969e8670d7e757fee",
    "onet": "94f6ea2f4cf985275ee958cdd762d17b6009348a4fb9d8c6be39ba73ffd22ca3",
}
"""sha256 of ``mtcnn/assets/weights/<net>.lz4`` in the ``mtcnn==1.0.0`` wheel."""

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
_NETWORK_CLASSES = {"pnet": "PNet", "rnet": "RNet", "onet": "ONet"}


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


def installed_weight_files() -> dict[str, Path]:
    """Locate the weight files of the installed ``mtcnn`` package without importing it.

    Raises:
        EnvironmentToolError: ``mtcnn`` is not installed, or not version 1.0.0.
    """
    try:
        version = importlib.metadata.version("mtcnn")
    except importlib.metadata.PackageNotFoundError as exc:
        raise EnvironmentToolError(
            f"the mtcnn package is not installed; install mtcnn=={MTCNN_VERSION} "
            "(the modern environment of `nox -s export` has it)"
        ) from exc
    if version != MTCNN_VERSION:
        raise EnvironmentToolError(
            f"mtcnn {version} is installed but only mtcnn=={MTCNN_VERSION} weights are trusted"
        )
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or not spec.submodule_search_locations:
        raise EnvironmentToolError("the mtcnn package cannot be located")
    root = Path(next(iter(spec.submodule_search_locations)))
    return {net: root / "assets" / "weights" / f"{net}.lz4" for net in WEIGHT_SHA256}


def load_verified_weights(net: str, path: Path) -> list[np.ndarray]:
    """Read ``path`` once, check its sha256 against the pin, then unpickle those same bytes.

    Hashing and loading the same in-memory bytes leaves no window in which the file could be
    swapped between the check and the load.

    Raises:
        EnvironmentToolError: the file is missing or unreadable.
        IntegrityError: the digest differs from :data:`WEIGHT_SHA256` (nothing is unpickled).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EnvironmentToolError(f"cannot read the mtcnn weights {path}: {exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != WEIGHT_SHA256[net]:
        raise IntegrityError(
            f"{path} has sha256 {digest}, expected {WEIGHT_SHA256[net]}: refusing to unpickle it"
        )
    import joblib

    weights = joblib.load(io.BytesIO(data))
    if not isinstance(weights, list) or not all(isinstance(w, np.ndarray) for w in weights):
        raise IntegrityError(f"{path} does not hold a list of weight arrays")
    return weights


def build_keras_net(net: str, weights: list[np.ndarray]) -> Any:
    """Build the package's own Keras model for ``net`` and set its verified weights."""
    import importlib

    module = importlib.import_module(f"mtcnn.network.{net}")
    model = getattr(module, _NETWORK_CLASSES[net])()
    model.build()
    model.set_weights(weights)
    return model


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
        path = Path(models_dir) / MODEL_FILES[exported.name]
        write_bytes(path, exported.onnx)
        log.info("wrote %s (max |ORT - Keras| = %.3g)", path, exported.max_abs_diff)
        written.append(path)
    return written


@register_exporter("mtcnn", "MTCNN P-Net/R-Net/O-Net of mtcnn==1.0.0 to ONNX (face detection)")
def export_mtcnn_format(context: ExportContext) -> list[Path]:
    """The ``mtcnn`` export format: :func:`export_mtcnn` into the artifacts' models directory."""
    return export_mtcnn(context.layout.models_dir)


def package_detector() -> Any:
    """The ``mtcnn`` package's own ``MTCNN`` detector, built from the hash-checked weights.

    ``mtcnn.MTCNN()`` would unpickle the weight files itself (trying the current directory
    first); here each stage object is given a model built by :func:`build_keras_net` instead.
    """
    from mtcnn import MTCNN
    from mtcnn.stages import StageONet, StagePNet, StageRNet
    from mtcnn.stages.base import StageBase

    files = installed_weight_files()
    stages = []
    for index, (net, cls) in enumerate(
            [("pnet", StagePNet), ("rnet", StageRNet), ("onet", StageONet)], start=1):
        stage = cls.__new__(cls)
        model = build_keras_net(net, load_verified_weights(net, files[net]))
        StageBase.__init__(stage, stage_name=f"Stage {net.upper()}", stage_id=index, model=model)
        stages.append(stage)
    return MTCNN(stages=stages)


def _summary(times: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
            "mean_ms": statistics.fmean(times)}


def bench_detection(photos: Sequence[np.ndarray], models_dir: Path | None = None,
                    warmup: int = 3) -> dict[str, Any]:
    """Time face detection per image: the ONNX runtime detector versus the ``mtcnn`` package.

    Both detectors get ``warmup`` untimed calls first; then each photo is timed with ours and
    with the package back to back, so both see the same machine load. The package is imported
    here (it needs TensorFlow); ours uses only ONNX Runtime, from ``models_dir`` (default: the
    artifacts' models directory).

    Returns:
        ``{"images": n, "ours": {median_ms, min_ms, max_ms, mean_ms}, "package": {...},
        "speedup_median": package median / our median, "speedup_per_image_median": median over
        photos of package time / our time}``.
    """
    if not photos:
        raise InputError("no photos to benchmark")
    ours = MTCNNDetector(Layout().models_dir if models_dir is None else models_dir)
    package = package_detector()
    for image in photos[:warmup]:
        ours.detect(image)
        package.detect_faces(image)
    our_times, package_times = [], []
    for image in photos:
        start = time.perf_counter()
        ours.detect(image)
        middle = time.perf_counter()
        package.detect_faces(image)
        package_times.append((time.perf_counter() - middle) * 1000.0)
        our_times.append((middle - start) * 1000.0)
    result: dict[str, Any] = {
        "images": len(photos),
        "ours": _summary(our_times),
        "package": _summary(package_times),
    }
    result["speedup_median"] = result["package"]["median_ms"] / result["ours"]["median_ms"]
    result["speedup_per_image_median"] = statistics.median(
        p / o for p, o in zip(package_times, our_times, strict=True))
    return result
