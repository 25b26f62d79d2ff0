"""A legacy Keras ``model_config`` as a graph: models, layers, calls and the tensors between them.

Keras 2.0 to 2.15 wrote the same graph in a few dialects: a functional model is ``Model`` (2.0-2.3)
or ``Functional`` (2.4+); a ``Sequential`` model's ``config`` is a bare layer list (2.0-2.2) or a
dict with ``layers`` (2.2.3+), its input shape a ``batch_input_shape`` on the first layer or an
``InputLayer`` entry (2.15); each call of a layer is an inbound node ``[[layer, node, tensor,
kwargs], ...]``; ``input_layers``/``output_layers`` are ``[layer, node, tensor]`` triples, or one
bare triple. :func:`parse_model` reads every dialect into one tree of frozen dataclasses
(:class:`ModelSpec`, :class:`LayerSpec`, :class:`TensorRef`): a ``Sequential`` model becomes the
chain it means, with its input layer made explicit, and a model used as a layer (at any depth)
is parsed into its own :class:`ModelSpec`.

Only JSON is read here: nothing is imported, built or run, so both the modern command line and
the legacy Keras 2.15 environment use it. Every inconsistency raises
:class:`~toolchain.core.errors.InputError` naming the model path and the problem.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from toolchain.core.errors import InputError

MODEL_CLASSES = frozenset({"Model", "Functional", "Sequential"})
"""Class names of a model (at the top or used as a layer)."""

SEQUENTIAL = "Sequential"
INPUT_LAYER = "InputLayer"

CALL_KWARGS_ALLOWED = frozenset({"training", "mask"})
"""Keyword arguments an inbound node may carry (with a ``None``/``False`` value): Keras records
``training`` and ``mask`` on some calls; any other argument is refused, not dropped."""


@dataclass(frozen=True)
class TensorRef:
    """One tensor of a graph: output ``tensor`` of the ``node``-th call of ``layer``."""

    layer: str
    node: int
    tensor: int

    def text(self) -> str:
        """``layer`` or ``layer[node][tensor]`` when not the first output of the first call."""
        if (self.node, self.tensor) == (0, 0):
            return self.layer
        return f"{self.layer}[{self.node}][{self.tensor}]"


@dataclass(frozen=True)
class LayerSpec:
    """One layer of a model config and every call of it.

    Attributes:
        name: the layer's name (unique in its model).
        class_name: its Keras class name.
        config: its own config dict (for a nested model: the model's config).
        calls: the inputs of each call (inbound node), in node order; empty for an input layer.
        model: the parsed nested model when the layer is itself a model, else ``None``.
        path: layer names from the file's model down to this layer, ``/``-separated.
    """

    name: str
    class_name: str
    config: dict[str, Any]
    calls: tuple[tuple[TensorRef, ...], ...]
    model: ModelSpec | None
    path: str


@dataclass(frozen=True)
class ModelSpec:
    """One model: its layers in config order, its inputs and outputs.

    Attributes:
        name: the model's name (``None`` when the config gives none).
        class_name: ``Model``, ``Functional`` or ``Sequential``.
        layers: every layer, an explicit ``InputLayer`` per input first for a ``Sequential``.
        inputs: the input layers' tensors, in order.
        outputs: the output tensors, in order.
        path: the layer path of this model (``""`` for the file's model).
        trainable: the model's own ``trainable`` flag (a frozen nested model stores all of its
            weights as non-trainable, which changes their order in the file).
    """

    name: str | None
    class_name: str
    layers: tuple[LayerSpec, ...]
    inputs: tuple[TensorRef, ...]
    outputs: tuple[TensorRef, ...]
    path: str
    trainable: bool = True

    def layer(self, name: str) -> LayerSpec:
        """The layer called ``name``."""
        for spec in self.layers:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def walk(self) -> Iterator[LayerSpec]:
        """Every layer, nested models' layers right after the nested model, in config order."""
        for spec in self.layers:
            yield spec
            if spec.model is not None:
                yield from spec.model.walk()

    def input_shapes(self) -> tuple[tuple[int | None, ...] | None, ...]:
        """The declared shape (batch axis included) of each input, ``None`` when not declared."""
        return tuple(input_shape(self.layer(ref.layer).config) for ref in self.inputs)

    def input_dtypes(self) -> tuple[str, ...]:
        """The declared dtype of each input (``float32`` when not declared)."""
        return tuple(str(self.layer(ref.layer).config.get("dtype") or "float32")
                     for ref in self.inputs)


def input_shape(config: dict[str, Any]) -> tuple[int | None, ...] | None:
    """The batch input shape an input layer (or a Sequential's first layer) declares."""
    shape = config.get("batch_input_shape") or config.get("batch_shape")
    if shape is None:
        return None
    if not isinstance(shape, list | tuple) or not all(
        d is None or (type(d) is int and d >= 0) for d in shape
    ):
        raise InputError(f"input layer {config.get('name')!r}: shape {shape!r} is not a shape")
    return tuple(shape)


def _join(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name


def _where(path: str) -> str:
    return f"model {path!r}" if path else "the model"


def _ref(entry: Any, where: str) -> TensorRef:
    """A ``[layer, node, tensor(, kwargs)]`` entry as a :class:`TensorRef`."""
    if (
        not isinstance(entry, list | tuple)
        or len(entry) not in (3, 4)
        or not isinstance(entry[0], str)
        or type(entry[1]) is not int
        or type(entry[2]) is not int
        or entry[1] < 0
        or entry[2] < 0
    ):
        raise InputError(f"{where}: {str(entry)[:80]} is not a [layer, node, tensor] reference")
    if len(entry) == 4:
        kwargs = entry[3]
        if not isinstance(kwargs, dict) or any(
            key not in CALL_KWARGS_ALLOWED or value not in (None, False)
            for key, value in kwargs.items()
        ):
            raise InputError(
                f"{where}: a call with arguments {str(kwargs)[:80]} (only training/mask "
                "set to null or false are supported)"
            )
    return TensorRef(entry[0], entry[1], entry[2])


def _refs(entries: Any, where: str) -> tuple[TensorRef, ...]:
    """``input_layers``/``output_layers``: a list of triples, or one bare triple."""
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{where} is missing or empty")
    if isinstance(entries[0], str):
        entries = [entries]
    return tuple(_ref(entry, where) for entry in entries)


def _calls(spec: dict[str, Any], where: str) -> tuple[tuple[TensorRef, ...], ...]:
    nodes = spec.get("inbound_nodes") or []
    if not isinstance(nodes, list):
        raise InputError(f"{where}: inbound_nodes is not a list")
    calls = []
    for node in nodes:
        if not isinstance(node, list) or not node:
            raise InputError(f"{where}: an inbound node is not a list of tensor references")
        calls.append(tuple(_ref(entry, where) for entry in node))
    return tuple(calls)


def _layer_name(spec: Any, where: str) -> str:
    if not isinstance(spec, dict) or not isinstance(spec.get("class_name"), str):
        raise InputError(f"{where}: a layer entry has no class_name")
    config = spec.get("config")
    name = spec.get("name") or (config.get("name") if isinstance(config, dict) else None)
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}: a {spec['class_name']} layer has no name")
    return name


def _layer(spec: dict[str, Any], name: str, calls: tuple[tuple[TensorRef, ...], ...],
           path: str) -> LayerSpec:
    """A parsed layer entry; a nested model is parsed recursively."""
    config = spec.get("config")
    layer_path = _join(path, name)
    nested = None
    if spec["class_name"] in MODEL_CLASSES:
        nested = parse_model(spec, layer_path)
    elif not isinstance(config, dict):
        raise InputError(f"layer {layer_path!r} ({spec['class_name']}) has no config object")
    return LayerSpec(name, spec["class_name"], config if isinstance(config, dict) else {},
                     calls, nested, layer_path)


def _sequential(body: Any, class_name: str, path: str) -> ModelSpec:
    """A ``Sequential`` config (bare list or dict) as an explicit chain from its input layer."""
    entries = body if isinstance(body, list) else body.get("layers")
    name = body.get("name") if isinstance(body, dict) else None
    where = _where(path)
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{where}: Sequential config has no layer list")
    names = [_layer_name(entry, where) for entry in entries]
    first = entries[0]
    layers: list[LayerSpec] = []
    if first["class_name"] == INPUT_LAYER:
        input_name = names[0]
        layers.append(_layer(first, input_name, (), path))
        entries, names = entries[1:], names[1:]
    else:
        # Keras 2 names the implicit input layer of a Sequential model "<first layer>_input".
        input_name = f"{names[0]}_input"
        first_config = first.get("config") if isinstance(first.get("config"), dict) else {}
        shape = input_shape(first_config)
        input_config = {"name": input_name, "dtype": first_config.get("dtype") or "float32"}
        if shape is not None:
            input_config["batch_input_shape"] = list(shape)
        layers.append(LayerSpec(input_name, INPUT_LAYER, input_config, (), None,
                                _join(path, input_name)))
    previous = TensorRef(input_name, 0, 0)
    for entry, layer_name in zip(entries, names, strict=True):
        layers.append(_layer(entry, layer_name, ((previous,),), path))
        previous = TensorRef(layer_name, 0, 0)
    trainable = body.get("trainable", True) if isinstance(body, dict) else True
    return _checked(ModelSpec(name if isinstance(name, str) else None, class_name, tuple(layers),
                              (TensorRef(input_name, 0, 0),), (previous,), path,
                              trainable is not False))


def _functional(body: Any, class_name: str, path: str) -> ModelSpec:
    where = _where(path)
    if not isinstance(body, dict) or not isinstance(body.get("layers"), list):
        raise InputError(f"{where}: {class_name} config has no layer list")
    layers = []
    for entry in body["layers"]:
        name = _layer_name(entry, where)
        layers.append(_layer(entry, name, _calls(entry, f"layer {_join(path, name)!r}"), path))
    inputs = _refs(body.get("input_layers"), f"{where}: input_layers")
    outputs = _refs(body.get("output_layers"), f"{where}: output_layers")
    offsets = _node_offsets(layers, outputs)
    if any(offsets.values()):

        def shift(ref: TensorRef) -> TensorRef:
            return TensorRef(ref.layer, ref.node - offsets.get(ref.layer, 0), ref.tensor)

        layers = [LayerSpec(s.name, s.class_name, s.config,
                            tuple(tuple(map(shift, call)) for call in s.calls), s.model, s.path)
                  for s in layers]
        outputs = tuple(map(shift, outputs))
    model_name = body.get("name")
    return _checked(ModelSpec(
        model_name if isinstance(model_name, str) else None, class_name, tuple(layers), inputs,
        outputs,
        path, body.get("trainable", True) is not False,
    ))


def _node_offsets(layers: list[LayerSpec], outputs: tuple[TensorRef, ...]) -> dict[str, int]:
    """How references number the calls of each nested model: from 1 or from 0.

    A model built on its own inputs has a first node (its inputs to its outputs) that Keras does
    not save; references to its calls then count from 1. Keras up to 2.3 did so for every model
    used as a layer, tf.keras 2.4+ only for one that starts with an input layer. The references
    themselves tell which: one to call K of a model called K times means 1, one to call 0 means 0;
    when neither occurs, a model with an input layer counts from 1.
    """
    used: dict[str, set[int]] = {}
    for ref in [r for spec in layers for call in spec.calls for r in call] + list(outputs):
        used.setdefault(ref.layer, set()).add(ref.node)
    offsets: dict[str, int] = {}
    for spec in layers:
        if spec.model is None:
            continue
        nodes = used.get(spec.name, set())
        if len(spec.calls) in nodes and 0 in nodes:
            raise InputError(f"references to model {spec.path!r} use call numbers 0 to "
                             f"{len(spec.calls)}, but it is called {len(spec.calls)} time(s)")
        declared = all(shape is not None for shape in spec.model.input_shapes())
        offsets[spec.name] = 1 if len(spec.calls) in nodes or (0 not in nodes and declared) else 0
    return offsets


def _checked(model: ModelSpec) -> ModelSpec:
    """Refuse duplicate names and references to layers, calls or inputs that do not exist."""
    where = _where(model.path)
    counts = Counter(spec.name for spec in model.layers)
    dupes = sorted(name for name, count in counts.items() if count > 1)
    if dupes:
        raise InputError(f"{where} defines layer(s) {dupes} more than once")
    calls = {spec.name: len(spec.calls) for spec in model.layers}
    for spec in model.layers:
        if spec.class_name == INPUT_LAYER:
            calls[spec.name] = 1
            if spec.calls:
                raise InputError(f"input layer {spec.path!r} has inbound nodes")
        elif not spec.calls:
            raise InputError(f"layer {spec.path!r} ({spec.class_name}) is never called")
    refs = [(f"layer {spec.path!r}", ref) for spec in model.layers for call in spec.calls
            for ref in call]
    refs += [(f"{where}: input_layers", ref) for ref in model.inputs]
    refs += [(f"{where}: output_layers", ref) for ref in model.outputs]
    for owner, ref in refs:
        if ref.layer not in calls:
            raise InputError(f"{owner} refers to layer {ref.layer!r}, which {where} does not "
                             "define")
        if ref.node >= max(calls[ref.layer], 1):
            raise InputError(f"{owner} refers to call {ref.node} of layer {ref.layer!r}, which "
                             f"is called {calls[ref.layer]} time(s)")
    for ref in model.inputs:
        if model.layer(ref.layer).class_name != INPUT_LAYER:
            raise InputError(f"{where}: input {ref.layer!r} is not an InputLayer")
    return model


def parse_model(config: Any, path: str = "") -> ModelSpec:
    """Parse a model config (``{"class_name": ..., "config": ...}``) of any Keras 2 dialect.

    Args:
        config: the file's ``model_config`` object, or a nested model's layer entry.
        path: the layer path of the model (``""`` for the file's model).

    Raises:
        InputError: the config is not a model, or its graph is inconsistent.
    """
    if not isinstance(config, dict) or config.get("class_name") not in MODEL_CLASSES:
        got = config.get("class_name") if isinstance(config, dict) else type(config).__name__
        raise InputError(f"{_where(path)}: class {got!r} is not a Keras model class "
                         f"({', '.join(sorted(MODEL_CLASSES))})")
    class_name = config["class_name"]
    body = config.get("config")
    if class_name == SEQUENTIAL:
        return _sequential(body, class_name, path)
    return _functional(body, class_name, path)


def class_counts(model: ModelSpec) -> Counter[str]:
    """How many layers of each class the model has, nested models' layers included."""
    return Counter(spec.class_name for spec in model.walk())


def tensor_names(refs: tuple[TensorRef, ...]) -> tuple[str, ...]:
    """Names for a model's inputs or outputs in the exported formats, in order.

    The layer's name made a plain identifier (every character outside ``[A-Za-z0-9_]`` becomes
    ``_``; a leading digit gets ``_`` before it), with ``_<node>_<tensor>`` when the reference is
    not the first output of the first call, and ``_<k>`` when names would repeat.
    """
    names: list[str] = []
    for ref in refs:
        base = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in ref.layer)
        if not base or base[0].isdigit():
            base = f"_{base}"
        if (ref.node, ref.tensor) != (0, 0):
            base = f"{base}_{ref.node}_{ref.tensor}"
        name, k = base, 1
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return tuple(names)
