"""The pinned ``mtcnn`` package's weights, hash-checked before they are unpickled.

The ``mtcnn`` 1.0.0 package ships its weights as ``mtcnn/assets/weights/{pnet,rnet,onet}.lz4``:
lz4-compressed joblib pickles. Unpickling executes whatever code the pickle names, so the package
is never allowed to load them itself (``mtcnn.utils.tensorflow.load_weights`` would also pick up a
``pnet.lz4`` from the current directory first). Instead the installed package is located without
importing it, its version checked, each weight file read ONCE into memory, the sha256 of those
bytes compared with the pinned digests and only then the same bytes unpickled.

Stdlib and numpy at import time (joblib, TensorFlow and ``mtcnn`` inside functions), so both the
legacy environment (reference crops) and the modern one (ONNX export, benchmarks) use it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import io
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.core.errors import EnvironmentToolError, IntegrityError

MTCNN_VERSION = "1.0.0"
"""The only ``mtcnn`` release whose weight files are trusted (``pip install mtcnn==1.0.0``)."""

WEIGHT_SHA256: dict[str, str] = {
    "pnet": "ea6b0c3e685ebee3165326ad6484acc95f2ef78f1c94fbf40a55704fa989f7b5",
    "rnet": "cb00e6460f3c98b0bfafaba3c0a0ded4bdf6e62cee7174d969e8670d7e757fee",
    "onet": "94f6ea2f4cf985275ee958cdd762d17b6009348a4fb9d8c6be39ba73ffd22ca3",
}
"""sha256 of ``mtcnn/assets/weights/<net>.lz4`` in the ``mtcnn==1.0.0`` wheel."""

_NETWORK_CLASSES = {"pnet": "PNet", "rnet": "RNet", "onet": "ONet"}


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
    module = importlib.import_module(f"mtcnn.network.{net}")
    model = getattr(module, _NETWORK_CLASSES[net])()
    model.build()
    model.set_weights(weights)
    return model


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
