"""What a legacy Keras ``.h5`` model file holds: its layers, their stored weights and its code.

Plain frozen dataclasses filled by :func:`toolchain.legacy.h5file.read_legacy`; the weight arrays
themselves are not held here (:func:`toolchain.legacy.h5file.iter_weight_arrays` reads them).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolchain.legacy.codewalk import ConfigCode, LambdaSite

Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class WeightInfo:
    """One stored weight tensor of a layer."""

    name: str
    """The stored name, e.g. ``Conv2d_1a_3x3/kernel:0``."""
    shape: tuple[int, ...]
    dtype: str

    @property
    def key(self) -> str:
        """Keras' short weight name: ``kernel`` for ``Conv2d_1a_3x3/kernel:0``."""
        return weight_key(self.name)

    @property
    def size(self) -> int:
        """Number of scalars."""
        return math.prod(self.shape)


@dataclass(frozen=True)
class LayerInfo:
    """One layer of the stored model config with the weights stored for it."""

    name: str
    class_name: str
    config: dict[str, Any]
    inbound: tuple[str, ...]
    weights: tuple[WeightInfo, ...]

    @property
    def parameters(self) -> int:
        """Number of stored scalars (trainable and not)."""
        return sum(w.size for w in self.weights)


@dataclass(frozen=True)
class LegacyModel:
    """What a legacy Keras ``.h5`` model file holds, read without executing anything."""

    path: Path
    model_class: str
    name: str | None
    keras_version: str | None
    backend: str | None
    model_config: dict[str, Any]
    layers: tuple[LayerInfo, ...]
    input_layers: tuple[str, ...]
    output_layers: tuple[str, ...]
    input_shapes: tuple[Shape | None, ...]
    output_shapes: tuple[Shape | None, ...]
    code: ConfigCode
    """Every Lambda and non-built-in callable reference anywhere in ``model_config``."""

    @property
    def parameters(self) -> int:
        """Total number of stored scalars."""
        return sum(layer.parameters for layer in self.layers)

    @property
    def weighted_layers(self) -> tuple[LayerInfo, ...]:
        """Layers that store at least one weight tensor."""
        return tuple(layer for layer in self.layers if layer.weights)

    @property
    def tensors(self) -> int:
        """Number of stored weight tensors."""
        return sum(len(layer.weights) for layer in self.layers)

    @property
    def lambdas(self) -> tuple[LambdaSite, ...]:
        """Every ``Lambda`` at any depth (each stores marshaled Python bytecode), by layer path."""
        return self.code.lambdas

    def class_counts(self) -> dict[str, int]:
        """Number of layers per Keras class name, most frequent first."""
        return dict(Counter(layer.class_name for layer in self.layers).most_common())

    def layer(self, name: str) -> LayerInfo:
        """The layer called ``name``."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)


def weight_key(stored_name: str) -> str:
    """Short weight name: the part after the last ``/`` and before ``:``."""
    return stored_name.rsplit("/", 1)[-1].split(":", 1)[0]
