"""The strict npz loader: on synthetic sets (every kind of fault) and on the real recovered set."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from toolchain.convert.weights import (
    WEIGHT_KINDS,
    WeightsRejectedError,
    load_weights,
)
from toolchain.core.contracts import MANIFEST_FORMAT
from toolchain.core.errors import MissingArtifactError

REAL_WEIGHTS = Path(os.environ.get("FACENET_ARTIFACTS", "artifacts")) / "weights"


def tiny_model() -> keras.Model:
    """Every weighted kind the loader knows: biased and unbiased Conv2D, BN(scale=False), Dense."""
    inputs = keras.Input((8, 8, 3), name="input_1")
    x = keras.layers.Conv2D(4, 3, use_bias=False, name="Conv")(inputs)
    x = keras.layers.BatchNormalization(scale=False, name="Conv_BatchNorm")(x)
    x = keras.layers.Activation("relu", name="Conv_Activation")(x)
    x = keras.layers.Conv2D(4, 1, use_bias=True, name="Up")(x)
    x = keras.layers.GlobalAveragePooling2D(name="AvgPool")(x)
    x = keras.layers.Dense(2, use_bias=False, name="Bottleneck")(x)
    return keras.Model(inputs, x)


def tiny_arrays(seed: int = 1) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)

    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    return {
        "Conv": {"kernel": normal(3, 3, 3, 4)},
        "Conv_BatchNorm": {
            "beta": normal(4),
            "moving_mean": normal(4),
            "moving_variance": np.abs(normal(4)) + np.float32(0.5),
        },
        "Up": {"kernel": normal(1, 1, 4, 4), "bias": normal(4)},
        "Bottleneck": {"kernel": normal(4, 2)},
    }


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_set(directory: Path, model: keras.Model, arrays: dict[str, dict[str, Any]]) -> Path:
    """Write ``<layer>.npz`` files and a manifest in the recover format; return the manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    layers = []
    for layer in model.layers:
        entry: dict[str, Any] = {
            "name": layer.name,
            "class_name": type(layer).__name__,
            "inbound": [],
            "weights": [],
            "npz": None,
            "npz_sha256": None,
            "parameters": 0,
        }
        if layer.name in arrays:
            path = directory / f"{layer.name}.npz"
            np.savez(path, **arrays[layer.name])
            entry["npz"], entry["npz_sha256"] = path.name, _sha(path)
            entry["weights"] = [
                {
                    "name": f"{layer.name}/{key}:0",
                    "key": key,
                    "shape": list(np.shape(a)),
                    "dtype": str(np.asarray(a).dtype),
                }
                for key, a in arrays[layer.name].items()
            ]
        layers.append(entry)
    manifest = directory / "manifest.json"
    manifest.write_text(
        json.dumps({"format": MANIFEST_FORMAT, "source": {"sha256": "0" * 64}, "layers": layers})
    )
    return manifest


def _weights_of(model: keras.Model) -> list[np.ndarray]:
    return [np.array(w) for w in model.get_weights()]


def test_table_covers_every_weighted_kind() -> None:
    model = tiny_model()
    for layer in model.layers:
        if layer.weights:
            kind = WEIGHT_KINDS[type(layer).__name__]
            assert [v.name for v in layer.weights] == list(kind.keys(layer))


def test_good_set_fills_every_weight_exactly(tmp_path: Path) -> None:
    model, arrays = tiny_model(), tiny_arrays()
    write_set(tmp_path, model, arrays)
    report = load_weights(model, tmp_path)
    assert (report.layers, report.tensors) == (4, 7)
    assert report.parameters == sum(a.size for d in arrays.values() for a in d.values())
    for name, keyed in arrays.items():
        layer = model.get_layer(name)
        for variable in layer.weights:
            np.testing.assert_array_equal(np.array(variable), keyed[variable.name])


def test_tampered_byte_names_the_layer_and_leaves_the_model_untouched(tmp_path: Path) -> None:
    model = tiny_model()
    write_set(tmp_path, model, tiny_arrays())
    before = _weights_of(model)
    path = tmp_path / "Up.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsRejectedError) as err:
        load_weights(model, tmp_path)
    assert any("layer Up: file Up.npz sha256" in p for p in err.value.problems)
    assert err.value.exit_code == 4
    for a, b in zip(before, _weights_of(model), strict=True):
        np.testing.assert_array_equal(a, b)


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    model = tiny_model()
    arrays: dict[str, dict[str, Any]] = tiny_arrays()
    arrays["Conv"]["kernel"] = arrays["Conv"]["kernel"][:, :, :, :3]  # wrong shape
    arrays["Up"]["bias"] = arrays["Up"]["bias"].astype(np.float64)  # wrong dtype
    arrays["Up"]["gamma"] = np.ones(4, np.float32)  # extra tensor
    del arrays["Conv_BatchNorm"]["moving_variance"]  # missing tensor
    arrays["Bottleneck"]["kernel"] = np.array([object()] * 8, dtype=object)  # pickled
    manifest = write_set(tmp_path, model, arrays)
    np.savez(tmp_path / "Stray.npz", kernel=np.zeros(1, np.float32))  # not in the manifest
    data = json.loads(manifest.read_text())
    ghost_weight = {"key": "kernel", "shape": [1], "dtype": "float32"}
    data["layers"].append(
        {"name": "Ghost", "class_name": "Conv2D", "npz": None, "weights": [ghost_weight]}
    )
    manifest.write_text(json.dumps(data))
    with pytest.raises(WeightsRejectedError) as err:
        load_weights(model, tmp_path)
    text = "\n".join(err.value.problems)
    for phrase in (
        "layer Conv: kernel has shape (3, 3, 3, 3), model wants (3, 3, 3, 4)",
        "layer Up: bias has dtype float64, expected float32",
        "layer Up: extra tensor 'gamma'",
        "layer Conv_BatchNorm: tensor 'moving_variance' missing",
        "layer Bottleneck: file Bottleneck.npz holds a pickled object array",
        "extra file Stray.npz is not in the manifest",
        "layer Ghost: in the manifest but not in the model (extra)",
    ):
        assert phrase in text, f"{phrase!r} not in:\n{text}"
    assert str(err.value).count(";") >= 6


def test_missing_layer_and_missing_file(tmp_path: Path) -> None:
    model = tiny_model()
    manifest = write_set(tmp_path, model, tiny_arrays())
    data = json.loads(manifest.read_text())
    data["layers"] = [e for e in data["layers"] if e["name"] != "Conv_BatchNorm"]
    manifest.write_text(json.dumps(data))
    (tmp_path / "Conv_BatchNorm.npz").unlink()
    (tmp_path / "Up.npz").unlink()
    with pytest.raises(WeightsRejectedError) as err:
        load_weights(model, tmp_path)
    assert "layer Conv_BatchNorm: missing from the manifest" in err.value.problems
    assert "layer Up: file Up.npz is missing" in err.value.problems


def test_missing_manifest_names_the_nox_session(tmp_path: Path) -> None:
    with pytest.raises(MissingArtifactError, match="nox -s recover"):
        load_weights(tiny_model(), tmp_path)
    with pytest.raises(MissingArtifactError, match="nox -s recover"):
        load_weights(tiny_model(), tmp_path / "absent")


@pytest.fixture(scope="module")
def real_weights() -> Path:
    if not (REAL_WEIGHTS / "manifest.json").is_file():
        pytest.skip(f"{REAL_WEIGHTS} missing: run `nox -s recover` first")
    return REAL_WEIGHTS


@pytest.fixture(scope="module")
def facenet() -> keras.Model:
    from toolchain.convert.architecture import build_model

    return build_model(l2_output=True)


@pytest.mark.real
def test_real_set_loads_strictly(real_weights: Path, facenet: keras.Model) -> None:
    report = load_weights(facenet, real_weights)
    manifest = json.loads((real_weights / "manifest.json").read_text())
    assert report.layers == manifest["totals"]["weighted_layers"] == 245
    assert report.tensors == manifest["totals"]["tensors"] == 490
    assert report.parameters == manifest["totals"]["parameters"] == 22_808_144
    assert report.source_sha256 == manifest["source"]["sha256"]


@pytest.mark.real
def test_real_set_with_one_flipped_byte_fails_naming_that_layer(
    real_weights: Path, facenet: keras.Model, tmp_path: Path
) -> None:
    victim = "Block17_4_Branch_1_Conv2d_0b_1x7.npz"
    for path in real_weights.iterdir():
        if path.name != victim:
            (tmp_path / path.name).symlink_to(path.resolve())
    data = bytearray((real_weights / victim).read_bytes())
    data[-100] ^= 0x01
    (tmp_path / victim).write_bytes(bytes(data))
    with pytest.raises(WeightsRejectedError) as err:
        load_weights(facenet, tmp_path)
    assert err.value.problems[0] == (
        f"layer Block17_4_Branch_1_Conv2d_0b_1x7: file {victim} sha256 does not match the "
        "manifest (tampered)"
    )
    assert all("Block17_4_Branch_1_Conv2d_0b_1x7" in p for p in err.value.problems)


@pytest.mark.real
def test_real_set_with_a_file_removed_and_one_added(
    real_weights: Path, facenet: keras.Model, tmp_path: Path
) -> None:
    shutil.copytree(real_weights, tmp_path / "w", symlinks=True)
    (tmp_path / "w" / "Bottleneck.npz").unlink()
    np.savez(tmp_path / "w" / "Extra.npz", kernel=np.zeros(3, np.float32))
    with pytest.raises(WeightsRejectedError) as err:
        load_weights(facenet, tmp_path / "w")
    assert err.value.problems == [
        "layer Bottleneck: file Bottleneck.npz is missing",
        "extra file Extra.npz is not in the manifest",
    ]
