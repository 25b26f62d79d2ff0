"""Strict loading of the dumped npz (:mod:`toolchain.legacy.dump`) into the generic rebuild.

Every npz the manifest lists is hashed against it and read without unpickling
(:func:`toolchain.convert.weights.read_npz_strict`). Each stored layer is matched with its Keras 3
layer: a plain layer's weights by name (through its table row's renames, e.g. ``depthwise_kernel``
-> ``kernel``), a nested model's by position in the order Keras 2 stored them (every trainable
weight of its layers in order, then every non-trainable one; a frozen layer's weights are all
non-trainable), each checked by name and shape. Every problem anywhere is collected into ONE
:class:`~toolchain.convert.weights.WeightsRejectedError` (exit 4) and the model is written to only
once everything fits: every stored array is used exactly once and every Keras 3 weight is filled.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.convert.generic.layers import LAYER_KINDS, legacy_weight_name
from toolchain.convert.weights import (
    LoadReport,
    WeightsRejectedError,
    read_manifest,
    read_npz_strict,
)
from toolchain.core.atomic import sha256_file
from toolchain.core.contracts import MANIFEST_FILE
from toolchain.legacy.config import INPUT_LAYER, LayerSpec, ModelSpec
from toolchain.legacy.model import weight_key

Planned = list[tuple[Any, np.ndarray]]


def _leaves(model: ModelSpec, keras_model: Any, frozen: bool) -> Iterator[tuple[LayerSpec, Any,
                                                                                  bool]]:
    """Every non-model layer under ``model`` in config order (depth first), with whether it is
    frozen (its own ``trainable: false`` or an enclosing model's)."""
    for spec in model.layers:
        if spec.class_name == INPUT_LAYER:
            continue
        layer = keras_model.get_layer(spec.name)
        is_frozen = frozen or spec.config.get("trainable") is False
        if spec.model is not None:
            yield from _leaves(spec.model, layer, is_frozen or not spec.model.trainable)
        else:
            yield spec, layer, is_frozen


def legacy_order(spec: LayerSpec, layer: Any) -> list[tuple[str, Any]]:
    """The Keras 3 variables of a stored layer, as (legacy short name, variable), in the order
    Keras 2 stored them."""
    if spec.model is None:
        kind = LAYER_KINDS[spec.class_name]
        return [(legacy_weight_name(kind, v.name), v) for v in layer.weights]
    leaves = list(_leaves(spec.model, layer, spec.config.get("trainable") is False
                          or not spec.model.trainable))
    trainable = [(leaf, v) for leaf, lay, frozen in leaves if not frozen
                 for v in lay.weights if v.trainable]
    fixed = [(leaf, v) for leaf, lay, frozen in leaves
             for v in lay.weights if frozen or not v.trainable]
    return [(legacy_weight_name(LAYER_KINDS[leaf.class_name], v.name), v)
            for leaf, v in trainable + fixed]


def _plan_layer(spec: LayerSpec, layer: Any, entry: dict[str, Any], arrays: dict[str, np.ndarray],
                problems: list[str]) -> Planned:
    stored = entry.get("weights") or []
    expected = legacy_order(spec, layer)
    plan: Planned = []
    if spec.model is None:
        by_name = {name: v for name, v in expected}
        pairs = [(w, by_name.get(weight_key(w["name"]))) for w in stored]
    else:
        if len(stored) != len(expected):
            problems.append(f"layer {spec.name}: the file stores {len(stored)} tensors, the "
                            f"rebuilt model has {len(expected)}")
            return plan
        pairs = []
        for w, (name, variable) in zip(stored, expected, strict=True):
            if weight_key(w["name"]) != name:
                problems.append(f"layer {spec.name}: stored weight {w['name']} is where the "
                                f"rebuilt model has {variable.path}")
            pairs.append((w, variable))
    for w, variable in pairs:
        if variable is None:
            problems.append(f"layer {spec.name}: stored weight {w['name']} has no place in the "
                            f"rebuilt {spec.class_name}")
            continue
        array = arrays.get(w["key"])
        if array is None:
            problems.append(f"layer {spec.name}: tensor {w['key']!r} missing from its npz")
            continue
        if tuple(array.shape) != tuple(variable.shape):
            problems.append(f"layer {spec.name}: {w['key']} has shape {array.shape}, the "
                            f"rebuilt model wants {tuple(variable.shape)}")
        elif array.dtype != np.dtype(variable.dtype):
            problems.append(f"layer {spec.name}: {w['key']} is {array.dtype}, the rebuilt model "
                            f"wants {variable.dtype}")
        plan.append((variable, array))
    extra = sorted(set(arrays) - {w["key"] for w in stored})
    problems.extend(f"layer {spec.name}: extra tensor {key!r} in its npz" for key in extra)
    return plan


def load_dumped(keras_model: Any, model: ModelSpec, weights_dir: Path) -> LoadReport:
    """Verify the dumped npz against the manifest and the rebuilt model, then assign them.

    Raises:
        MissingArtifactError: the manifest is missing.
        IntegrityError: the manifest is unreadable.
        WeightsRejectedError: anything does not fit; lists every problem, model untouched.
    """
    manifest_path = weights_dir / MANIFEST_FILE
    manifest = read_manifest(manifest_path)
    problems: list[str] = []
    plan: Planned = []
    entries = {e.get("name"): e for e in manifest["layers"] if e.get("npz")}
    for spec in model.layers:
        entry = entries.pop(spec.name, None)
        layer = None if spec.class_name == INPUT_LAYER else keras_model.get_layer(spec.name)
        if entry is None:
            if layer is not None and layer.weights:
                problems.append(f"layer {spec.name}: the rebuilt model has weights, the file "
                                "stores none")
            continue
        path = weights_dir / entry["npz"]
        if sha256_file(path) != entry.get("npz_sha256"):
            problems.append(f"layer {spec.name}: {entry['npz']} does not match the manifest")
            continue
        try:
            arrays = read_npz_strict(path)
        except ValueError as exc:
            problems.append(f"layer {spec.name}: {entry['npz']} {exc}")
            continue
        if layer is None:
            problems.append(f"layer {spec.name}: an input layer with stored weights")
            continue
        plan.extend(_plan_layer(spec, layer, entry, arrays, problems))
    problems.extend(f"layer {name}: stored but not in the model" for name in entries)
    planned = {id(variable) for variable, _ in plan}
    if len(planned) != len(plan):
        problems.append("a rebuilt weight would be filled twice")
    problems.extend(f"model weight {v.path} has no stored tensor"
                    for v in keras_model.weights if id(v) not in planned)
    if problems:
        raise WeightsRejectedError(problems)
    for variable, array in plan:
        variable.assign(array)
    return LoadReport(
        layers=sum(1 for e in manifest["layers"] if e.get("npz")),
        tensors=len(plan),
        parameters=sum(int(a.size) for _, a in plan),
        manifest_sha256=sha256_file(manifest_path),
        source_sha256=str(manifest["source"]["sha256"]),
    )
