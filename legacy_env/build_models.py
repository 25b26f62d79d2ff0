"""Write legacy ``.h5`` files with Keras 2.15 (legacy env only): test files and the benchmark model.

``facenet model convert`` is tested on the real fer (Keras 2.0.5) and FaceNet (2.1.2) files, and on
the files this script writes with Keras 2.15's own ``model.save(..h5)`` / ``save_weights``, one per
kind a test needs (:data:`KINDS`). Weights are seeded: kernels keep Keras' initializers (so deep
models stay finite), biases and batch-norm statistics are drawn so that none is a trivial 0 or 1.

Usage: ``python legacy_env/build_models.py OUT_DIR KIND...``; prints one JSON line per file
(kind, path, parameters).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf

keras = tf.keras
L = keras.layers
SEED = 0


def _seed_weights(model: Any) -> None:
    """Non-trivial biases and batch-norm statistics; kernels as initialized."""
    rng = np.random.default_rng(SEED)
    for weight in model.weights:
        name = weight.name.rsplit("/", 1)[-1].split(":")[0]
        shape = tuple(weight.shape)
        if name in ("bias", "beta", "moving_mean"):
            weight.assign(rng.normal(0, 0.1, shape).astype(np.float32))
        elif name in ("gamma", "moving_variance"):
            weight.assign(rng.uniform(0.5, 1.5, shape).astype(np.float32))
        elif name == "alpha":
            weight.assign(rng.uniform(0.0, 0.3, shape).astype(np.float32))


def multi_output() -> Any:
    """Two inputs, a nested Sequential with batch norm, a softmax and a linear output."""
    inner = keras.Sequential([L.Dense(16, activation="relu", name="d1"),
                              L.BatchNormalization(name="bn"), L.Dense(8, name="d2")],
                             name="inner_seq")
    a, b = keras.Input((6,), name="a"), keras.Input((4,), name="b")
    x = L.Dense(12, activation="tanh", name="pre")(L.Concatenate(name="cat")([a, b]))
    y = inner(x)
    return keras.Model([a, b], [L.Dense(3, activation="softmax", name="cls")(y),
                                L.Dense(1, name="reg")(y)], name="multi_output")


def nested() -> Any:
    """A Sequential inside a Functional model inside the file's model, a model shared by two
    calls, and a frozen nested model (its weights stored in another order)."""
    seq = keras.Sequential([keras.Input((8,)), L.Dense(8, name="s1"),
                            L.BatchNormalization(name="sbn"), L.Activation("relu", name="sact")],
                           name="seq")
    i = keras.Input((8,), name="mid_in")
    middle = keras.Model(i, L.Dense(8, name="m1")(seq(i)), name="middle")
    j = keras.Input((8,), name="frozen_in")
    frozen = keras.Model(j, L.BatchNormalization(name="fbn")(L.Dense(8, name="f1")(j)),
                         name="frozen")
    frozen.trainable = False
    x = keras.Input((8,), name="x")
    shared = L.Add(name="sum")([middle(x), middle(L.Dense(8, name="pre")(x))])
    return keras.Model(x, L.Dense(4, name="head")(frozen(shared)), name="nested")


def mapped_lambda() -> Any:
    """A Lambda the catalogue does not know (local response normalization, with arguments)."""
    x = keras.Input((12, 12, 3), name="image")
    y = L.Conv2D(8, 3, padding="same", name="conv")(x)
    y = L.Lambda(lambda t, radius: tf.nn.local_response_normalization(t, depth_radius=radius),
                 arguments={"radius": 2}, name="lrn_1")(y)
    return keras.Model(x, L.Dense(5, name="logits")(L.GlobalAveragePooling2D(name="gap")(y)),
                       name="mapped_lambda")


def unknown_layer() -> Any:
    """Two LSTM layers: Keras built-ins the table does not support."""
    x = keras.Input((5, 3), name="seq_in")
    y = L.LSTM(4, return_sequences=True, name="lstm_1")(x)
    return keras.Model(x, L.Dense(2, name="out")(L.LSTM(4, name="lstm_2")(y)), name="rnn")


def _image_block(x: Any) -> Any:
    y = L.Conv2D(8, 3, padding="same", name="c1")(x)
    y = L.BatchNormalization(name="bn1")(y)
    y = L.ReLU(max_value=6.0, name="relu6")(y)
    y = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(y)
    y = L.LeakyReLU(alpha=0.2, name="leaky")(y)
    y = L.SeparableConv2D(8, 3, padding="same", name="sep")(y)
    y = L.PReLU(shared_axes=[1, 2], name="prelu")(y)
    y = L.ZeroPadding2D(((1, 0), (0, 1)), name="pad")(y)
    y = L.Cropping2D(((1, 0), (0, 1)), name="crop")(y)
    y = L.SpatialDropout2D(0.2, name="sdrop")(y)
    y = L.MaxPooling2D(2, name="max2")(y)
    up = L.UpSampling2D(2, name="up")(y)
    up_b = L.UpSampling2D(2, interpolation="bilinear", name="up_bilinear")(y)
    y = L.Conv2DTranspose(8, 3, strides=2, padding="same", name="deconv")(y)
    y = L.Average(name="avg")([y, up, up_b])
    y = L.ELU(alpha=0.5, name="elu")(y)
    y = L.AveragePooling2D(2, name="avg2")(y)
    y = L.GaussianNoise(0.1, name="noise")(y)
    g1 = L.GlobalMaxPooling2D(name="gmax2")(y)
    y = L.Flatten(name="flat")(y)
    y = L.Dense(8, activation="swish", name="fc")(y)
    y = L.Maximum(name="max")([y, g1])
    return L.LayerNormalization(name="ln")(y)


def _sequence_block(s: Any) -> Any:
    t = L.Conv1D(6, 3, padding="causal", activation="gelu", name="conv1d")(s)
    t = L.MaxPooling1D(2, name="max1")(t)
    t = L.AveragePooling1D(1, name="avg1")(t)
    t = L.Permute((2, 1), name="perm")(t)
    t = L.Reshape((12, 2), name="reshape")(t)
    t1 = L.GlobalAveragePooling1D(name="gavg1")(t)
    t2 = L.GlobalMaxPooling1D(name="gmax1")(t)
    return L.Subtract(name="sub")([t1, t2])


def kitchen_sink() -> Any:
    """Every layer class the table claims was tested in the Keras 2.15 config format."""
    x = keras.Input((16, 16, 3), name="image")
    s = keras.Input((8, 4), name="series")
    y = _image_block(x)
    t = L.Dense(8, activation="selu", name="t_fc")(_sequence_block(s))
    t = L.AlphaDropout(0.1, name="adrop")(t)
    t = L.GaussianDropout(0.1, name="gdrop")(t)
    z = L.Multiply(name="mul")([y, t])
    z = L.Minimum(name="min")([z, L.Activation("softplus", name="sp")(y)])
    z = L.Add(name="add")([z, L.Activation("softsign", name="ss")(t)])
    z = features = L.Concatenate(name="cat")([z, L.Activation("sigmoid", name="sig")(t)])
    z = L.Dropout(0.3, name="drop")(z)
    rep = L.RepeatVector(3, name="rep")(z)
    dot = L.Dot(axes=(2, 2), normalize=True, name="dot")([rep, rep])
    z = L.Dense(6, activation="elu", name="fc2")(z)
    z = L.Conv2D(4, 1, name="conv_out")(L.Reshape((1, 1, 6), name="to_image")(z))
    logits = L.Activation("tanh", name="tanh")(L.Flatten(name="flat_out")(z))
    probs = L.Softmax(name="probs")(logits)
    return keras.Model([x, s], [probs, L.Flatten(name="dot_flat")(dot), features],
                       name="kitchen_sink")


def vgg25m() -> Any:
    """A VGG-style classifier of about 25M parameters (the conversion time goal's model)."""
    x = inputs = keras.Input((128, 128, 3), name="image")
    for block, (filters, convs) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]):
        for k in range(convs):
            x = L.Conv2D(filters, 3, padding="same", activation="relu",
                         name=f"block{block + 1}_conv{k + 1}")(x)
        x = L.MaxPooling2D(2, name=f"block{block + 1}_pool")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(1120, activation="relu", name="fc1")(x)
    x = L.BatchNormalization(name="fc1_bn")(x)
    x = L.Dropout(0.5, name="fc1_drop")(x)
    return keras.Model(inputs, L.Dense(1000, activation="softmax", name="predictions")(x),
                       name="vgg25m")


KINDS: dict[str, Callable[[], Any]] = {
    "multi_output": multi_output, "nested": nested, "mapped_lambda": mapped_lambda,
    "unknown_layer": unknown_layer, "kitchen_sink": kitchen_sink, "vgg25m": vgg25m,
}
"""Each model this script writes as ``<kind>.h5``; ``weights_only`` writes ``save_weights`` of
``multi_output`` as ``weights_only.h5``."""


def main(argv: list[str]) -> int:
    """Write each named kind into the directory."""
    out, kinds = Path(argv[0]), argv[1:]
    out.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        keras.utils.set_random_seed(SEED)
        model = KINDS["multi_output" if kind == "weights_only" else kind]()
        _seed_weights(model)
        path = out / f"{kind}.h5"
        if kind == "weights_only":
            model.save_weights(str(path))
        else:
            model.save(str(path), save_format="h5")
        print(json.dumps({"kind": kind, "path": str(path), "parameters": model.count_params()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
