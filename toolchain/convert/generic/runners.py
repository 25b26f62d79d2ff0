"""Run a converted model of any input/output signature in each runtime, by tensor name.

The FaceNet runners (:mod:`toolchain.convert.runners`) feed one prewhitened image input and read
``embedding``/``embedding_l2``; a converted legacy model has its own named inputs and outputs
(:func:`toolchain.legacy.config.tensor_names`). Each loader here returns ``infer(feeds) ->
outputs``, both dicts by name; :func:`run_format` feeds every row through it ``batch`` rows at a
time. TensorFlow, ONNX Runtime, LiteRT and OpenVINO are imported inside the loaders only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.convert.runners import SIGNATURE

Arrays = dict[str, np.ndarray]
Infer = Callable[[Arrays], Arrays]

KERAS_FILE = "model.keras"
SAVEDMODEL_DIR = "savedmodel"
ONNX_FILE = "model.onnx"
TFLITE_FILE = "model.tflite"
OPENVINO_DIR = "openvino"
OPENVINO_XML = "model.xml"


def load_keras(path: Path, output_names: tuple[str, ...],
               functions: Mapping[str, Callable[..., Any]]) -> Infer:
    """A ``.keras`` archive loaded with ``safe_mode=True`` (mapped functions as custom objects)."""
    import keras

    import toolchain.convert.generic.activations  # noqa: F401  (registers ScaleSum, gelu_erf)

    model = keras.saving.load_model(path, safe_mode=True, compile=False,
                                    custom_objects=dict(functions))
    return keras_infer(model, output_names)


def keras_infer(model: Any, output_names: tuple[str, ...]) -> Infer:
    """A Keras 3 model (in memory or loaded) called in a ``tf.function``, outputs by name."""
    import tensorflow as tf

    names = [t.name for t in model.inputs]
    signature = [tf.TensorSpec([None, *t.shape[1:]], tf.float32) for t in model.inputs]
    fn = tf.function(lambda *args: model(list(args) if len(args) > 1 else args[0],
                                         training=False),
                     input_signature=signature, autograph=False)

    def infer(feeds: Arrays) -> Arrays:
        out = fn(*[tf.constant(feeds[n]) for n in _order(names, feeds)])
        out = out if isinstance(out, list | tuple) else [out]
        return {name: np.asarray(o) for name, o in zip(output_names, out, strict=True)}

    return infer


def _order(names: list[str], feeds: Arrays) -> list[str]:
    """Keras names its inputs after the legacy input layers; the feeds use the exported names
    (the same, made identifiers): match exactly, else by position."""
    return names if all(n in feeds for n in names) else list(feeds)


def load_savedmodel(path: Path, loaded: Any = None) -> Infer:
    """The SavedModel's ``serving_default`` signature (of ``loaded`` when the caller already
    loaded ``path`` with ``tf.saved_model.load``)."""
    import tensorflow as tf

    signature = (loaded or tf.saved_model.load(str(path))).signatures[SIGNATURE]

    def infer(feeds: Arrays) -> Arrays:
        return {k: v.numpy() for k, v in signature(**{n: tf.constant(a)
                                                       for n, a in feeds.items()}).items()}

    return infer


def load_onnx(path: Path) -> Infer:
    """ONNX Runtime on the CPU, default session options."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def infer(feeds: Arrays) -> Arrays:
        return dict(zip(names, session.run(names, feeds), strict=True))

    return infer


def load_tflite(path: Path) -> Infer:
    """LiteRT's interpreter on all cores, through the ``serving_default`` signature."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count())
    runner = interpreter.get_signature_runner(SIGNATURE)

    def infer(feeds: Arrays) -> Arrays:
        return {k: np.asarray(v) for k, v in runner(**feeds).items()}

    return infer


def load_openvino(path: Path) -> Infer:
    """An OpenVINO IR directory compiled for the CPU in float32 arithmetic
    (:class:`toolchain.runtime.backends.OpenVinoSession`)."""
    from toolchain.runtime.backends import OpenVinoSession

    session = OpenVinoSession(path / OPENVINO_XML if path.is_dir() else path)
    names = session.output_names

    def infer(feeds: Arrays) -> Arrays:
        return dict(zip(names, session.run(names, feeds), strict=True))

    return infer


def run_rows(infer: Infer, feeds: Arrays, batch: int) -> Arrays:
    """Every row of ``feeds`` through ``infer``, ``batch`` rows at a time, outputs stacked."""
    rows = len(next(iter(feeds.values())))
    parts = [infer({n: np.ascontiguousarray(a[i:i + batch]) for n, a in feeds.items()})
             for i in range(0, rows, batch)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
