"""InceptionResNetV1 rebuilt in Keras 3 with exactly the legacy ``facenet_keras.h5`` layer names.

Every name, filter count, kernel, stride, padding and inbound connection below comes from the
``model_config`` attribute of the legacy file (Keras 2.1.2, 426 layers);
``tests/test_architecture.py`` compares the rebuilt graph with that JSON layer by layer. The 21
legacy ``Lambda`` layers (marshaled Python 3.6 bytecode computing ``inputs[0] + inputs[1] * scale``)
become :class:`ScaleSum`, a small registered layer that serializes as plain config, so
``facenet.keras`` loads with ``safe_mode=True``.

Shapes per stage for the 160x160x3 input (batch axis omitted)::

    stem        160x160x3 -> 79x79x32 -> 77x77x32 -> 77x77x64 -> 38x38x64 -> 38x38x80
                -> 36x36x192 -> 17x17x256
    Block35 x5  17x17x256
    Mixed_6a    8x8x896      (384 + 256 + 256 max-pooled)
    Block17 x10 8x8x896
    Mixed_7a    3x3x1792     (384 + 256 + 256 + 896 max-pooled)
    Block8 x6   3x3x1792     (Block8_6: scale 1.0, no activation)
    head        1792 (AvgPool) -> Dropout -> 128 (Bottleneck) -> 128 (Bottleneck_BatchNorm)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import layers

from toolchain.core.contracts import EMBEDDING_DIM, INPUT_SIZE

INPUT_SHAPE = (INPUT_SIZE, INPUT_SIZE, 3)
"""``input_1`` ``batch_input_shape`` ``[null, 160, 160, 3]`` in the legacy ``model_config``."""

INPUT_LAYER_NAME = "input_1"
"""The legacy input layer's name (kept so the topology matches ``model_config``)."""

CHANNEL_AXIS = 3
"""``axis`` of every conv ``BatchNormalization`` and ``Concatenate`` in ``model_config`` (NHWC)."""

BN_MOMENTUM = 0.995
"""``momentum`` of all 112 ``BatchNormalization`` layers in ``model_config`` (FaceNet's decay)."""

BN_EPSILON = 0.001
"""``epsilon`` of all 112 ``BatchNormalization`` layers in ``model_config``."""

BN_SCALE = False
"""``scale: false`` in ``model_config``: no gamma; beta, moving mean and moving variance only."""

BLOCK35_SCALE = 0.17
"""``arguments.scale`` of the ``Block35_<i>_ScaleSum`` Lambda layers in ``model_config``."""

BLOCK17_SCALE = 0.10
"""``arguments.scale`` of the ``Block17_<i>_ScaleSum`` Lambda layers in ``model_config``."""

BLOCK8_SCALE = 0.20
"""``arguments.scale`` of ``Block8_1..5_ScaleSum`` in ``model_config``."""

FINAL_BLOCK8_SCALE = 1.0
"""``arguments.scale`` of ``Block8_6_ScaleSum`` in ``model_config`` (followed by no activation)."""

DROPOUT_RATE = 1.0 - 0.8
"""``rate`` 0.19999999999999996 of ``Dropout`` in ``model_config``: ``1 - keep_prob`` with 0.8."""

L2_EPSILON = 1e-10
"""Floor of the squared norm in the L2 output (:func:`toolchain.core.preprocess.l2_normalize`)."""

L2_OUTPUT_NAME = "embedding_l2"
"""Name of the extra L2-normalized output layer (not in the legacy graph)."""

SERIALIZATION_PACKAGE = "facenet_toolchain"
"""Package under which the custom layers register for ``.keras`` (de)serialization."""


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class ScaleSum(layers.Layer):
    """Residual scaling ``shortcut + residual * scale``: the legacy Lambda's formula, as config.

    Args:
        scale: the residual multiplier (``arguments.scale`` of the legacy Lambda).
    """

    def __init__(self, scale: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, inputs: Sequence[Any]) -> Any:
        """Return ``inputs[0] + inputs[1] * scale``."""
        shortcut, residual = inputs
        return shortcut + residual * self.scale

    def compute_output_shape(self, input_shape: Sequence[Any]) -> Any:
        """Same shape as the shortcut."""
        return input_shape[0]

    def get_config(self) -> dict[str, Any]:
        """Layer config plus ``scale``."""
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class L2Normalize(layers.Layer):
    """``x / sqrt(max(sum(x^2), eps))`` along the last axis."""

    def __init__(self, epsilon: float = L2_EPSILON, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, inputs: Any) -> Any:
        """Normalize ``inputs`` to unit L2 norm along the last axis."""
        ops = keras.ops
        squared = ops.sum(ops.square(inputs), axis=-1, keepdims=True)
        return inputs / ops.sqrt(ops.maximum(squared, self.epsilon))

    def compute_output_shape(self, input_shape: Any) -> Any:
        """Same shape as the input."""
        return input_shape

    def get_config(self) -> dict[str, Any]:
        """Layer config plus ``epsilon``."""
        return {**super().get_config(), "epsilon": self.epsilon}


def conv2d_bn(
    x: Any,
    filters: int,
    kernel_size: int | tuple[int, int],
    strides: int = 1,
    padding: str = "same",
    activation: str | None = "relu",
    use_bias: bool = False,
    name: str = "",
) -> Any:
    """``<name>`` Conv2D, then (without bias) ``<name>_BatchNorm``, then ``<name>_Activation``."""
    x = layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias, name=name
    )(x)
    if not use_bias:
        x = layers.BatchNormalization(
            axis=CHANNEL_AXIS,
            momentum=BN_MOMENTUM,
            epsilon=BN_EPSILON,
            scale=BN_SCALE,
            name=f"{name}_BatchNorm",
        )(x)
    if activation is not None:
        x = layers.Activation(activation, name=f"{name}_Activation")(x)
    return x


def _branch(prefix: str, branch: int, layer: str) -> str:
    return f"{prefix}_Branch_{branch}_{layer}"


def inception_resnet_block(
    x: Any, scale: float, block_type: str, block_idx: int, activation: str | None = "relu"
) -> Any:
    """One residual Inception block ``<block_type>_<block_idx>`` (Block35, Block17 or Block8).

    Branches are concatenated, projected back to the input depth by a biased 1x1 conv
    (``<prefix>_Conv2d_1x1``), scaled and added to the shortcut (``<prefix>_ScaleSum``), then
    optionally passed through ``<prefix>_Activation``. Shape is preserved.
    """
    prefix = f"{block_type}_{block_idx}"
    if block_type == "Block35":
        branch_0 = conv2d_bn(x, 32, 1, name=_branch(prefix, 0, "Conv2d_1x1"))
        branch_1 = conv2d_bn(x, 32, 1, name=_branch(prefix, 1, "Conv2d_0a_1x1"))
        branch_1 = conv2d_bn(branch_1, 32, 3, name=_branch(prefix, 1, "Conv2d_0b_3x3"))
        branch_2 = conv2d_bn(x, 32, 1, name=_branch(prefix, 2, "Conv2d_0a_1x1"))
        branch_2 = conv2d_bn(branch_2, 32, 3, name=_branch(prefix, 2, "Conv2d_0b_3x3"))
        branch_2 = conv2d_bn(branch_2, 32, 3, name=_branch(prefix, 2, "Conv2d_0c_3x3"))
        branches = [branch_0, branch_1, branch_2]
    elif block_type == "Block17":
        branch_0 = conv2d_bn(x, 128, 1, name=_branch(prefix, 0, "Conv2d_1x1"))
        branch_1 = conv2d_bn(x, 128, 1, name=_branch(prefix, 1, "Conv2d_0a_1x1"))
        branch_1 = conv2d_bn(branch_1, 128, (1, 7), name=_branch(prefix, 1, "Conv2d_0b_1x7"))
        branch_1 = conv2d_bn(branch_1, 128, (7, 1), name=_branch(prefix, 1, "Conv2d_0c_7x1"))
        branches = [branch_0, branch_1]
    elif block_type == "Block8":
        branch_0 = conv2d_bn(x, 192, 1, name=_branch(prefix, 0, "Conv2d_1x1"))
        branch_1 = conv2d_bn(x, 192, 1, name=_branch(prefix, 1, "Conv2d_0a_1x1"))
        branch_1 = conv2d_bn(branch_1, 192, (1, 3), name=_branch(prefix, 1, "Conv2d_0b_1x3"))
        branch_1 = conv2d_bn(branch_1, 192, (3, 1), name=_branch(prefix, 1, "Conv2d_0c_3x1"))
        branches = [branch_0, branch_1]
    else:
        raise ValueError(f"unknown block type {block_type!r}")
    mixed = layers.Concatenate(axis=CHANNEL_AXIS, name=f"{prefix}_Concatenate")(branches)
    up = conv2d_bn(
        mixed, x.shape[CHANNEL_AXIS], 1, activation=None, use_bias=True, name=f"{prefix}_Conv2d_1x1"
    )
    x = ScaleSum(scale, name=f"{prefix}_ScaleSum")([x, up])
    if activation is not None:
        x = layers.Activation(activation, name=f"{prefix}_Activation")(x)
    return x


def stem(x: Any) -> Any:
    """160x160x3 -> 17x17x256."""
    x = conv2d_bn(x, 32, 3, strides=2, padding="valid", name="Conv2d_1a_3x3")  # 79x79x32
    x = conv2d_bn(x, 32, 3, padding="valid", name="Conv2d_2a_3x3")  # 77x77x32
    x = conv2d_bn(x, 64, 3, name="Conv2d_2b_3x3")  # 77x77x64
    x = layers.MaxPooling2D(3, strides=2, name="MaxPool_3a_3x3")(x)  # 38x38x64
    x = conv2d_bn(x, 80, 1, padding="valid", name="Conv2d_3b_1x1")  # 38x38x80
    x = conv2d_bn(x, 192, 3, padding="valid", name="Conv2d_4a_3x3")  # 36x36x192
    return conv2d_bn(x, 256, 3, strides=2, padding="valid", name="Conv2d_4b_3x3")  # 17x17x256


def reduction_a(x: Any) -> Any:
    """``Mixed_6a``: 17x17x256 -> 8x8x896."""
    branch_0 = conv2d_bn(
        x, 384, 3, strides=2, padding="valid", name="Mixed_6a_Branch_0_Conv2d_1a_3x3"
    )
    branch_1 = conv2d_bn(x, 192, 1, name="Mixed_6a_Branch_1_Conv2d_0a_1x1")
    branch_1 = conv2d_bn(branch_1, 192, 3, name="Mixed_6a_Branch_1_Conv2d_0b_3x3")
    branch_1 = conv2d_bn(
        branch_1, 256, 3, strides=2, padding="valid", name="Mixed_6a_Branch_1_Conv2d_1a_3x3"
    )
    branch_pool = layers.MaxPooling2D(
        3, strides=2, padding="valid", name="Mixed_6a_Branch_2_MaxPool_1a_3x3"
    )(x)
    return layers.Concatenate(axis=CHANNEL_AXIS, name="Mixed_6a")([branch_0, branch_1, branch_pool])


def reduction_b(x: Any) -> Any:
    """``Mixed_7a``: 8x8x896 -> 3x3x1792."""
    branch_0 = conv2d_bn(x, 256, 1, name="Mixed_7a_Branch_0_Conv2d_0a_1x1")
    branch_0 = conv2d_bn(
        branch_0, 384, 3, strides=2, padding="valid", name="Mixed_7a_Branch_0_Conv2d_1a_3x3"
    )
    branch_1 = conv2d_bn(x, 256, 1, name="Mixed_7a_Branch_1_Conv2d_0a_1x1")
    branch_1 = conv2d_bn(
        branch_1, 256, 3, strides=2, padding="valid", name="Mixed_7a_Branch_1_Conv2d_1a_3x3"
    )
    branch_2 = conv2d_bn(x, 256, 1, name="Mixed_7a_Branch_2_Conv2d_0a_1x1")
    branch_2 = conv2d_bn(branch_2, 256, 3, name="Mixed_7a_Branch_2_Conv2d_0b_3x3")
    branch_2 = conv2d_bn(
        branch_2, 256, 3, strides=2, padding="valid", name="Mixed_7a_Branch_2_Conv2d_1a_3x3"
    )
    branch_pool = layers.MaxPooling2D(
        3, strides=2, padding="valid", name="Mixed_7a_Branch_3_MaxPool_1a_3x3"
    )(x)
    return layers.Concatenate(axis=CHANNEL_AXIS, name="Mixed_7a")(
        [branch_0, branch_1, branch_2, branch_pool]
    )


def head(x: Any) -> Any:
    """3x3x1792 -> raw 128-d embedding (``Bottleneck_BatchNorm``)."""
    x = layers.GlobalAveragePooling2D(name="AvgPool")(x)  # 1792
    x = layers.Dropout(DROPOUT_RATE, name="Dropout")(x)
    x = layers.Dense(EMBEDDING_DIM, use_bias=False, name="Bottleneck")(x)
    return layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, scale=BN_SCALE, name="Bottleneck_BatchNorm"
    )(x)


def build_model(l2_output: bool = True) -> keras.Model:
    """Build InceptionResNetV1 (untrained weights) with the legacy layer names.

    Args:
        l2_output: also output the L2-normalized embedding (layer ``embedding_l2``) after the raw
            ``Bottleneck_BatchNorm`` output; ``False`` gives exactly the legacy 426-layer graph.

    Returns:
        A functional model named ``inception_resnet_v1``: output ``raw`` or ``[raw, l2]``.
    """
    inputs = keras.Input(shape=INPUT_SHAPE, dtype="float32", name=INPUT_LAYER_NAME)
    x = stem(inputs)
    for idx in range(1, 6):
        x = inception_resnet_block(x, BLOCK35_SCALE, "Block35", idx)  # 17x17x256
    x = reduction_a(x)
    for idx in range(1, 11):
        x = inception_resnet_block(x, BLOCK17_SCALE, "Block17", idx)  # 8x8x896
    x = reduction_b(x)
    for idx in range(1, 6):
        x = inception_resnet_block(x, BLOCK8_SCALE, "Block8", idx)  # 3x3x1792
    x = inception_resnet_block(x, FINAL_BLOCK8_SCALE, "Block8", 6, activation=None)
    embedding = head(x)
    if not l2_output:
        return keras.Model(inputs, embedding, name="inception_resnet_v1")
    l2 = L2Normalize(name=L2_OUTPUT_NAME)(embedding)
    return keras.Model(inputs, [embedding, l2], name="inception_resnet_v1")
