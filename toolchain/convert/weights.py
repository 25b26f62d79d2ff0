"""Strict loading of the recovered per-layer npz weights into the rebuilt Keras 3 model.

Order of checks: the manifest is read, every npz listed in it is hashed against its
``npz_sha256``, then every model layer is matched with its npz through :data:`WEIGHT_KINDS` (the
declarative table of the npz keys each layer kind must hold, in model weight order). Every problem
found anywhere (tampered or missing file, unlisted npz, missing or extra layer, missing or extra
tensor, wrong shape or dtype, pickled object array) is collected, and ONE
:class:`WeightsRejectedError` lists them all. The model is only written to once everything checks
out, so a rejected set leaves it untouched; every npz array is used exactly once and every model
weight is filled.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.core.atomic import sha256_file
from toolchain.core.contracts import MANIFEST_FILE, MANIFEST_FORMAT
from toolchain.core.errors import IntegrityError, MissingArtifactError

log = logging.getLogger(__name__)

RECOVER_HINT = "run `nox -s recover` to create it"
"""How to make a missing weights artifact, for :class:`MissingArtifactError` messages."""

WEIGHT_DTYPE = np.dtype("float32")
"""Every legacy tensor is float32 (the manifest records it per tensor)."""


@dataclass(frozen=True)
class WeightKind:
    """The npz keys one kind of layer must hold, in the order of the layer's Keras weights.

    Attributes:
        class_name: Keras class name of the layer.
        keys: the expected keys for a given layer (they depend on ``use_bias`` / ``scale``).
    """

    class_name: str
    keys: Callable[[Any], tuple[str, ...]]


def _conv_keys(layer: Any) -> tuple[str, ...]:
    return ("kernel", "bias") if layer.use_bias else ("kernel",)


def _bn_keys(layer: Any) -> tuple[str, ...]:
    gamma = ("gamma",) if layer.scale else ()
    beta = ("beta",) if layer.center else ()
    return (*gamma, *beta, "moving_mean", "moving_variance")


def _dense_keys(layer: Any) -> tuple[str, ...]:
    return ("kernel", "bias") if layer.use_bias else ("kernel",)


WEIGHT_KINDS: dict[str, WeightKind] = {
    kind.class_name: kind
    for kind in (
        # Conv2D: [kernel] or [kernel, bias] (the residual up-projections use a bias).
        WeightKind("Conv2D", _conv_keys),
        # BatchNormalization(scale=False): [beta, moving_mean, moving_variance].
        WeightKind("BatchNormalization", _bn_keys),
        # Dense (Bottleneck, use_bias=False): [kernel].
        WeightKind("Dense", _dense_keys),
    )
}
"""Layer kinds that hold weights; a weighted layer of any other kind is a problem."""


class WeightsRejectedError(IntegrityError):
    """The npz weight set does not match the manifest or the model; lists every problem.

    Attributes:
        problems: one human-readable line per problem.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"weights rejected, {len(problems)} {noun}: " + "; ".join(problems))


@dataclass
class LoadReport:
    """What a successful strict load did.

    Attributes:
        layers: number of weighted layers filled.
        tensors: number of tensors assigned.
        parameters: number of scalar values assigned.
        manifest_sha256: sha256 of the manifest file read.
        source_sha256: sha256 of the legacy file the manifest was recovered from.
    """

    layers: int
    tensors: int
    parameters: int
    manifest_sha256: str
    source_sha256: str


@dataclass
class _Collected:
    problems: list[str] = field(default_factory=list)
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def read_manifest(manifest_path: Path) -> dict[str, Any]:
    """Read and minimally validate the manifest.

    Raises:
        MissingArtifactError: the manifest does not exist.
        IntegrityError: it is not a JSON manifest of the expected format.
    """
    if not manifest_path.is_file():
        raise MissingArtifactError(f"weights manifest {manifest_path} is missing; {RECOVER_HINT}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"weights manifest {manifest_path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise IntegrityError(
            f"weights manifest {manifest_path} has format {got!r}, expected {MANIFEST_FORMAT!r}"
        )
    if not isinstance(manifest.get("layers"), list):
        raise IntegrityError(f"weights manifest {manifest_path} has no 'layers' list")
    return manifest


def read_npz_strict(path: Path) -> dict[str, np.ndarray]:
    """Read every array of an npz without unpickling anything.

    Raises:
        ValueError: the file is not a readable npz or holds a pickled (object) array.
    """
    out: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for key in npz.files:
                out[key] = np.asarray(npz[key])
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ValueError("holds a pickled object array (refused, allow_pickle=False)") from exc
        raise ValueError(f"unreadable npz: {exc}") from exc
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise ValueError(f"unreadable npz: {exc}") from exc
    return out


def _verify_files(manifest: Mapping[str, Any], weights_dir: Path, got: _Collected) -> None:
    """Hash and read every npz the manifest lists; flag unlisted npz files."""
    listed: set[str] = set()
    for entry in manifest["layers"]:
        npz_name = entry.get("npz")
        if npz_name is None:
            continue
        layer = entry.get("name", "?")
        listed.add(npz_name)
        path = weights_dir / npz_name
        if not path.is_file():
            got.problems.append(f"layer {layer}: file {npz_name} is missing")
            continue
        if sha256_file(path) != entry.get("npz_sha256"):
            got.problems.append(
                f"layer {layer}: file {npz_name} sha256 does not match the manifest (tampered)"
            )
        try:
            got.arrays[layer] = read_npz_strict(path)
        except ValueError as exc:
            got.problems.append(f"layer {layer}: file {npz_name} {exc}")
    for path in sorted(weights_dir.glob("*.npz")):
        if path.name not in listed:
            got.problems.append(f"extra file {path.name} is not in the manifest")


def _check_layer(layer: Any, entry: Mapping[str, Any] | None, got: _Collected) -> None:
    """Compare one model layer with its manifest entry and npz arrays."""
    name = layer.name
    class_name = type(layer).__name__
    kind = WEIGHT_KINDS.get(class_name)
    if kind is None:
        if layer.weights:
            got.problems.append(f"layer {name}: {class_name} holds weights but has no loader")
        if entry is not None and entry.get("npz"):
            got.problems.append(f"layer {name}: {class_name} takes no weights, npz given")
        return
    if entry is None:
        got.problems.append(f"layer {name}: missing from the manifest")
        return
    if entry.get("class_name") != class_name:
        got.problems.append(
            f"layer {name}: manifest says {entry.get('class_name')}, model has {class_name}"
        )
    expected = kind.keys(layer)
    if len(layer.weights) != len(expected):
        got.problems.append(
            f"layer {name}: model has {len(layer.weights)} tensors, the {class_name} loader "
            f"expects {len(expected)}"
        )
        return
    if name not in got.arrays:
        if entry.get("npz") is None:
            got.problems.append(f"layer {name}: no npz in the manifest")
        return
    arrays = got.arrays[name]
    declared = {w.get("key"): w for w in entry.get("weights", [])}
    for key in expected:
        if key not in arrays:
            got.problems.append(f"layer {name}: tensor {key!r} missing")
    for key in sorted(set(arrays) - set(expected)):
        got.problems.append(f"layer {name}: extra tensor {key!r}")
    for key, variable in zip(expected, layer.weights, strict=True):
        if key not in arrays:
            continue
        array = arrays[key]
        want = tuple(variable.shape)
        if tuple(array.shape) != want:
            got.problems.append(f"layer {name}: {key} has shape {array.shape}, model wants {want}")
        if array.dtype != WEIGHT_DTYPE:
            got.problems.append(f"layer {name}: {key} has dtype {array.dtype}, expected float32")
        spec = declared.get(key)
        if spec is None:
            got.problems.append(f"layer {name}: {key} is not declared in the manifest")
        elif tuple(spec.get("shape", ())) != tuple(array.shape) or spec.get("dtype") != str(
            array.dtype
        ):
            got.problems.append(
                f"layer {name}: {key} is {array.dtype}{tuple(array.shape)} but the manifest "
                f"declares {spec.get('dtype')}{tuple(spec.get('shape', ()))}"
            )


def load_weights(model: Any, weights_dir: Path, manifest_path: Path | None = None) -> LoadReport:
    """Verify the npz set in ``weights_dir`` against its manifest and the model, then assign it.

    Args:
        model: the Keras model from :func:`toolchain.convert.architecture.build_model`.
        weights_dir: directory holding ``<layer>.npz`` and ``manifest.json``.
        manifest_path: the manifest (default ``weights_dir / "manifest.json"``,
            :data:`~toolchain.core.contracts.MANIFEST_FILE`).

    Returns:
        What was loaded.

    Raises:
        MissingArtifactError: the weights directory or manifest is missing.
        IntegrityError: the manifest is unreadable.
        WeightsRejectedError: anything does not match; lists every problem, model untouched.
    """
    manifest_path = manifest_path or weights_dir / MANIFEST_FILE
    if not weights_dir.is_dir():
        raise MissingArtifactError(f"weights directory {weights_dir} is missing; {RECOVER_HINT}")
    manifest = read_manifest(manifest_path)
    got = _Collected()
    _verify_files(manifest, weights_dir, got)

    entries: dict[str, Mapping[str, Any]] = {}
    for entry in manifest["layers"]:
        if entry.get("name") in entries:
            got.problems.append(f"layer {entry.get('name')}: listed twice in the manifest")
        entries[entry.get("name", "?")] = entry
    model_names = {layer.name for layer in model.layers}
    for layer in model.layers:
        _check_layer(layer, entries.get(layer.name), got)
    for name, entry in entries.items():
        if name not in model_names and (entry.get("npz") or entry.get("weights")):
            got.problems.append(f"layer {name}: in the manifest but not in the model (extra)")

    if got.problems:
        raise WeightsRejectedError(got.problems)

    plan: list[tuple[Any, np.ndarray]] = []
    layers_filled = 0
    for layer in model.layers:
        kind = WEIGHT_KINDS.get(type(layer).__name__)
        if kind is None:
            continue
        arrays = got.arrays[layer.name]
        plan.extend(zip(layer.weights, (arrays[key] for key in kind.keys(layer)), strict=True))
        layers_filled += 1
    planned = {id(variable) for variable, _ in plan}
    unfilled = [
        f"model weight {v.path} has no npz tensor" for v in model.weights if id(v) not in planned
    ]
    if unfilled:
        raise WeightsRejectedError(unfilled)
    for variable, array in plan:
        variable.assign(array)
    tensors = len(plan)
    parameters = sum(int(array.size) for _, array in plan)
    log.info("loaded %d tensors (%d parameters) into %d layers", tensors, parameters, layers_filled)
    return LoadReport(
        layers=layers_filled,
        tensors=tensors,
        parameters=parameters,
        manifest_sha256=sha256_file(manifest_path),
        source_sha256=str(manifest.get("source", {}).get("sha256", "")),
    )


def build_loaded_model(weights_dir: Path, l2_output: bool = True) -> tuple[Any, LoadReport]:
    """Build InceptionResNetV1 and strictly load the recovered weights into it."""
    from toolchain.convert.architecture import build_model

    model = build_model(l2_output=l2_output)
    return model, load_weights(model, weights_dir)
