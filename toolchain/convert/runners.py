"""Run an exported FaceNet model on prewhitened crops, one runner per runtime.

Parity, the exporters' own validation and the bench all run models through these runners, so a
format is executed the same way wherever it is measured. A runner loads a model once and returns
``infer(batch) -> {"embedding": raw, "embedding_l2": normalized}``; :meth:`Runner.run` feeds all
crops through it in the runner's batch size. TensorFlow, ONNX Runtime, LiteRT and OpenVINO are
imported inside the loaders only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from toolchain.core.contracts import INPUT_SIZE, OPENVINO_XML

Outputs = dict[str, np.ndarray]
"""Output name -> array, as the model names them (``embedding``, ``embedding_l2``)."""

Infer = Callable[[np.ndarray], Outputs]
"""A loaded model: prewhitened ``(batch, 160, 160, 3)`` float32 crops -> its outputs."""

SIGNATURE = "serving_default"
"""The signature the SavedModel and TFLite exports are called through."""

RuntimeName = Literal["keras", "savedmodel", "onnxruntime", "litert", "openvino"]


def _stack(parts: list[Outputs]) -> Outputs:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def load_keras(path: Path) -> Infer:
    """``facenet.keras`` loaded with ``safe_mode=True``, run through a ``tf.function``."""
    import keras
    import tensorflow as tf

    import toolchain.convert.architecture  # noqa: F401  (registers ScaleSum / L2Normalize)

    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    fn = tf.function(
        lambda batch: model(batch, training=False),
        input_signature=[tf.TensorSpec([None, INPUT_SIZE, INPUT_SIZE, 3], tf.float32)],
        autograph=False,
    )

    def infer(x: np.ndarray) -> Outputs:
        raw, l2 = fn(tf.constant(x))
        return {"embedding": raw.numpy(), "embedding_l2": l2.numpy()}

    return infer


def load_savedmodel(path: Path) -> Infer:
    """The SavedModel's ``serving_default`` signature, loaded with ``tf.saved_model.load``."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures[SIGNATURE]

    def infer(x: np.ndarray) -> Outputs:
        return {k: v.numpy() for k, v in signature(input=tf.constant(x)).items()}

    return infer


def session_infer(session: Any) -> Infer:
    """Every output of an ONNX Runtime ``session`` (created by the caller, with its options)."""
    names = [o.name for o in session.get_outputs()]
    input_name = session.get_inputs()[0].name

    def infer(x: np.ndarray) -> Outputs:
        return dict(zip(names, session.run(names, {input_name: x}), strict=True))

    return infer


def load_onnx(path: Path) -> Infer:
    """ONNX Runtime with the explicit ``CPUExecutionProvider`` and default session options."""
    import onnxruntime as ort

    return session_infer(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]))


def load_tflite(path: Path) -> Infer:
    """LiteRT's interpreter on all cores, through the ``serving_default`` signature."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count())
    runner = interpreter.get_signature_runner(SIGNATURE)

    def infer(x: np.ndarray) -> Outputs:
        return {k: np.asarray(v) for k, v in runner(input=x).items()}

    return infer


def load_openvino(path: Path) -> Infer:
    """An OpenVINO IR directory (or ``.xml``) compiled for the CPU in float32 arithmetic, one
    thread per core (:class:`toolchain.runtime.backends.OpenVinoSession`)."""
    from toolchain.runtime.backends import OpenVinoSession

    session = OpenVinoSession(path / OPENVINO_XML if path.is_dir() else path)
    names, input_name = session.output_names, session.input_names[0]

    def infer(x: np.ndarray) -> Outputs:
        return dict(zip(names, session.run(names, {input_name: x}), strict=True))

    return infer


@dataclass(frozen=True)
class Runner:
    """How one runtime loads and runs a model.

    Attributes:
        name: the runtime.
        load: loads a model file or directory once and returns its inference function.
        batch: crops per call when running a whole set (:meth:`run`).
    """

    name: RuntimeName
    load: Callable[[Path], Infer]
    batch: int

    def run(self, path: Path, x: np.ndarray) -> Outputs:
        """Load ``path`` and run it on all prewhitened crops ``x``, :attr:`batch` at a time."""
        infer = self.load(path)
        return _stack([infer(x[i : i + self.batch]) for i in range(0, len(x), self.batch)])


KERAS = Runner("keras", load_keras, 32)
SAVEDMODEL = Runner("savedmodel", load_savedmodel, 32)
ONNXRUNTIME = Runner("onnxruntime", load_onnx, 32)
LITERT = Runner("litert", load_tflite, 16)
OPENVINO = Runner("openvino", load_openvino, 32)
