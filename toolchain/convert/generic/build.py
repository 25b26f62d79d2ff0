"""Rebuild a legacy model config in Keras 3 from the layer table: no hand-written architecture.

:func:`check_supported` walks the parsed config (:mod:`toolchain.legacy.config`, nested models
included) and collects every layer class the table (:data:`.layers.LAYER_KINDS`) lacks and every
field it refuses; one :class:`~.layers.UnsupportedLayerError` lists them all, before anything is
built or written. :func:`build_keras` then makes each layer from its table row, calls it once per
inbound node in dependency order (a shared layer is one layer called several times), builds a
model used as a layer as its own Keras 3 model on its first call, and returns the functional model
with the legacy layer names. Lambdas become what their :class:`~toolchain.legacy.bindings.
LambdaBinding` says: the catalogue's ``ScaleSum`` layer, or ``keras.layers.Lambda`` of the user's
own function.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from toolchain.convert.generic.fields import translate_config
from toolchain.convert.generic.layers import (
    BUILT_SPECIALLY,
    LAYER_KINDS,
    UnsupportedLayerError,
)
from toolchain.core.errors import InputError
from toolchain.legacy.bindings import LambdaBinding
from toolchain.legacy.config import INPUT_LAYER, LayerSpec, ModelSpec, TensorRef

TABLE_POINTER = "supported layers: facenet model convert --layers, docs/convert_layers.md"

Tensors = dict[tuple[str, int, int], Any]


def _kind_problems(spec: LayerSpec) -> list[str]:
    kind = LAYER_KINDS[spec.class_name]
    if spec.class_name in BUILT_SPECIALLY and spec.class_name != INPUT_LAYER:
        return []
    _kwargs, problems = translate_config(spec.class_name, kind.all_fields, spec.config)
    return [f"layer {spec.path!r} ({spec.class_name}): {p}" for p in problems]


def check_supported(model: ModelSpec, where: str = "model_config") -> None:
    """Refuse, all at once, every unsupported layer class and config value of the model.

    Args:
        model: the parsed config.
        where: what to name in the message (the file).

    Raises:
        UnsupportedLayerError: ``unsupported layer LSTM (2 of them), ...`` then each refused
            field, naming the layer path; nothing has been built.
    """
    unsupported = Counter(s.class_name for s in model.walk() if s.class_name not in LAYER_KINDS)
    problems = [f"unsupported layer {cls} ({n} of them)" for cls, n in sorted(unsupported.items())]
    for spec in model.walk():
        if spec.class_name in LAYER_KINDS:
            problems.extend(_kind_problems(spec))
    for ref, shape in zip(model.inputs, model.input_shapes(), strict=True):
        if shape is None:
            problems.append(f"input {ref.layer!r} declares no shape")
    if problems:
        more = f"; and {len(problems) - 12} more" if len(problems) > 12 else ""
        raise UnsupportedLayerError(f"{where}: " + "; ".join(problems[:12]) + more
                                    + f" ({TABLE_POINTER})")


def _inputs_of(tensors: Tensors, refs: Sequence[TensorRef]) -> Any:
    values = [tensors[(r.layer, r.node, r.tensor)] for r in refs]
    return values[0] if len(values) == 1 else values


class _Builder:
    """Builds one model (and, recursively, the models used in it)."""

    def __init__(self, bindings: Mapping[str, LambdaBinding],
                 functions: Mapping[str, Callable[..., Any]]) -> None:
        self.bindings = bindings
        self.functions = functions

    def layer(self, spec: LayerSpec, first_inputs: Any) -> Any:
        """The Keras 3 layer of ``spec`` (a nested model is built on its first call's inputs)."""
        if spec.model is not None:
            shapes = [tuple(t.shape) for t in
                      (first_inputs if isinstance(first_inputs, list) else [first_inputs])]
            return self.model(spec.model, spec.name, shapes)
        if spec.class_name == "Lambda":
            return self.lambda_layer(spec)
        kind = LAYER_KINDS[spec.class_name]
        kwargs, problems = translate_config(spec.class_name, kind.all_fields, spec.config)
        if problems:  # check_supported ran first; this only guards direct use
            raise UnsupportedLayerError(f"layer {spec.path!r}: {'; '.join(problems)}")
        kwargs["name"] = spec.name
        return kind.make(kwargs)

    def lambda_layer(self, spec: LayerSpec) -> Any:
        from keras import layers

        from toolchain.convert.architecture import ScaleSum

        binding = self.bindings.get(spec.path)
        if binding is None:
            raise InputError(f"Lambda layer {spec.path!r} has no binding")
        if binding.kind == "catalogue":
            return ScaleSum(float(binding.arguments["scale"]), name=spec.name)
        return layers.Lambda(self.functions[binding.function],
                             arguments=dict(binding.arguments) or None, name=spec.name)

    def model(self, model: ModelSpec, name: str | None,
              shapes: Sequence[tuple[int | None, ...]] | None = None) -> Any:
        """A Keras 3 functional model of ``model``; inputs from its declared shapes, else the
        shapes of the tensors it is first called on."""
        import keras

        tensors: Tensors = {}
        inputs = []
        declared = model.input_shapes()
        for k, ref in enumerate(model.inputs):
            shape = declared[k] or (shapes[k] if shapes and k < len(shapes) else None)
            if shape is None:
                raise InputError(f"input {ref.layer!r} of {model.path or 'the model'!r} has no "
                                 "shape")
            tensor = keras.Input(batch_shape=shape, dtype="float32", name=ref.layer)
            tensors[(ref.layer, 0, 0)] = tensor
            inputs.append(tensor)
        made: dict[str, Any] = {}
        pending = [(spec, i) for spec in model.layers if spec.class_name != INPUT_LAYER
                   for i in range(len(spec.calls))]
        while pending:
            waiting = []
            for spec, i in pending:
                refs = spec.calls[i]
                if not all((r.layer, r.node, r.tensor) in tensors for r in refs):
                    waiting.append((spec, i))
                    continue
                args = _inputs_of(tensors, refs)
                try:
                    if spec.name not in made:
                        made[spec.name] = self.layer(spec, args)
                    result = made[spec.name](args)
                except (ValueError, TypeError, NotImplementedError) as exc:
                    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                    raise UnsupportedLayerError(
                        f"layer {spec.path!r} ({spec.class_name}): Keras 3 cannot rebuild it "
                        f"({reason[:200]})") from exc
                for t, out in enumerate(result if isinstance(result, list | tuple) else [result]):
                    tensors[(spec.name, i, t)] = out
            if len(waiting) == len(pending):
                stuck = ", ".join(sorted({s.path for s, _ in waiting})[:5])
                raise InputError(f"{model.path or 'the model'}: layers whose inputs never exist "
                                 f"(a cycle, or a reference to a missing output): {stuck}")
            pending = waiting
        missing = [r.text() for r in model.outputs if (r.layer, r.node, r.tensor) not in tensors]
        if missing:
            raise InputError(f"{model.path or 'the model'}: outputs {missing} are never computed")
        outputs = [tensors[(r.layer, r.node, r.tensor)] for r in model.outputs]
        return keras.Model(inputs[0] if len(inputs) == 1 else inputs,
                           outputs[0] if len(outputs) == 1 else outputs,
                           name=name or model.name or "model")


def build_keras(model: ModelSpec, bindings: Sequence[LambdaBinding],
                functions: Mapping[str, Callable[..., Any]]) -> Any:
    """The Keras 3 model of a parsed, vetted, supported legacy config (untrained weights).

    Args:
        model: the parsed config (:func:`toolchain.legacy.config.parse_model`).
        bindings: what each Lambda becomes (:func:`toolchain.legacy.bindings.vet_lambdas`).
        functions: the mapped functions by name (:func:`toolchain.legacy.bindings.
            load_functions`).

    Raises:
        UnsupportedLayerError: a layer the table does not support (call :func:`check_supported`
            first to get them all at once).
        InputError: the graph cannot be built (a cycle, a missing output).
    """
    check_supported(model)
    return _Builder({b.path: b for b in bindings}, functions).model(model, model.name)
