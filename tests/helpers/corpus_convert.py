"""Bad-input corpus, ``facenet model convert``: broken and hostile legacy files, unsupported layers,
bad options, bad ``--inputs``, an output directory it may not replace, no legacy environment.

Registered on import (``test_bad_inputs`` imports every ``corpus_*.py``); each case is checked by
``test_bad_inputs.test_refused``: the exit code, one error line naming the file (or option) and the
problem, no traceback, nothing in the workspace changed or created. Every refusal here happens
before TensorFlow is imported and before the output directory exists.
"""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

import numpy as np

from helpers.cli import facenet
from helpers.corpus import Command, Outcome, Store, Workspace, broken_h5, case, tiny
from helpers.corpus_legacy_code import HOSTILE_CONFIGS, KERAS_BUILT, keras_built, with_layer_config
from helpers.legacy_h5 import tiny_config, trap_function


def convert(ws: Workspace, h5: Path, *options: str | Path) -> Command:
    """``facenet model convert H5 --to onnx --out WS/out OPTIONS`` (the output is new)."""
    return partial(facenet, "model", "convert", h5, "--to", "onnx", "--out", ws.root / "out",
                   *options)


def broken_case(variant: str) -> None:
    @case(f"convert-{variant}")
    def _setup(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
        path, phrase = broken_h5(ws, variant)
        return convert(ws, path), Outcome(3, path.name, (phrase,))


for _variant in ("not_hdf5", "truncated", "no_model_config", "config_not_json",
                 "weight_wrong_shape", "no_model_weights", "layer_missing_from_weights"):
    broken_case(_variant)


@case("convert-missing-path")
def _missing(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    path = ws.inputs / "no such model.h5"
    return convert(ws, path), Outcome(3, path.name, ("no such file",))


@case("convert-directory")
def _directory(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    path = ws.inputs / "folder.h5"
    path.mkdir()
    return convert(ws, path), Outcome(3, path.name, ("not a regular file",))


@case("convert-booby-trap-lambda")
def _trap(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    sentinel = ws.root / "SENTINEL"
    path = tiny(ws, function=trap_function(sentinel))
    return convert(ws, path), Outcome(5, "'ScaleSum'", ("refus", "--lambda ScaleSum="),
                                      sentinel=sentinel)


def hostile_case(name: str) -> None:
    @case(f"convert-code-{name}")
    def _setup(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
        sentinel = ws.root / "SENTINEL"
        config, names, phrases = HOSTILE_CONFIGS[name](sentinel)
        path = tiny(ws, f"{name}.h5", config=config)
        return convert(ws, path), Outcome(5, names, phrases, sentinel=sentinel)


for _name in ("nested-model", "module-reference", "custom-layer-class", "mask-function"):
    hostile_case(_name)


@case("convert-keras-nested-lambda", needs="legacy")
def _keras_nested(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    root, sentinel = keras_built()
    path = ws.inputs / "nested.h5"
    shutil.copyfile(root / path.name, path)
    return convert(ws, path), Outcome(5, repr(KERAS_BUILT["nested"]), ("refus",),
                                      sentinel=sentinel)


@case("convert-unsupported-layer")
def _unsupported(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    config = tiny_config()
    config["config"]["layers"].append({"class_name": "LSTM", "name": "lstm_1",
                                       "config": {"name": "lstm_1", "units": 2},
                                       "inbound_nodes": [[["Dense", 0, 0, {}]]]})
    path = tiny(ws, "recurrent.h5", config=config)
    return convert(ws, path), Outcome(3, path.name, ("unsupported layer LSTM (1 of them)",))


@case("convert-unsupported-layers-keras-2-15", needs="legacy")
def _unsupported_keras(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    from helpers.convert_models import legacy_model

    path = ws.inputs / "rnn.h5"
    shutil.copyfile(legacy_model("unknown_layer"), path)
    return convert(ws, path), Outcome(3, path.name, ("unsupported layer LSTM (2 of them)",))


@case("convert-refused-activation")
def _hard_sigmoid(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    path = tiny(ws, "act.h5", config=with_layer_config("Activation", activation="hard_sigmoid"))
    return convert(ws, path), Outcome(3, "'Activation'", ("hard_sigmoid", "0.2x + 0.5"))


@case("convert-out-holds-other-files")
def _foreign_out(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    out = ws.root / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine, keep me\n")
    return convert(ws, tiny(ws)), Outcome(3, str(out), ("not an earlier facenet model convert",))


@case("convert-lambda-missing-module")
def _lambda_missing(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    module = ws.inputs / "gone.py"
    return (convert(ws, tiny(ws), "--lambda", f"ScaleSum={module}:f"),
            Outcome(3, "gone.py", ("no such Python file",)))


@case("convert-lambda-no-such-layer")
def _lambda_layer(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    module = ws.photo("mine.py", data=b"def f(x):\n    return x\n")
    return (convert(ws, tiny(ws), "--lambda", f"lrn_9={module}:f"),
            Outcome(3, "'lrn_9'", ("no Lambda layer of that name", "ScaleSum")))


@case("convert-inputs-wrong-shape")
def _inputs_shape(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    npy = ws.inputs / "rows.npy"
    np.save(npy, np.zeros((2, 64, 64, 1), np.float32))
    return (convert(ws, tiny(ws), "--inputs", npy),
            Outcome(3, "rows.npy", ("does not fit input 'input_1'", "(rows, 160, 160, 3)")))


@case("convert-inputs-pickled")
def _inputs_pickle(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    from test_bad_inputs import Trap

    sentinel = ws.root / "SENTINEL"
    npy = ws.inputs / "rows.npy"
    np.save(npy, np.array([Trap(sentinel)], dtype=object), allow_pickle=True)
    return (convert(ws, tiny(ws), "--inputs", npy),
            Outcome(3, "rows.npy", ("not a readable .npy",), sentinel=sentinel))


@case("convert-no-legacy-environment")
def _no_legacy(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    python = ws.root / "no-env" / "python"
    return (convert(ws, tiny(ws), "--legacy-python", python),
            Outcome(6, str(python), ("legacy Keras 2.15 environment", "--legacy-python")))


@case("usage-convert-unknown-format")
def _bad_format(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    return (partial(facenet, "model", "convert", tiny(ws), "--to", "caffe",
                    "--out", ws.root / "out"),
            Outcome(2, "'caffe'", ("unknown format",)))


@case("usage-convert-input-range")
def _bad_range(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    return (convert(ws, tiny(ws), "--input-range", "1,-1"),
            Outcome(2, "--input-range", ("LOW < HIGH",)))
