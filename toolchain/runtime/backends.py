"""The two CPU runtimes the face pipeline runs on: ONNX Runtime and OpenVINO.

A :class:`ModelSession` is one loaded model with the little the pipeline needs from it: its input
and output names and shapes, its metadata (the ONNX ``metadata_props``; OpenVINO keeps them in the
model's ``rt_info["framework"]``, through ``convert_model`` and its IR) and ``run``. The embedder
and the MTCNN nets load through :func:`open_session`, so ``--runtime openvino`` runs the whole
pipeline on OpenVINO alone: OpenVINO reads the MTCNN ``.onnx`` files directly, and FaceNet from its
IR (``facenet model export --format openvino``). Neither runtime is imported before a model is
loaded.

OpenVINO sessions are compiled with ``INFERENCE_PRECISION_HINT=f32``: on a CPU with bf16
instructions (AVX-512 BF16, AMX) OpenVINO otherwise runs float layers in bfloat16, which moves a
FaceNet embedding far outside the fp32 tolerance of the format table.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from toolchain.core.contracts import (
    ONNX_FILE,
    ONNX_INT8_FILE,
    OPENVINO_DIR,
    OPENVINO_INT8_DIR,
    OPENVINO_XML,
)
from toolchain.core.errors import EnvironmentToolError
from toolchain.runtime.ort_options import DEFAULT_SETTINGS, OrtSettings, core_count, create_session

log = logging.getLogger(__name__)

Runtime = Literal["onnxruntime", "openvino"]
Precision = Literal["fp32", "int8"]

RUNTIMES: tuple[Runtime, ...] = ("onnxruntime", "openvino")
"""``--runtime`` choices; the first is the default."""

PRECISIONS: tuple[Precision, ...] = ("fp32", "int8")
"""``--precision`` choices; the first is the default."""

EMBEDDER_FILES: dict[tuple[str, str], str] = {
    ("onnxruntime", "fp32"): ONNX_FILE,
    ("onnxruntime", "int8"): ONNX_INT8_FILE,
    ("openvino", "fp32"): f"{OPENVINO_DIR}/{OPENVINO_XML}",
    ("openvino", "int8"): f"{OPENVINO_INT8_DIR}/{OPENVINO_XML}",
}
"""The FaceNet model each runtime and precision embeds with, relative to ``artifacts/models``."""

EXPORT_HINTS: dict[tuple[str, str], str] = {
    ("onnxruntime", "fp32"): "nox -s export",
    ("onnxruntime", "int8"): "facenet model export --format onnx-int8",
    ("openvino", "fp32"): "facenet model export --format openvino",
    ("openvino", "int8"): "facenet model export --format openvino-int8",
}
"""What creates each model."""

OPENVINO_CONFIG: dict[str, str] = {"INFERENCE_PRECISION_HINT": "f32"}
"""How every OpenVINO model is compiled (see the module docstring)."""

OPENVINO_FRAMEWORK_INFO = "framework"
"""The ``rt_info`` section OpenVINO's ONNX frontend puts the ``metadata_props`` in."""

MISSING_RUNTIME = {
    "onnxruntime": "ONNX Runtime is not installed: pip install 'facenet-toolchain[runtime]', "
                   "or run with --runtime openvino",
    "openvino": "OpenVINO is not installed: pip install 'facenet-toolchain[openvino]'",
}


def check_choice(runtime: str, precision: str) -> tuple[Runtime, Precision]:
    """``runtime`` and ``precision`` as typed names.

    Raises:
        ValueError: either is not one of :data:`RUNTIMES` / :data:`PRECISIONS`.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return runtime, precision


class ModelSession(Protocol):
    """One loaded model, whichever runtime runs it."""

    runtime: Runtime
    input_names: list[str]
    input_shapes: list[list[int | str | None]]
    output_names: list[str]
    output_shapes: list[list[int | str | None]]
    metadata: dict[str, str]

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The named outputs on ``feeds`` (input name -> array)."""
        ...


class OrtSession:
    """An ONNX Runtime session (:func:`toolchain.runtime.ort_options.create_session`)."""

    runtime: Runtime = "onnxruntime"

    def __init__(self, path: Path, settings: OrtSettings = DEFAULT_SETTINGS,
                 sha256: str | None = None):
        self.session = create_session(path, settings, sha256)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        self.input_names = [i.name for i in inputs]
        self.input_shapes = [list(i.shape) for i in inputs]
        self.output_names = [o.name for o in outputs]
        self.output_shapes = [list(o.shape) for o in outputs]
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return list(self.session.run(outputs, feeds))


def _dims(partial_shape: Any) -> list[int | str | None]:
    return [d.get_length() if d.is_static else None for d in partial_shape]


def openvino_metadata(model: Any) -> dict[str, str]:
    """The ONNX ``metadata_props`` an OpenVINO model carries in ``rt_info["framework"]``."""
    if not model.has_rt_info([OPENVINO_FRAMEWORK_INFO]):
        return {}
    section = model.get_rt_info()[OPENVINO_FRAMEWORK_INFO]
    return {str(k): str(v.astype(str) if hasattr(v, "astype") else v) for k, v in section.items()}


class OpenVinoSession:
    """A model compiled for OpenVINO's CPU plugin (``.xml`` IR or ``.onnx`` read directly).

    Args:
        path: the model (an IR ``.xml`` with its ``.bin`` beside it, or an ``.onnx`` file).
        threads: inference threads; 0 means one per core this process may use.
    """

    runtime: Runtime = "openvino"

    def __init__(self, path: Path, threads: int = 0):
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(path))
        self.input_names = [i.get_any_name() for i in model.inputs]
        self.input_shapes = [_dims(i.get_partial_shape()) for i in model.inputs]
        self.output_names = [o.get_any_name() for o in model.outputs]
        self.output_shapes = [_dims(o.get_partial_shape()) for o in model.outputs]
        self.metadata = openvino_metadata(model)
        config: dict[str, Any] = {**OPENVINO_CONFIG,
                                  "INFERENCE_NUM_THREADS": threads or core_count()}
        self.compiled = core.compile_model(model, "CPU", config)
        self._local = threading.local()

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run on this thread's infer request: a compiled model is shared by threads (the
        service's workers), an infer request is not."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        result = request.infer(feeds, share_inputs=False)
        return [np.array(result[self.compiled.output(name)]) for name in outputs]


def open_session(path: Path, runtime: str, settings: OrtSettings = DEFAULT_SETTINGS,
                 sha256: str | None = None) -> ModelSession:
    """Load ``path`` on ``runtime`` (``settings`` apply to ONNX Runtime only; ``sha256``, the
    file's digest when the caller has just checked it, spares its optimized-graph cache a read).

    Raises:
        EnvironmentToolError: the runtime is not installed.
        ValueError: an unknown runtime.
        Exception: whatever the runtime raises on a file it cannot load.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    try:
        if runtime == "openvino":
            return OpenVinoSession(path, settings.intra_op_threads)
        return OrtSession(path, settings, sha256)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] == runtime:
            raise EnvironmentToolError(MISSING_RUNTIME[runtime]) from exc
        raise


@dataclass(frozen=True)
class ModelChoice:
    """Which FaceNet model a recognizer embeds with.

    Attributes:
        runtime: ``onnxruntime`` or ``openvino`` (the MTCNN nets run on it too).
        precision: ``fp32`` or ``int8``.
    """

    runtime: Runtime = "onnxruntime"
    precision: Precision = "fp32"

    def __post_init__(self) -> None:
        check_choice(self.runtime, self.precision)

    @property
    def embedder_file(self) -> str:
        """The model file, relative to ``artifacts/models``."""
        return EMBEDDER_FILES[(self.runtime, self.precision)]

    @property
    def export_hint(self) -> str:
        """The command that creates the model."""
        return EXPORT_HINTS[(self.runtime, self.precision)]


DEFAULT_MODEL = ModelChoice()
"""fp32 FaceNet on ONNX Runtime."""
