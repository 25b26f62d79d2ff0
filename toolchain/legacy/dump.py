"""Dump the weights of any legacy Keras ``.h5`` as deterministic per-layer ``.npz`` + a manifest.

Read with h5py only (no Keras, nothing executed), from a full model file (``model.save``: the
``model_weights`` group, checked against ``model_config`` by
:func:`toolchain.legacy.h5file.read_legacy`) or from a weights-only file (``model.save_weights``:
the layer groups at the root, no ``model_config``). Each layer that stores weights gets
``<layer>.npz`` written by :func:`toolchain.legacy.npzfile.npz_bytes` (fixed zip dates, sorted
keys: the same bytes for the same file). Its keys are Keras' short weight names (``kernel``,
``moving_mean``) when they are distinct, as for FaceNet; a nested model stores several layers'
weights in one group, so there the keys are the stored names without their ``:0`` suffix
(``d1/kernel``). The manifest keeps every weight's stored name, key, shape and dtype in stored
order, and each npz's sha256, in the format of FaceNet's ``manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from toolchain.core.atomic import sha256_file
from toolchain.core.contracts import MANIFEST_FILE, MANIFEST_FORMAT
from toolchain.core.errors import InputError
from toolchain.core.source import identify_h5
from toolchain.legacy.bindings import LambdaBinding, binding_records
from toolchain.legacy.h5file import iter_weight_arrays
from toolchain.legacy.model import LegacyModel, WeightInfo

SAFE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
"""A layer name that can be a file name as it is (the npz is ``<layer>.npz``)."""

SAFE_KEY = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")
"""An npz key: names separated by ``/``, no empty or special part."""


@dataclass(frozen=True)
class DumpedLayer:
    """One layer's stored weights, in stored order, with their npz keys."""

    name: str
    class_name: str | None
    weights: tuple[WeightInfo, ...]
    keys: tuple[str, ...]
    arrays: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class WeightsDump:
    """Everything a dump writes, in memory.

    Attributes:
        files: file name -> bytes: every ``<layer>.npz`` and ``manifest.json``.
        manifest: the manifest as a dict.
        layers: the layers that store weights, in stored order.
        weights_only: the file had no ``model_config`` (``model.save_weights``).
    """

    files: dict[str, bytes]
    manifest: dict[str, Any]
    layers: tuple[DumpedLayer, ...]
    weights_only: bool

    @property
    def parameters(self) -> int:
        """Number of stored scalars."""
        return sum(w.size for layer in self.layers for w in layer.weights)

    def layer(self, name: str) -> DumpedLayer:
        """The dumped layer called ``name``."""
        return next(layer for layer in self.layers if layer.name == name)


def npz_keys(layer: str, weights: Sequence[WeightInfo]) -> tuple[str, ...]:
    """The npz keys of a layer's weights: short names, or stored names when those repeat.

    Raises:
        InputError: a key would not be a plain ``/``-separated name, or keys still repeat.
    """
    short = [w.key for w in weights]
    keys = short if len(set(short)) == len(short) else [
        w.name.rsplit(":", 1)[0] if re.search(r":\d+$", w.name) else w.name for w in weights]
    bad = [k for k in keys if not SAFE_KEY.match(k) or ".." in k.split("/")]
    if bad or len(set(keys)) != len(keys):
        raise InputError(f"layer {layer!r}: weight names {[w.name for w in weights]} do not give "
                         "distinct plain npz keys")
    return tuple(keys)


def _layer_entry(name: str, class_name: str | None, inbound: Sequence[str],
                 dumped: DumpedLayer | None, files: dict[str, bytes]) -> dict[str, Any]:
    npz = f"{name}.npz" if dumped is not None else None
    weights = dumped.weights if dumped is not None else ()
    keys = dumped.keys if dumped is not None else ()
    return {
        "name": name,
        "class_name": class_name,
        "inbound": list(inbound),
        "weights": [{"name": w.name, "key": k, "shape": list(w.shape), "dtype": w.dtype}
                    for w, k in zip(weights, keys, strict=True)],
        "npz": npz,
        "npz_sha256": hashlib.sha256(files[npz]).hexdigest() if npz is not None else None,
        "parameters": sum(w.size for w in weights),
    }


def _environment() -> dict[str, str]:
    return {"python": platform.python_version(), "h5py": metadata.version("h5py"),
            "numpy": metadata.version("numpy"), "reader": "toolchain.legacy.dump (h5py only)"}


def _npz_files(layers: Sequence[DumpedLayer]) -> dict[str, bytes]:
    from toolchain.legacy.npzfile import npz_bytes

    files: dict[str, bytes] = {}
    for layer in layers:
        if not SAFE_NAME.match(layer.name):
            raise InputError(f"layer name {layer.name!r} is not a safe file name")
        bad = [w.name for w in layer.weights if np.dtype(w.dtype).kind not in "fiub"]
        if bad:
            raise InputError(f"layer {layer.name!r}: weights {bad} are not numeric")
        files[f"{layer.name}.npz"] = npz_bytes(dict(zip(layer.keys, layer.arrays, strict=True)))
    return files


def _source(path: Path, keras_version: str | None, backend: str | None) -> dict[str, Any]:
    return {"file": path.name, "size": path.stat().st_size, "sha256": sha256_file(path),
            "known": identify_h5(path), "keras_version": keras_version, "backend": backend}


def _finish(manifest: dict[str, Any], files: dict[str, bytes]) -> dict[str, bytes]:
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    return {**files, MANIFEST_FILE: text.encode("utf-8")}


def dump_model(model: LegacyModel, bindings: Sequence[LambdaBinding]) -> WeightsDump:
    """Dump a full model file read by :func:`~toolchain.legacy.h5file.read_legacy`.

    Raises:
        InputError: a layer name is not a safe file name, a weight is not numeric, or a dataset
            changed while reading.
    """
    layers = tuple(
        DumpedLayer(layer.name, layer.class_name, tuple(w for w, _ in arrays),
                    npz_keys(layer.name, [w for w, _ in arrays]), tuple(a for _, a in arrays))
        for layer, arrays in iter_weight_arrays(model)
    )
    files = _npz_files(layers)
    by_name = {layer.name: layer for layer in layers}
    manifest = {
        "format": MANIFEST_FORMAT,
        "source": _source(model.path, model.keras_version, model.backend),
        "environment": _environment(),
        "lambdas": binding_records(bindings),
        "layers": [_layer_entry(layer.name, layer.class_name, layer.inbound,
                                by_name.get(layer.name), files) for layer in model.layers],
        "totals": {"layers": len(model.layers), "weighted_layers": len(layers),
                   "tensors": model.tensors, "parameters": model.parameters},
    }
    return WeightsDump(_finish(manifest, files), manifest, layers, weights_only=False)


def _names(value: Any) -> list[str]:
    return [bytes(v).decode("utf-8") if isinstance(v, bytes | np.bytes_) else str(v)
            for v in np.asarray(value).reshape(-1)]


def is_weights_only(path: Path) -> bool:
    """Whether ``path`` is an HDF5 file written by ``save_weights`` (no ``model_config``, the
    layer groups at the root). A missing or non-HDF5 file is not (the model reader says why)."""
    try:
        if not path.is_file() or not h5py.is_hdf5(path):
            return False
        with h5py.File(path, "r") as h5:
            return "model_config" not in h5.attrs and "layer_names" in h5.attrs
    except (OSError, RuntimeError):
        return False


def dump_weights_only(path: Path) -> WeightsDump:
    """Dump a weights-only file (``model.save_weights``): every layer group at the root.

    Raises:
        InputError: the file is not a readable, consistent weights file.
    """
    try:
        with h5py.File(path, "r") as h5:
            return _dump_weights_only(path, h5)
    except (OSError, RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: malformed weights file ({type(exc).__name__}: {exc})") from exc


def _attr(h5: h5py.File, key: str) -> str | None:
    return _names(h5.attrs[key])[0] if key in h5.attrs else None


def _dump_weights_only(path: Path, h5: h5py.File) -> WeightsDump:
    names = _names(h5.attrs["layer_names"])
    layers = []
    for name in names:
        group = h5.get(name)
        if not isinstance(group, h5py.Group):
            raise InputError(f"{path}: layer_names lists {name!r} but the file has no group")
        stored = _names(group.attrs.get("weight_names", []))
        infos, arrays = [], []
        for weight in stored:
            dataset = group.get(weight)
            if not isinstance(dataset, h5py.Dataset):
                raise InputError(f"{path}: weight {weight!r} of layer {name!r} is missing")
            array = np.asarray(dataset[()])
            infos.append(WeightInfo(weight, tuple(int(d) for d in array.shape), str(array.dtype)))
            arrays.append(array)
        if infos:
            layers.append(DumpedLayer(name, None, tuple(infos), npz_keys(name, infos),
                                      tuple(arrays)))
    files = _npz_files(layers)
    by_name = {layer.name: layer for layer in layers}
    manifest = {
        "format": MANIFEST_FORMAT,
        "weights_only": True,
        "source": _source(path, _attr(h5, "keras_version"), _attr(h5, "backend")),
        "environment": _environment(),
        "lambdas": [],
        "layers": [_layer_entry(n, None, (), by_name.get(n), files) for n in names],
        "totals": {"layers": len(names), "weighted_layers": len(layers),
                   "tensors": sum(len(layer.weights) for layer in layers),
                   "parameters": sum(w.size for layer in layers for w in layer.weights)},
    }
    return WeightsDump(_finish(manifest, files), manifest, tuple(layers), weights_only=True)
