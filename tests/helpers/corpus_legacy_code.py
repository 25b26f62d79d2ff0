"""Bad-input corpus, legacy code area: code hidden anywhere in a legacy Keras ``model_config``.

A Lambda inside a nested model, a ``Sequential`` inside a Functional model or a wrapper
(``TimeDistributed``, ``Bidirectional``), a Lambda's ``output_shape`` or ``mask`` given as bytecode,
an activation given as a serialized function, a ``module``/``registered_name`` reference to any
importable callable, a custom class name: ``facenet model inspect`` and ``legacy_env/recover.py``
must both refuse each with exit code 5, naming the layer path, and never run it.

Two kinds of files: ones written by the real Keras 2.15 ``model.save`` in the legacy environment
(built once per session in a subprocess of ``FACENET_LEGACY_PYTHON``), and ones written with h5py
from the tiny Keras 2.1.2 layout of ``conftest`` (no legacy environment needed for inspect).
"""

from __future__ import annotations

import atexit
import copy
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import h5py

from helpers.cli import facenet
from helpers.corpus import RECOVER, Command, Outcome, Store, Workspace, case, run
from helpers.legacy_h5 import tiny_config, trap_function, write_legacy_h5

# --------------------------------------------------------------------------------------------
# Files written by Keras 2.15 itself (legacy environment)
# --------------------------------------------------------------------------------------------

KERAS_BUILD = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf

keras = tf.keras
out, sentinel = sys.argv[1], sys.argv[2]
# While the model is being built Keras calls the function to trace it: the guard keeps the trap
# shut during this build only; the saved bytecode runs os.system whenever it is called later.
source = (
    "lambda x: x if __import__('os').environ.get('FACENET_BUILDING_TRAP') "
    "else __import__('os').system('touch ' + %r) or x" % sentinel
)
os.environ["FACENET_BUILDING_TRAP"] = "1"
evil = eval(source)


def trap():
    return keras.layers.Lambda(evil, name="evil_lambda")


def nested():
    i = keras.Input((4,))
    inner = keras.Model(i, trap()(i), name="inner")
    x = keras.Input((4,))
    return keras.Model(x, keras.layers.Dense(2, name="dense")(inner(x)), name="outer")


def timedistributed():
    x = keras.Input((3, 4))
    return keras.Model(x, keras.layers.TimeDistributed(trap(), name="td")(x), name="outer")


def sequential():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="dense"), trap()],
                             name="inner")
    x = keras.Input((4,))
    return keras.Model(x, inner(x), name="outer")


def vetted_nested():
    a, b = keras.Input((4,)), keras.Input((4,))
    scaled = keras.layers.Lambda(lambda inputs, scale: inputs[0] + inputs[1] * scale,
                                 arguments={"scale": 0.2}, name="scale_sum")([a, b])
    inner = keras.Model([a, b], scaled, name="inner")
    x = keras.Input((4,))
    branch = keras.layers.Dense(4, name="dense")(x)
    return keras.Model(x, keras.layers.Dense(2, name="head")(inner([x, branch])), name="outer")


for kind in sys.argv[3:]:
    globals()[kind]().save(os.path.join(out, kind + ".h5"))
"""
"""Saves each named model with ``model.save("<kind>.h5")`` (Keras 2.15, legacy h5)."""

KERAS_BUILT = {
    "nested": "inner/evil_lambda",
    "timedistributed": "td/evil_lambda",
    "sequential": "inner/evil_lambda",
}
"""Hostile files Keras 2.15 writes, and the layer path of their trap Lambda."""

VETTED_NESTED = "vetted_nested"
"""A file Keras 2.15 writes that must WORK: the vetted Lambda ``inner/scale_sum`` in a nested
model (recover must bind it to ``scale_sum`` at that depth)."""


@functools.cache
def keras_built() -> tuple[Path, Path]:
    """Build every ``KERAS_BUILT`` file and ``VETTED_NESTED`` once; return (their directory, the
    trap's sentinel)."""
    root = Path(tempfile.mkdtemp(prefix="facenet-keras-built-"))
    atexit.register(shutil.rmtree, root, True)
    sentinel = root / "SENTINEL"
    proc = run(["-c", KERAS_BUILD, str(root), str(sentinel), *KERAS_BUILT, VETTED_NESTED],
               python=os.environ["FACENET_LEGACY_PYTHON"], timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert not sentinel.exists(), "the trap fired while Keras was building it"
    return root, sentinel


def recover(ws: Workspace, path: Path) -> Any:
    """``recover.py --h5 PATH`` in the legacy environment."""
    return run([str(RECOVER), "--artifacts", str(ws.artifacts), "--h5", str(path)],
               python=os.environ["FACENET_LEGACY_PYTHON"], timeout=600)


def keras_case(kind: str, command: str) -> None:
    @case(f"{command}-keras-{kind}-lambda", needs="legacy")
    def _setup(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
        root, sentinel = keras_built()
        path = ws.inputs / f"{kind}.h5"
        shutil.copyfile(root / path.name, path)
        run_it: Command = (partial(facenet, "model", "inspect", path) if command == "inspect"
                           else partial(recover, ws, path))
        return run_it, Outcome(5, repr(KERAS_BUILT[kind]), ("refus",), sentinel=sentinel)


for _kind in KERAS_BUILT:
    for _command in ("inspect", "recover"):
        keras_case(_kind, _command)


# --------------------------------------------------------------------------------------------
# Files written with h5py in the Keras 2.1.2 layout (hostile parts added to the tiny model)
# --------------------------------------------------------------------------------------------


def evil_lambda(sentinel: Path, name: str = "evil_lambda") -> dict[str, Any]:
    """A Lambda layer entry whose function would create ``sentinel`` if it were ever run."""
    return {
        "class_name": "Lambda",
        "name": name,
        "config": {
            "name": name,
            "trainable": True,
            "function": trap_function(sentinel),
            "function_type": "lambda",
            "output_shape": None,
            "output_shape_type": "raw",
            "arguments": {},
        },
        "inbound_nodes": [],
    }


def functional(name: str, *layers: dict[str, Any]) -> dict[str, Any]:
    """A Functional model entry (as a layer of another model) made of ``layers``."""
    entry = {"class_name": "InputLayer", "name": f"{name}_input",
             "config": {"name": f"{name}_input", "batch_input_shape": [None, 4]},
             "inbound_nodes": []}
    return {
        "class_name": "Functional",
        "name": name,
        "config": {
            "name": name,
            "layers": [entry, *layers],
            "input_layers": [[entry["name"], 0, 0]],
            "output_layers": [[layers[-1]["name"], 0, 0]],
        },
        "inbound_nodes": [],
    }


def wrapper(class_name: str, name: str, **children: dict[str, Any]) -> dict[str, Any]:
    """A wrapper layer entry (``TimeDistributed``, ``Bidirectional``) around ``children``."""
    return {"class_name": class_name, "name": name, "config": {"name": name, **children},
            "inbound_nodes": []}


def lstm(name: str, **overrides: Any) -> dict[str, Any]:
    """A Keras 2.15-style serialized LSTM."""
    return {"module": "keras.layers", "class_name": "LSTM", "registered_name": None,
            "config": {"name": name, "units": 2, "activation": "tanh",
                       "recurrent_activation": "sigmoid", **overrides}}


def with_layer(extra: dict[str, Any]) -> dict[str, Any]:
    """The tiny config with one more (unconnected) top-level layer."""
    config = tiny_config()
    config["config"]["layers"].append(extra)
    return config


def with_layer_config(layer: str, **changes: Any) -> dict[str, Any]:
    """The tiny config with entries of one top-level layer's config replaced."""
    config = tiny_config()
    for spec in config["config"]["layers"]:
        if spec["name"] == layer:
            spec["config"].update(copy.deepcopy(changes))
    return config


HostileConfig = Callable[[Path], tuple[dict[str, Any], str, tuple[str, ...]]]
"""Build a hostile config around a sentinel: (model_config, layer path named, phrases)."""

HOSTILE_CONFIGS: dict[str, HostileConfig] = {
    "nested-model": lambda s: (
        with_layer(functional("inner", evil_lambda(s))), "'inner/evil_lambda'", ("refus",)),
    "model-in-model-in-model": lambda s: (
        with_layer(functional("middle", functional("inner", evil_lambda(s)))),
        "'middle/inner/evil_lambda'", ("refus",)),
    "sequential-in-functional": lambda s: (
        with_layer(wrapper("Sequential", "seq", layers=[evil_lambda(s)])),
        "'seq/evil_lambda'", ("refus",)),
    "timedistributed": lambda s: (
        with_layer(wrapper("TimeDistributed", "td", layer=evil_lambda(s))),
        "'td/evil_lambda'", ("refus",)),
    "bidirectional-backward": lambda s: (
        with_layer(wrapper("Bidirectional", "bidi", layer=lstm("fwd"),
                           backward_layer=evil_lambda(s, "bwd"))),
        "'bidi/bwd'", ("refus",)),
    "output-shape-bytecode": lambda s: (
        with_layer_config("ScaleSum", output_shape=trap_function(s), output_shape_type="lambda"),
        "'ScaleSum'", ("output_shape",)),
    "mask-function": lambda s: (
        with_layer_config("ScaleSum", mask=trap_function(s), mask_type="lambda"),
        "'ScaleSum'", ("mask",)),
    "activation-serialized-function": lambda s: (
        with_layer_config("Activation", activation={"value": trap_function(s)}),
        "'Activation/activation'", ("activation",)),
    "activation-keras-lambda": lambda s: (
        with_layer_config("Activation", activation={
            "module": "builtins", "class_name": "__lambda__", "registered_name": None,
            "config": {"code": trap_function(s)[0], "defaults": None, "closure": None}}),
        "'Activation/activation'", ("__lambda__",)),
    "module-reference": lambda s: (
        with_layer_config("Dense", kernel_initializer={
            "module": "os", "class_name": "system", "config": {}, "registered_name": "system"}),
        "'Dense/kernel_initializer'", ("module 'os'",)),
    "registered-name-reference": lambda s: (
        with_layer_config("Dense", bias_initializer={
            "module": "keras.initializers", "class_name": "Zeros", "config": {},
            "registered_name": "Custom>Zeros"}),
        "'Dense/bias_initializer'", ("registered_name",)),
    "custom-initializer-class": lambda s: (
        with_layer_config("Branch", kernel_initializer={"class_name": "MyInit", "config": {}}),
        "'Branch/kernel_initializer'", ("'MyInit'",)),
    "custom-layer-class": lambda s: (
        with_layer({"class_name": "EvilLayer", "name": "evil", "config": {"name": "evil"},
                    "inbound_nodes": []}),
        "'evil'", ("'EvilLayer'",)),
}
"""Hostile configs written with h5py; each is refused by inspect (and recover) with exit 5."""

RECOVER_CONFIGS = ("nested-model", "timedistributed", "output-shape-bytecode", "module-reference",
                   "activation-keras-lambda")
"""The h5py-built files also run through ``recover.py`` (legacy environment)."""


def hostile_h5(ws: Workspace, name: str) -> tuple[Path, Outcome]:
    """Write the hostile file ``name`` into the workspace; return it and the expected refusal."""
    sentinel = ws.root / "SENTINEL"
    config, names, phrases = HOSTILE_CONFIGS[name](sentinel)
    path = ws.inputs / f"{name}.h5"
    write_legacy_h5(path, config=config)
    return path, Outcome(5, names, phrases, sentinel=sentinel)


def hostile_case(name: str, command: str) -> None:
    needs = "none" if command == "inspect" else "legacy"

    @case(f"{command}-code-{name}", needs=needs)
    def _setup(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
        path, outcome = hostile_h5(ws, name)
        run_it: Command = (partial(facenet, "model", "inspect", "--json", path)
                           if command == "inspect"
                           else partial(recover, ws, path))
        return run_it, outcome


for _name in HOSTILE_CONFIGS:
    hostile_case(_name, "inspect")
for _name in RECOVER_CONFIGS:
    hostile_case(_name, "recover")


def deep_config(depth: int) -> str:
    """The tiny model config JSON with a Dense initializer config nested ``depth`` levels deep."""
    text = json.dumps(tiny_config())
    marker = '"kernel_initializer": {"class_name": "Zeros", "config": {}}'
    assert marker in text
    nested = '{"a": ' * depth + "1" + "}" * depth
    deep = f'"kernel_initializer": {{"class_name": "Zeros", "config": {nested}}}'
    return text.replace(marker, deep, 1)


def deep_case(depth: int) -> None:
    @case(f"inspect-code-config-{depth}-deep")
    def _setup(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
        path = ws.inputs / f"deep{depth}.h5"
        write_legacy_h5(path)
        with h5py.File(path, "r+") as h5:
            h5.attrs["model_config"] = deep_config(depth).encode()
        return partial(facenet, "model", "inspect", path), Outcome(5, path.name, ("deeper than",))


for _depth in (500, 100_000):
    deep_case(_depth)
