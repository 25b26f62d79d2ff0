"""Find every piece of code a Keras ``model_config`` carries or names, at any depth.

A Keras config is a tree of serialized objects, each a dict with ``class_name`` and ``config``:
layers, and inside them nested models (``config.layers``), wrappers' layers (``config.layer``,
``backward_layer``), RNN cells, initializers, regularizers, constraints, dtype policies. Code can
hide in many places of that tree: a ``Lambda``'s marshaled ``function`` (or its ``output_shape`` and
``mask``) in a layer of a model used as a layer, an activation given as a serialized function, a
``module``/``registered_name`` pair Keras resolves by importing any module, a class name that only a
custom object would provide. Walking only the top-level layer list misses all of it.

:func:`scan_config` walks the whole tree (every dict and list, bounded depth) and returns every
``Lambda`` found (with its layer path, e.g. ``inner/evil_lambda``) and every reference to a callable
that is not one of Keras' built-in classes or functions. :func:`vet_code` then accepts only Lambdas
that are exactly the vetted residual scaling and no other code at all; ``facenet model inspect`` and
``legacy_env/recover.py`` both use these two functions. Nothing here imports TensorFlow or runs
anything found in a config.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from toolchain.core.errors import UnsafeCodeError
from toolchain.legacy.lambdas import VettedLambda, short_repr, vet_lambda

MAX_DEPTH = 100
"""Deepest nesting of JSON containers walked; a deeper config is refused, not half-checked.

FaceNet's config is 8 levels deep; each nested model or wrapper adds about 4."""

LAMBDA_CLASS = "Lambda"

MODEL_CLASSES = frozenset({"Model", "Functional", "Sequential"})

LAYER_CLASSES = frozenset(
    {
        "Activation", "ActivityRegularization", "Add", "AdditiveAttention", "AlphaDropout",
        "Attention", "Average", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
        "AvgPool1D", "AvgPool2D", "AvgPool3D", "BatchNormalization", "Bidirectional",
        "CategoryEncoding", "CenterCrop", "Concatenate", "Conv1D", "Conv1DTranspose", "Conv2D",
        "Conv2DTranspose", "Conv3D", "Conv3DTranspose", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D",
        "Convolution1D", "Convolution1DTranspose", "Convolution2D", "Convolution2DTranspose",
        "Convolution3D", "Convolution3DTranspose", "Cropping1D", "Cropping2D", "Cropping3D",
        "Dense", "DepthwiseConv1D", "DepthwiseConv2D", "Discretization", "Dot", "Dropout", "ELU",
        "EinsumDense", "Embedding", "Flatten", "GRU", "GRUCell", "GaussianDropout",
        "GaussianNoise", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
        "GlobalAveragePooling3D", "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalAvgPool3D",
        "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPool3D", "GlobalMaxPooling1D",
        "GlobalMaxPooling2D", "GlobalMaxPooling3D", "GroupNormalization", "HashedCrossing",
        "Hashing", "Identity", "InputLayer", "IntegerLookup", "LSTM", "LSTMCell",
        "LayerNormalization", "LeakyReLU", "LocallyConnected1D", "LocallyConnected2D", "Masking",
        "MaxPool1D", "MaxPool2D", "MaxPool3D", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
        "Maximum", "Minimum", "MultiHeadAttention", "Multiply", "Normalization", "PReLU",
        "Permute", "RNN", "RandomBrightness", "RandomContrast", "RandomCrop", "RandomFlip",
        "RandomHeight", "RandomRotation", "RandomTranslation", "RandomWidth", "RandomZoom",
        "ReLU", "RepeatVector", "Rescaling", "Reshape", "Resizing", "SeparableConv1D",
        "SeparableConv2D", "SeparableConvolution1D", "SeparableConvolution2D", "SimpleRNN",
        "SimpleRNNCell", "Softmax", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
        "SpectralNormalization", "StackedRNNCells", "StringLookup", "Subtract",
        "ThresholdedReLU", "TimeDistributed", "UnitNormalization", "UpSampling1D",
        "UpSampling2D", "UpSampling3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
    }
)
"""Keras 2.15's public ``keras.layers`` classes, less ``Lambda`` (vetted on its own), the abstract
bases and ``TextVectorization``/``DenseFeatures`` (which take callables by name)."""

INITIALIZERS = frozenset(
    {
        "Constant", "GlorotNormal", "GlorotUniform", "HeNormal", "HeUniform", "Identity",
        "LecunNormal", "LecunUniform", "Ones", "Orthogonal", "RandomNormal", "RandomUniform",
        "TruncatedNormal", "VarianceScaling", "Zeros", "constant", "glorot_normal",
        "glorot_uniform", "he_normal", "he_uniform", "identity", "lecun_normal", "lecun_uniform",
        "normal", "one", "ones", "orthogonal", "random_normal", "random_uniform",
        "truncated_normal", "uniform", "variance_scaling", "zero", "zeros",
    }
)
REGULARIZERS = frozenset(
    {"L1", "L1L2", "L2", "OrthogonalRegularizer", "l1", "l1_l2", "l2", "orthogonal_regularizer"}
)
CONSTRAINTS = frozenset(
    {
        "MaxNorm", "MinMaxNorm", "NonNeg", "RadialConstraint", "UnitNorm", "max_norm", "maxnorm",
        "min_max_norm", "non_neg", "nonneg", "radial_constraint", "unit_norm", "unitnorm",
    }
)
ACTIVATIONS = frozenset(
    {
        "elu", "exponential", "gelu", "hard_sigmoid", "linear", "mish", "relu", "selu", "sigmoid",
        "softmax", "softplus", "softsign", "swish", "tanh",
    }
)
"""The activation functions of ``keras.activations`` (2.1 to 2.15), by the names configs use."""

OTHER_CLASSES = frozenset({"Policy", "DTypePolicy"})
"""Dtype policies (``dtype`` given as an object)."""

KNOWN_CLASSES = (
    MODEL_CLASSES | LAYER_CLASSES | INITIALIZERS | REGULARIZERS | CONSTRAINTS | OTHER_CLASSES
)

LAYER_KEYS = frozenset({"config", "layers", "layer", "forward_layer", "backward_layer", "cell",
                        "cells"})
"""Keys under which a config holds layers (a model's, a wrapper's, an RNN's): the objects there
add their layer name to the path; under any other key the key is added (``dense/dtype``)."""

NAMED_CALLABLES: tuple[tuple[str, frozenset[str]], ...] = (
    ("activation", ACTIVATIONS),
    ("_initializer", INITIALIZERS),
    ("_regularizer", REGULARIZERS),
    ("_constraint", CONSTRAINTS),
)
"""Config keys (by suffix) whose value Keras turns into a callable, and the built-in names allowed
there; any other name is looked up among custom objects or a Keras module's globals."""


@dataclass(frozen=True)
class LambdaSite:
    """A ``Lambda`` layer found in the config, with its layer path and its own config dict."""

    path: str
    """Layer names from the file's model down to the Lambda, ``/``-separated: ``inner/evil``."""
    config: dict[str, Any]
    """The Lambda's config: the very dict inside the walked config (not a copy)."""


@dataclass(frozen=True)
class CallableSite:
    """A reference to code that is not a Keras built-in (always refused)."""

    path: str
    """Layer path, then the config key that holds the reference: ``dense/kernel_initializer``."""
    reason: str
    """What the reference is and why it is refused (one line)."""

    @property
    def refusal(self) -> str:
        """The refusal message, naming the path."""
        return f"{self.path!r}: {self.reason}; refusing it"


@dataclass(frozen=True)
class ConfigCode:
    """Every Lambda and every non-built-in callable reference of one config, in walk order."""

    lambdas: tuple[LambdaSite, ...]
    callables: tuple[CallableSite, ...]


class _Walker:
    def __init__(self, where: str) -> None:
        self.where = where
        self.lambdas: list[LambdaSite] = []
        self.callables: list[CallableSite] = []

    def refuse(self, path: str, reason: str) -> None:
        self.callables.append(CallableSite(path or "<model>", reason))

    def walk(self, node: Any, path: str, depth: int, named: bool = False) -> None:
        """Walk ``node``; objects in it get their own name appended to ``path`` if ``named``."""
        if depth > MAX_DEPTH:
            raise UnsafeCodeError(
                f"{self.where}: model_config nests deeper than {MAX_DEPTH} levels (at "
                f"{path or '<model>'!r}); cannot vet it, refusing it"
            )
        if isinstance(node, list):
            for item in node:
                self.walk(item, path, depth + 1, named)
            return
        if not isinstance(node, dict):
            return
        if "class_name" in node:
            path = self.object(node, path, named)
        for key, value in node.items():
            if key in LAYER_KEYS:
                self.walk(value, path, depth + 1, named=True)
                continue
            child = _join(path, str(key))
            if _is_named_callable(key):
                self.named_callable(key, value, child)
            self.walk(value, child, depth + 1)

    def object(self, node: dict[str, Any], path: str, named: bool) -> str:
        """Check one serialized object; return the layer path of what it contains."""
        cls = node["class_name"]
        config = node.get("config")
        name = node.get("name")
        if not isinstance(name, str) and isinstance(config, dict):
            name = config.get("name")
        if named and isinstance(name, str):
            path = _join(path, name)
        problem = _object_problem(cls, node)
        if problem is not None:
            self.refuse(path, problem)
        elif cls == LAMBDA_CLASS and isinstance(config, dict):
            self.lambdas.append(LambdaSite(path or "<model>", config))
        return path

    def named_callable(self, key: str, value: Any, path: str) -> None:
        """A config entry Keras turns into a callable: a built-in name, an object, or nothing."""
        if value is None or (isinstance(value, dict) and "class_name" in value):
            return
        allowed = next(names for suffix, names in NAMED_CALLABLES if key.endswith(suffix))
        if isinstance(value, str):
            if value not in allowed:
                self.refuse(path, f"{key} {value!r} is not a built-in Keras name")
            return
        self.refuse(path, f"{key} given as a serialized function ({short_repr(value)})")


def _object_problem(cls: Any, node: dict[str, Any]) -> str | None:
    """Why a serialized object refers to code outside Keras' built-ins, or ``None``."""
    config = node.get("config")
    if not isinstance(cls, str):
        return f"class_name {short_repr(cls)} is not a string"
    name = short_repr(cls)
    module = node.get("module")
    if module is not None and not (
        isinstance(module, str) and (module == "keras" or module.startswith("keras."))
    ):
        return f"{name} names module {short_repr(module)}, which Keras would import"
    registered = node.get("registered_name")
    if registered is not None and registered not in (cls, config):
        return f"{name} carries registered_name {short_repr(registered)} (a custom object)"
    if cls == LAMBDA_CLASS:
        return None if isinstance(config, dict) else "Lambda without a config object"
    if cls == "function":
        if isinstance(config, str) and config in ACTIVATIONS:
            return None
        return f"serialized function reference {short_repr(config)}"
    if cls not in KNOWN_CLASSES:
        return (
            f"class {name} is not a built-in Keras class (a custom object: code outside the file "
            "that Keras would look up and run)"
        )
    return None


def _is_named_callable(key: str) -> bool:
    return any(key.endswith(suffix) for suffix, _ in NAMED_CALLABLES)


def _join(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name


def scan_config(config: Any, where: str = "model_config") -> ConfigCode:
    """Walk a whole ``model_config`` and collect its Lambdas and non-built-in callable references.

    Paths are relative to the file's model: a top-level Lambda is ``ScaleSum``, one inside the
    nested model ``inner`` is ``inner/ScaleSum``. Nothing is vetted or refused here except depth.

    Raises:
        UnsafeCodeError: the config nests deeper than :data:`MAX_DEPTH` (it cannot be walked
            completely, so it cannot be shown to be free of code).
    """
    walker = _Walker(where)
    walker.walk(config, "", 0)
    return ConfigCode(tuple(walker.lambdas), tuple(walker.callables))


def vet_code(code: ConfigCode) -> list[VettedLambda]:
    """Accept only Lambdas that are exactly the vetted residual scaling, and no other code.

    Raises:
        UnsafeCodeError: the first non-built-in callable reference, or the first Lambda that is
            not the vetted residual scaling (the message names its layer path).
    """
    if code.callables:
        raise UnsafeCodeError(code.callables[0].refusal)
    return [vet_lambda(site.path, site.config) for site in code.lambdas]


LAMBDA_CODE_KEYS = ("module", "output_shape_module", "mask", "mask_type", "mask_module")
"""Lambda config entries dropped when binding: Keras would use them to find or build callables."""


def bind_lambdas(config: dict[str, Any], function_name: str) -> dict[str, Any]:
    """A copy of a vetted config with every Lambda, at any depth, bound to ``function_name``.

    The copy is walked with :func:`scan_config`, so every Lambda Keras would build is rewritten to
    ``function_type: "function"`` naming ``function_name`` (a custom object the caller passes to
    Keras): the file's bytecode never reaches Keras. Call it only after :func:`vet_code` passed.
    """
    bound = copy.deepcopy(config)
    for site in scan_config(bound).lambdas:
        for key in LAMBDA_CODE_KEYS:
            site.config.pop(key, None)
        site.config["function"] = function_name
        site.config["function_type"] = "function"
    return bound
