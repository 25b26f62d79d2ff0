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
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from toolchain.core.errors import InputError, UnsafeCodeError
from toolchain.legacy.codewalk import scan_config
from toolchain.legacy.layer_shapes import check_weights, expected_weight_shapes, infer_shape
from toolchain.legacy.model import LayerInfo, LegacyModel, Shape, WeightInfo

SEQUENTIAL_CLASSES = frozenset({"Sequential"})


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
            shape = infer_shape(spec, in_shapes) if single_node else None
            expected = expected_weight_shapes(spec, in_shapes[0] if len(in_shapes) == 1 else None)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise InputError(
                f"{path}: config of layer {layer_name!r} is malformed ({exc})"
            ) from exc
        if expected is not None and (weights or layer_name in stored):
            check_weights(path, layer, expected)
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
