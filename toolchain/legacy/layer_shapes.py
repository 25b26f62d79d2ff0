"""Static shapes a legacy layer's config implies: its output shape and its weights' shapes.

Computed from ``model_config`` alone, for the common channels-last layers, so that
:func:`toolchain.legacy.h5file.read_legacy` can report input/output shapes and refuse a file whose
stored weights do not fit the layer that owns them. Layers whose shapes are not derived here give
``None`` (unchecked), never a guess.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from toolchain.core.errors import InputError
from toolchain.legacy.model import LayerInfo, Shape

IDENTITY_SHAPE_CLASSES = frozenset(
    {
        "Activation",
        "BatchNormalization",
        "Dropout",
        "ReLU",
        "LeakyReLU",
        "PReLU",
        "ELU",
        "Softmax",
        "ThresholdedReLU",
        "GaussianNoise",
        "GaussianDropout",
        "AlphaDropout",
        "SpatialDropout2D",
        "LayerNormalization",
    }
)
MERGE_CLASSES = frozenset({"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"})


def _conv_length(
    size: int | None, kernel: int, stride: int, padding: str, dilation: int
) -> int | None:
    if size is None:
        return None
    if padding == "same":
        return -(-size // stride)
    effective = (kernel - 1) * dilation + 1
    return (size - effective) // stride + 1 if size >= effective else None


def _pair(value: Any, default: Sequence[int]) -> tuple[int, int]:
    if value is None:
        return int(default[0]), int(default[1])
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])


def infer_shape(spec: dict[str, Any], inputs: list[Shape | None]) -> Shape | None:
    """Static output shape of one layer for the common channels-last layers, else ``None``."""
    cls = spec.get("class_name")
    cfg = spec.get("config") or {}
    if cls == "InputLayer":
        shape = cfg.get("batch_input_shape") or cfg.get("batch_shape")
        return tuple(shape) if shape is not None else None
    if not inputs or any(s is None for s in inputs):
        return None
    first: Shape = inputs[0]  # type: ignore[assignment]
    if cls in IDENTITY_SHAPE_CLASSES:
        return first
    if cls in MERGE_CLASSES:
        return first
    if cls == "Concatenate":
        axis = int(cfg.get("axis", -1))
        parts = [s[axis] for s in inputs if s is not None]
        out = list(first)
        out[axis] = (
            None if any(p is None for p in parts) else sum(p for p in parts if p is not None)
        )
        return tuple(out)
    if cls == "Dense":
        return (*first[:-1], int(cfg["units"]))
    if cls == "Flatten":
        rest = first[1:]
        return (first[0], None if None in rest else math.prod(d for d in rest if d is not None))
    if cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D") and len(first) == 4:
        if cfg.get("data_format", "channels_last") != "channels_last":
            return None
        return (first[0], first[3])
    if cls == "Lambda" and cfg.get("output_shape_type") == "raw":
        shape = cfg.get("output_shape")
        if isinstance(shape, list) and all(isinstance(d, int) or d is None for d in shape):
            return (first[0], *shape)
        return None
    if cls == "Reshape":
        return (first[0], *cfg["target_shape"])
    if len(first) != 4 or cfg.get("data_format", "channels_last") != "channels_last":
        return None
    if cls == "Conv2D":
        kernel = _pair(cfg.get("kernel_size"), (1, 1))
        strides = _pair(cfg.get("strides"), (1, 1))
        dilation = _pair(cfg.get("dilation_rate"), (1, 1))
        padding = str(cfg.get("padding", "valid"))
        h = _conv_length(first[1], kernel[0], strides[0], padding, dilation[0])
        w = _conv_length(first[2], kernel[1], strides[1], padding, dilation[1])
        return (first[0], h, w, int(cfg["filters"]))
    if cls in ("MaxPooling2D", "AveragePooling2D"):
        pool = _pair(cfg.get("pool_size"), (2, 2))
        strides = _pair(cfg.get("strides"), pool)
        padding = str(cfg.get("padding", "valid"))
        h = _conv_length(first[1], pool[0], strides[0], padding, 1)
        w = _conv_length(first[2], pool[1], strides[1], padding, 1)
        return (first[0], h, w, first[3])
    if cls == "ZeroPadding2D":
        pad = cfg.get("padding", 1)
        if isinstance(pad, int):
            (top, bottom), (left, right) = (pad, pad), (pad, pad)
        else:
            (top, bottom), (left, right) = (
                (p, p) if isinstance(p, int) else (p[0], p[1]) for p in pad
            )
        h = None if first[1] is None else first[1] + top + bottom
        w = None if first[2] is None else first[2] + left + right
        return (first[0], h, w, first[3])
    return None


def expected_weight_shapes(
    spec: dict[str, Any], in_shape: Shape | None
) -> dict[str, tuple[int | None, ...]] | None:
    """Shapes a layer's weights must have according to its config, or ``None`` if unchecked."""
    cls = spec.get("class_name")
    cfg = spec.get("config") or {}
    in_ch = in_shape[-1] if in_shape else None
    if cls == "Conv2D":
        kh, kw = _pair(cfg.get("kernel_size"), (1, 1))
        filters = int(cfg["filters"])
        shapes: dict[str, tuple[int | None, ...]] = {"kernel": (kh, kw, in_ch, filters)}
        if cfg.get("use_bias", True):
            shapes["bias"] = (filters,)
        return shapes
    if cls == "Dense":
        units = int(cfg["units"])
        shapes = {"kernel": (in_ch, units)}
        if cfg.get("use_bias", True):
            shapes["bias"] = (units,)
        return shapes
    if cls == "BatchNormalization":
        axis = cfg.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        dim = in_shape[axis] if in_shape and isinstance(axis, int) else None
        names = ["gamma"] if cfg.get("scale", True) else []
        names += ["beta"] if cfg.get("center", True) else []
        return {n: (dim,) for n in [*names, "moving_mean", "moving_variance"]}
    return None


def check_weights(
    path: Path, layer: LayerInfo, expected: dict[str, tuple[int | None, ...]]
) -> None:
    """Refuse a layer whose stored weights are not those, or not the shapes, its config implies.

    Raises:
        InputError: a weight is missing or extra, or its shape differs from ``expected``.
    """
    got = {w.key: w for w in layer.weights}
    if sorted(got) != sorted(expected) or len(got) != len(layer.weights):
        raise InputError(
            f"{path}: layer {layer.name!r} ({layer.class_name}) stores weights "
            f"{[w.key for w in layer.weights]}, its config implies {sorted(expected)}"
        )
    for key, shape in expected.items():
        actual = got[key].shape
        if len(actual) != len(shape) or any(
            e is not None and a != e for a, e in zip(actual, shape, strict=True)
        ):
            want = tuple("?" if e is None else e for e in shape)
            raise InputError(
                f"{path}: weight {got[key].name!r} of layer {layer.name!r} has shape {actual}, "
                f"its config implies {want}"
            )
