"""Read a legacy Keras ``.h5`` model file (``model.save`` of Keras 1.x/2.x) without TensorFlow.

Only h5py metadata and datasets are read: the ``model_config`` JSON, ``keras_version`` and
``backend`` attributes, and ``model_weights/<layer>/<weight>`` datasets. Nothing in the file is
deserialized into Python objects or executed. The whole ``model_config`` is walked for code
(:mod:`toolchain.legacy.codewalk`: Lambdas and callable references at any depth) and the result
kept on the model for the caller to vet. Every inconsistency raises
:class:`~toolchain.core.errors.InputError` naming the file and the problem.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from toolchain.core.errors import InputError, UnsafeCodeError
from toolchain.legacy.codewalk import ConfigCode, LambdaSite, scan_config

Shape = tuple[int | None, ...]

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
SEQUENTIAL_CLASSES = frozenset({"Sequential"})


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


def _text(value: Any) -> str:
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8")
    return str(value)


def _names(value: Any) -> list[str]:
    return [_text(v) for v in np.asarray(value).reshape(-1)]


def _layer_specs(
    path: Path, config: dict[str, Any]
) -> tuple[str, str | None, list[dict[str, Any]]]:
    """Normalize Functional and Sequential configs to ``(class, name, [layer dicts])``."""
    model_class = config.get("class_name")
    body = config.get("config")
    if not isinstance(model_class, str) or body is None:
        raise InputError(f"{path}: model_config has no class_name/config")
    if isinstance(body, list):
        return model_class, None, body
    if not isinstance(body, dict) or not isinstance(body.get("layers"), list):
        raise InputError(f"{path}: model_config of {model_class} has no layer list")
    name = body.get("name")
    return model_class, name if isinstance(name, str) else None, body["layers"]


def _inbound(spec: dict[str, Any]) -> tuple[str, ...]:
    names: list[str] = []
    for node in spec.get("inbound_nodes") or []:
        for entry in node:
            if isinstance(entry, list | tuple) and entry and isinstance(entry[0], str):
                names.append(entry[0])
    return tuple(names)


def _io_names(path: Path, body: Any, key: str) -> tuple[str, ...]:
    entries = body.get(key) if isinstance(body, dict) else None
    if entries is None:
        return ()
    if isinstance(entries, list) and entries and isinstance(entries[0], str):
        entries = [entries]
    try:
        return tuple(str(entry[0]) for entry in entries)
    except (TypeError, IndexError, KeyError) as exc:
        raise InputError(f"{path}: model_config {key} is malformed") from exc


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


def _infer_shape(spec: dict[str, Any], inputs: list[Shape | None]) -> Shape | None:
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


def _expected_weight_shapes(
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


def _check_weights(
    path: Path, layer: LayerInfo, expected: dict[str, tuple[int | None, ...]]
) -> None:
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


def _read_weights(path: Path, group: h5py.Group, layer_name: str) -> tuple[WeightInfo, ...]:
    try:
        layer_group = group[layer_name]
    except KeyError as exc:
        raise InputError(
            f"{path}: model_weights lists layer {layer_name!r} but has no group"
        ) from exc
    weights = []
    for name in _names(layer_group.attrs.get("weight_names", [])):
        dataset = layer_group.get(name)
        if not isinstance(dataset, h5py.Dataset):
            raise InputError(f"{path}: weight {name!r} of layer {layer_name!r} is missing")
        weights.append(WeightInfo(name, tuple(int(d) for d in dataset.shape), str(dataset.dtype)))
    return tuple(weights)


def _open(path: Path) -> h5py.File:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise InputError(f"{path}: not an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: unreadable HDF5 file ({exc})") from exc


def read_legacy(path: Path) -> LegacyModel:
    """Read the structure and weight metadata of a legacy Keras ``.h5`` model file.

    Raises:
        InputError: the file is not a readable, self-consistent legacy Keras model file.
        UnsafeCodeError: ``model_config`` nests too deep to be walked for code.
    """
    path = Path(path)
    with _open(path) as h5:
        try:
            return _read(path, h5)
        except (OSError, RuntimeError) as exc:
            raise InputError(f"{path}: damaged HDF5 file ({exc})") from exc
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise InputError(
                f"{path}: malformed legacy model file ({type(exc).__name__}: {exc})"
            ) from exc


def _read(path: Path, h5: h5py.File) -> LegacyModel:
    if "model_config" not in h5.attrs:
        raise InputError(f"{path}: no model_config attribute (not a Keras model file)")
    try:
        config = json.loads(_text(h5.attrs["model_config"]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: model_config is not valid JSON ({exc})") from exc
    except RecursionError as exc:
        raise UnsafeCodeError(
            f"{path}: model_config nests deeper than Python can parse; cannot vet it, refusing it"
        ) from exc
    if not isinstance(config, dict):
        raise InputError(f"{path}: model_config is not a JSON object")
    code = scan_config(config, where=str(path))
    group = h5.get("model_weights")
    if not isinstance(group, h5py.Group):
        raise InputError(f"{path}: no model_weights group (the model was saved without weights)")
    stored = _names(group.attrs.get("layer_names", []))

    model_class, name, specs = _layer_specs(path, config)
    sequential = model_class in SEQUENTIAL_CLASSES
    layers: list[LayerInfo] = []
    shapes: dict[str, Shape | None] = {}
    previous: str | None = None
    for spec in specs:
        if not isinstance(spec, dict) or not isinstance(spec.get("class_name"), str):
            raise InputError(f"{path}: model_config has a malformed layer entry")
        raw_cfg = spec.get("config")
        cfg: dict[str, Any] = raw_cfg if isinstance(raw_cfg, dict) else {}
        layer_name = spec.get("name") or cfg.get("name")
        if not isinstance(layer_name, str):
            raise InputError(f"{path}: a {spec['class_name']} layer in model_config has no name")
        if sequential:
            inbound: tuple[str, ...] = (previous,) if previous is not None else ()
            if not inbound and spec["class_name"] != "InputLayer" and "batch_input_shape" in cfg:
                shapes["<input>"] = tuple(cfg["batch_input_shape"])
        else:
            inbound = _inbound(spec)
        weights = _read_weights(path, group, layer_name) if layer_name in stored else ()
        layer = LayerInfo(layer_name, spec["class_name"], cfg, inbound, weights)
        in_shapes = [shapes.get(n) for n in inbound or (("<input>",) if sequential else ())]
        single_node = len(spec.get("inbound_nodes") or [[]]) <= 1
        try:
            shape = _infer_shape(spec, in_shapes) if single_node else None
            expected = _expected_weight_shapes(spec, in_shapes[0] if len(in_shapes) == 1 else None)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise InputError(
                f"{path}: config of layer {layer_name!r} is malformed ({exc})"
            ) from exc
        if expected is not None and (weights or layer_name in stored):
            _check_weights(path, layer, expected)
        shapes[layer_name] = shape
        layers.append(layer)
        previous = layer_name
    layers_tuple = tuple(layers)
    _check_layer_sets(path, layers_tuple, stored)

    if sequential:
        first = layers_tuple[0] if layers_tuple else None
        input_layers: tuple[str, ...] = ()
        input_shapes: tuple[Shape | None, ...] = (shapes["<input>"],) if "<input>" in shapes else ()
        if first is not None and first.class_name == "InputLayer":
            input_layers, input_shapes = (first.name,), (shapes[first.name],)
        output_layers: tuple[str, ...] = (layers_tuple[-1].name,) if layers_tuple else ()
    else:
        body = config.get("config")
        input_layers = _io_names(path, body, "input_layers")
        output_layers = _io_names(path, body, "output_layers")
        input_shapes = tuple(shapes.get(n) for n in input_layers)
    known = {layer.name for layer in layers_tuple}
    for io_name in (*input_layers, *output_layers):
        if io_name not in known:
            raise InputError(
                f"{path}: model_config names input/output layer {io_name!r} it does not define"
            )
    return LegacyModel(
        path=path,
        model_class=model_class,
        name=name,
        keras_version=_text(h5.attrs["keras_version"]) if "keras_version" in h5.attrs else None,
        backend=_text(h5.attrs["backend"]) if "backend" in h5.attrs else None,
        model_config=config,
        layers=layers_tuple,
        input_layers=input_layers,
        output_layers=output_layers,
        input_shapes=input_shapes,
        output_shapes=tuple(shapes.get(n) for n in output_layers),
        code=code,
    )


def _check_layer_sets(path: Path, layers: tuple[LayerInfo, ...], stored: list[str]) -> None:
    names = [layer.name for layer in layers]
    dupes = sorted(n for n, c in Counter(names).items() if c > 1)
    if dupes:
        raise InputError(f"{path}: model_config defines layer(s) {dupes} more than once")
    stored_set = set(stored)
    unstored = [
        layer.name
        for layer in layers
        if layer.name not in stored_set and layer.class_name != "InputLayer"
    ]
    if unstored:
        raise InputError(
            f"{path}: {len(unstored)} layer(s) of model_config missing from model_weights, "
            f"e.g. {unstored[:3]}"
        )
    extra = [n for n in stored if n not in set(names)]
    if extra:
        raise InputError(
            f"{path}: {len(extra)} layer(s) in model_weights not in model_config, e.g. {extra[:3]}"
        )


def iter_weight_arrays(
    model: LegacyModel,
) -> Iterator[tuple[LayerInfo, list[tuple[WeightInfo, np.ndarray]]]]:
    """Yield every weighted layer with its stored arrays, read directly by h5py.

    Raises:
        InputError: a dataset no longer matches the metadata read by :func:`read_legacy`.
    """
    with _open(model.path) as h5:
        group = h5["model_weights"]
        for layer in model.weighted_layers:
            arrays = []
            for weight in layer.weights:
                try:
                    array = np.asarray(group[layer.name][weight.name][()])
                except (OSError, KeyError, RuntimeError) as exc:
                    raise InputError(
                        f"{model.path}: cannot read weight {weight.name!r} of layer "
                        f"{layer.name!r} ({exc})"
                    ) from exc
                if array.shape != weight.shape or str(array.dtype) != weight.dtype:
                    raise InputError(f"{model.path}: weight {weight.name!r} changed while reading")
                arrays.append((weight, array))
            yield layer, arrays
