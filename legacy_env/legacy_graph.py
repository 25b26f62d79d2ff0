"""Run the ORIGINAL graph of any supported legacy ``.h5`` with Keras 2.15 (legacy env only).

The parity half of ``facenet model convert``: the modern command starts this script with the legacy
environment's python while it exports, and compares every exported format with what it writes.

1. the file is read and vetted exactly as the modern side does (:mod:`toolchain.legacy`): no
   code from the file runs; each Lambda is bound to the catalogue's ``scale_sum`` or to the user's
   own function (``--lambda LAYER=FILE.py:FUNCTION``, the same mapping the modern side got);
2. the graph is built from the file's own ``model_config`` (bound) with ``model_from_json`` -
   never ``load_model`` on the file - and Keras 2.15's own ``load_weights`` reads the weights;
   the parameter count must equal what the file stores;
3. it runs on every row of ``--inputs`` (an npz keyed by the model's input names, the names
   :func:`toolchain.legacy.config.tensor_names` gives) and writes ``--out``: an npz keyed by the
   output names, written atomically.

Usage: ``python legacy_env/legacy_graph.py --h5 FILE --inputs IN.npz --out OUT.npz
[--lambda LAYER=FILE.py:FUNCTION]...``. Errors: one line ``legacy_graph: error: ...`` and the
toolchain's exit code.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.core.atomic import write_bytes
from toolchain.core.errors import (
    InputError,
    IntegrityError,
    MissingArtifactError,
    ToolchainError,
)
from toolchain.legacy.bindings import (
    bind_config,
    load_functions,
    parse_mappings,
    vet_lambdas,
)
from toolchain.legacy.config import parse_model, tensor_names
from toolchain.legacy.h5file import read_legacy
from toolchain.legacy.npzfile import npz_bytes

BATCH = 32


def _inputs(path: Path, names: tuple[str, ...]) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        missing = [n for n in names if n not in npz.files]
        if missing:
            raise InputError(f"{path}: no input(s) {missing} (has {sorted(npz.files)})")
        return [np.asarray(npz[n], dtype=np.float32) for n in names]


def run(h5: Path, inputs: Path, out: Path, mappings: list[str]) -> dict[str, Any]:
    """Build, load, run and write; return a summary for the caller's log."""
    model = read_legacy(h5)
    bindings = vet_lambdas(model.code, parse_mappings(mappings))
    spec = parse_model(model.model_config)
    functions = load_functions(bindings)
    in_names, out_names = tensor_names(spec.inputs), tensor_names(spec.outputs)
    x = _inputs(inputs, in_names)

    keras_version = metadata.version("keras")
    if not keras_version.startswith("2."):
        raise MissingArtifactError(f"{sys.executable} has Keras {keras_version}, not Keras 2: "
                                   "the original graph runs in the legacy environment")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)
    try:
        keras_model = tf.keras.models.model_from_json(
            json.dumps(bind_config(model.model_config, bindings)), custom_objects=functions)
    except (ValueError, TypeError, KeyError) as exc:
        raise InputError(f"{h5}: Keras 2.15 cannot build its model_config ({exc})") from exc
    try:
        keras_model.load_weights(str(h5))
    except (ValueError, OSError) as exc:
        raise IntegrityError(f"{h5}: Keras 2.15 cannot load its weights ({exc})") from exc
    if keras_model.count_params() != model.parameters:
        raise IntegrityError(f"Keras 2.15 counts {keras_model.count_params()} parameters, the "
                             f"file stores {model.parameters}")
    signature = [tf.TensorSpec([None, *a.shape[1:]], tf.float32) for a in x]
    infer = tf.function(lambda *args: keras_model(list(args) if len(args) > 1 else args[0],
                                                  training=False),
                        input_signature=signature, autograph=False)
    rows = len(x[0])
    parts: list[list[np.ndarray]] = []
    for start in range(0, rows, BATCH):
        result = infer(*[tf.constant(a[start:start + BATCH]) for a in x])
        parts.append([np.asarray(r) for r in (result if isinstance(result, list | tuple)
                                              else [result])])
    outputs = {name: np.concatenate([p[k] for p in parts]).astype(np.float32)
               for k, name in enumerate(out_names)}
    write_bytes(out, npz_bytes(outputs))
    return {"rows": rows, "outputs": {k: list(v.shape) for k, v in outputs.items()},
            "parameters": model.parameters, "keras": keras_version,
            "lambdas": [b.describe() for b in bindings]}


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="legacy_graph.py",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--h5", type=Path, required=True, help="the legacy .h5 model file")
    parser.add_argument("--inputs", type=Path, required=True, help="npz of inputs by name")
    parser.add_argument("--out", type=Path, required=True, help="npz of outputs to write")
    parser.add_argument("--lambda", dest="mappings", action="append", default=[],
                        help="LAYER=FILE.py:FUNCTION (repeatable)")
    args = parser.parse_args(argv)
    for noisy in ("tensorflow", "absl", "h5py"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        summary = run(args.h5, args.inputs, args.out, args.mappings)
    except ToolchainError as exc:
        print(f"legacy_graph: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"legacy_graph: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return InputError.exit_code
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
