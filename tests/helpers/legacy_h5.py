"""Tiny legacy-layout Keras ``.h5`` files and their broken variants, written with h5py.

The tiny model is written exactly the way Keras 2.1.2 lays out ``model.save`` output
(``model_config`` JSON, ``model_weights/<layer>/<layer>/<weight>:0``); its Lambda holds the REAL
FaceNet lambda bytes (Python 3.6 marshal) copied from the real file's config.
"""

from __future__ import annotations

import base64
import json
import marshal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

REAL_LAMBDA_B64 = (
    "4wIAAAAAAAAAAgAAAAMAAABTAAAAcxQAAAB8AGQBGQB8AGQCGQB8ARQAFwBTACkDTukAAAAA6QEA\n"
    "AACpACkC2gZpbnB1dHPaBXNjYWxlcgMAAAByAwAAAPobLi4vY29kZS9mYWNlbmV0X2tlcmFzX3Yx\n"
    "LnB52gg8bGFtYmRhPloAAADzAAAAAA==\n"
)
"""``Block35_1_ScaleSum``'s ``function[0]`` in the real ``facenet_keras.h5`` (Python 3.6)."""

TINY_SIZE = 160
TINY_LAYERS = 8
TINY_WEIGHTED = 4
TINY_TENSORS = 8
TINY_PARAMETERS = 3 * 3 * 3 * 4 + 4 + 3 * 4 + 4 * 4 + 4 * 2 + 2

Mutator = Callable[[Path], None]


def _spec(name: str, class_name: str, config: dict[str, Any], inbound: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "class_name": class_name,
        "config": {"name": name, "trainable": True, **config},
        "inbound_nodes": [[[n, 0, 0, {}] for n in inbound]] if inbound else [],
    }


def tiny_config(function: Any = None, arguments: Any = None) -> dict[str, Any]:
    """Keras 2.1.2-style ``model_config`` of a tiny residual-scaling network (160x160x3 -> 2)."""
    lambda_config = {
        "function": [REAL_LAMBDA_B64, None, None] if function is None else function,
        "function_type": "lambda",
        "output_shape": [80, 80, 4],
        "output_shape_type": "raw",
        "arguments": {"scale": 0.17} if arguments is None else arguments,
    }
    layers = [
        {
            "name": "input_1",
            "class_name": "InputLayer",
            "config": {
                "batch_input_shape": [None, TINY_SIZE, TINY_SIZE, 3],
                "dtype": "float32",
                "sparse": False,
                "name": "input_1",
            },
            "inbound_nodes": [],
        },
        _spec("Conv", "Conv2D", _conv(4, 3, 2, use_bias=True), ["input_1"]),
        _spec(
            "Conv_BatchNorm",
            "BatchNormalization",
            {"axis": 3, "momentum": 0.995, "epsilon": 0.001, "center": True, "scale": False},
            ["Conv"],
        ),
        _spec("Branch", "Conv2D", _conv(4, 1, 1, use_bias=False), ["Conv_BatchNorm"]),
        _spec("ScaleSum", "Lambda", lambda_config, ["Conv_BatchNorm", "Branch"]),
        _spec("Activation", "Activation", {"activation": "relu"}, ["ScaleSum"]),
        _spec(
            "AvgPool", "GlobalAveragePooling2D", {"data_format": "channels_last"}, ["Activation"]
        ),
        _spec("Dense", "Dense", _dense(2), ["AvgPool"]),
    ]
    return {
        "class_name": "Model",
        "config": {
            "name": "tiny",
            "layers": layers,
            "input_layers": [["input_1", 0, 0]],
            "output_layers": [["Dense", 0, 0]],
        },
    }


_KERNEL_DEFAULTS: dict[str, Any] = {
    "kernel_initializer": {"class_name": "Zeros", "config": {}},
    "bias_initializer": {"class_name": "Zeros", "config": {}},
    "kernel_regularizer": None,
    "bias_regularizer": None,
    "activity_regularizer": None,
    "kernel_constraint": None,
    "bias_constraint": None,
}
"""Initializer, regularizer and constraint entries every Keras 2.1 Conv2D/Dense config carries."""


def _conv(filters: int, kernel: int, stride: int, use_bias: bool) -> dict[str, Any]:
    return {
        "filters": filters,
        "kernel_size": [kernel, kernel],
        "strides": [stride, stride],
        "padding": "same",
        "data_format": "channels_last",
        "dilation_rate": [1, 1],
        "activation": "linear",
        "use_bias": use_bias,
        **_KERNEL_DEFAULTS,
    }


def _dense(units: int) -> dict[str, Any]:
    return {
        "units": units,
        "activation": "linear",
        "use_bias": True,
        **_KERNEL_DEFAULTS,
    }


def tiny_weights(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Float32 weights of the tiny network, per layer, keyed by Keras short weight name."""
    rng = np.random.default_rng(seed)

    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    return {
        "Conv": {"kernel": normal(3, 3, 3, 4), "bias": normal(4)},
        "Conv_BatchNorm": {
            "beta": normal(4),
            "moving_mean": normal(4),
            "moving_variance": (np.abs(normal(4)) + 0.5).astype(np.float32),
        },
        "Branch": {"kernel": normal(1, 1, 4, 4)},
        "Dense": {"kernel": normal(4, 2), "bias": normal(2)},
    }


def write_legacy_h5(
    path: Path,
    function: Any = None,
    arguments: Any = None,
    weights: dict[str, dict[str, np.ndarray]] | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Write the tiny model as Keras 2.1.2 would; return the weights written.

    ``config`` replaces the tiny ``model_config`` (e.g. with extra layers); every top-level layer
    it lists is stored in ``model_weights``, with the tiny weights of the layers named like them.
    """
    config = tiny_config(function, arguments) if config is None else config
    weights = tiny_weights() if weights is None else weights
    names = [layer["name"] for layer in config["config"]["layers"]]
    with h5py.File(path, "w") as h5:
        h5.attrs["keras_version"] = b"2.1.2"
        h5.attrs["backend"] = b"tensorflow"
        h5.attrs["model_config"] = json.dumps(config).encode("utf-8")
        group = h5.create_group("model_weights")
        group.attrs["keras_version"] = b"2.1.2"
        group.attrs["backend"] = b"tensorflow"
        group.attrs["layer_names"] = np.array([n.encode() for n in names], dtype="S")
        for name in names:
            layer_group = group.create_group(name)
            stored = [f"{name}/{key}:0" for key in weights.get(name, {})]
            layer_group.attrs["weight_names"] = np.array([s.encode() for s in stored], dtype="S")
            for key, array in weights.get(name, {}).items():
                layer_group.create_dataset(f"{name}/{key}:0", data=array)
    return weights


def lambda_b64(source: str) -> str:
    """Base64 marshal of the code object of ``source`` (a lambda), compiled by THIS Python.

    ``compile`` only translates the text; nothing is run.
    """
    module = compile(source, "<fixture>", "eval")
    code = next(c for c in module.co_consts if hasattr(c, "co_code"))
    return base64.encodebytes(marshal.dumps(code)).decode("ascii")


def trap_function(sentinel: Path) -> list[Any]:
    """A Lambda ``function`` entry that would create ``sentinel`` if it were ever executed."""
    return [lambda_b64(f"lambda inputs, scale: open({str(sentinel)!r}, 'w').close()"), None, None]


def patched_real_lambda(old: bytes, new: bytes) -> list[Any]:
    """The real Python 3.6 lambda bytes with one byte sequence replaced (still valid marshal)."""
    raw = base64.b64decode(REAL_LAMBDA_B64)
    assert raw.count(old) == 1
    return [base64.encodebytes(raw.replace(old, new)).decode("ascii"), None, None]


def _set_attr(name: str, value: Any) -> Mutator:
    def mutate(path: Path) -> None:
        with h5py.File(path, "r+") as h5:
            h5.attrs[name] = value

    return mutate


def _del_attr(name: str) -> Mutator:
    def mutate(path: Path) -> None:
        with h5py.File(path, "r+") as h5:
            del h5.attrs[name]

    return mutate


def _drop_weights_layer(path: Path) -> None:
    with h5py.File(path, "r+") as h5:
        group = h5["model_weights"]
        names = [bytes(n) for n in group.attrs["layer_names"]]
        group.attrs["layer_names"] = np.array([n for n in names if n != b"Branch"], dtype="S")
        del group["Branch"]


def _extra_weights_layer(path: Path) -> None:
    with h5py.File(path, "r+") as h5:
        group = h5["model_weights"]
        names = [bytes(n) for n in group.attrs["layer_names"]]
        group.attrs["layer_names"] = np.array([*names, b"Ghost"], dtype="S")
        ghost = group.create_group("Ghost")
        ghost.attrs["weight_names"] = np.array([b"Ghost/kernel:0"], dtype="S")
        ghost.create_dataset("Ghost/kernel:0", data=np.zeros((2, 2), np.float32))


def _wrong_shape(path: Path) -> None:
    with h5py.File(path, "r+") as h5:
        layer = h5["model_weights/Branch"]
        del layer["Branch/kernel:0"]
        layer.create_dataset("Branch/kernel:0", data=np.zeros((1, 1, 4, 5), np.float32))


def _missing_dataset(path: Path) -> None:
    with h5py.File(path, "r+") as h5:
        del h5["model_weights/Dense/Dense/bias:0"]


def _not_hdf5(path: Path) -> None:
    path.write_bytes(b"this is not an HDF5 file\n" * 40)


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _no_weights_group(path: Path) -> None:
    with h5py.File(path, "r+") as h5:
        del h5["model_weights"]


BAD_H5: dict[str, tuple[Mutator, str]] = {
    "not_hdf5": (_not_hdf5, "not an HDF5 file"),
    "truncated": (_truncated, "truncated"),
    "no_model_config": (_del_attr("model_config"), "no model_config"),
    "config_not_json": (_set_attr("model_config", b"{not json"), "not valid JSON"),
    "no_model_weights": (_no_weights_group, "no model_weights"),
    "layer_missing_from_weights": (_drop_weights_layer, "missing from model_weights"),
    "layer_not_in_config": (_extra_weights_layer, "not in model_config"),
    "weight_wrong_shape": (_wrong_shape, "has shape (1, 1, 4, 5)"),
    "weight_dataset_missing": (_missing_dataset, "is missing"),
}
"""Ways a legacy file can be broken: mutator of a good tiny file, and a phrase of the error."""
