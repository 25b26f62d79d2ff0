"""Activations the generic rebuild writes out itself, registered for ``.keras`` files.

Keras 3's ``gelu`` (exact, ``approximate=False``) lowers on TensorFlow to ``Erfc``, an op tf2onnx
cannot convert; :func:`gelu_erf` is the same function, ``0.5 x (1 + erf(x / sqrt(2)))``, through
``Erf``, which every exported format has.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras

from toolchain.convert.architecture import SERIALIZATION_PACKAGE


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
def gelu_erf(x: Any) -> Any:
    """Exact GELU, ``0.5 x (1 + erf(x / sqrt(2)))`` (Keras 2's ``gelu``)."""
    return 0.5 * x * (1.0 + keras.ops.erf(x * (1.0 / math.sqrt(2.0))))


REWRITES: dict[str, Callable[[Any], Any]] = {"gelu": gelu_erf}
"""Each activation name of :data:`.fields.REWRITTEN_ACTIVATIONS` and the function it becomes."""
