"""The rebuilt InceptionResNetV1 against the legacy ``model_config`` of the real file."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np
import pytest

from toolchain.convert import architecture
from toolchain.convert.architecture import ScaleSum, build_model

CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    "Conv2D": (
        "filters",
        "kernel_size",
        "strides",
        "padding",
        "dilation_rate",
        "activation",
        "use_bias",
    ),
    "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
    "Activation": ("activation",),
    "MaxPooling2D": ("pool_size", "strides", "padding"),
    "Concatenate": ("axis",),
    "Dropout": ("rate",),
    "Dense": ("units", "activation", "use_bias"),
}
"""The config fields that change what a layer computes."""


def _norm(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@pytest.fixture(scope="module")
def legacy_layers(real_h5_module: Path) -> dict[str, dict[str, Any]]:
    with h5py.File(real_h5_module, "r") as h5:
        config = json.loads(h5.attrs["model_config"])
    return {layer["name"]: layer for layer in config["config"]["layers"]}


@pytest.fixture(scope="module")
def real_h5_module() -> Path:
    path = Path(os.environ.get("FACENET_ARTIFACTS", "artifacts")) / "source" / "facenet_keras.h5"
    if not path.is_file():
        pytest.skip(f"{path} missing: run `nox -s fetch` first")
    return path


@pytest.fixture(scope="module")
def rebuilt() -> keras.Model:
    return build_model(l2_output=False)


def _tensor_sources(value: Any) -> list[str]:
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            return [value["config"]["keras_history"][0]]
        return [name for v in value.values() for name in _tensor_sources(v)]
    if isinstance(value, list | tuple):
        return [name for v in value for name in _tensor_sources(v)]
    return []


def _inbound(model: keras.Model) -> dict[str, list[str]]:
    return {
        layer["name"]: _tensor_sources(layer["inbound_nodes"])
        for layer in model.get_config()["layers"]
    }


def test_parameter_count_and_layer_count(rebuilt: keras.Model) -> None:
    assert len(rebuilt.layers) == 426
    assert rebuilt.count_params() == 22_808_144
    assert rebuilt.output.shape == (None, 128)


@pytest.mark.real
def test_same_layer_names_and_classes(
    rebuilt: keras.Model, legacy_layers: dict[str, dict[str, Any]]
) -> None:
    ours = {layer.name: type(layer).__name__ for layer in rebuilt.layers}
    theirs = {
        name: ("ScaleSum" if spec["class_name"] == "Lambda" else spec["class_name"])
        for name, spec in legacy_layers.items()
    }
    assert ours == theirs


@pytest.mark.real
def test_same_topology(rebuilt: keras.Model, legacy_layers: dict[str, dict[str, Any]]) -> None:
    theirs = {
        name: [inbound[0] for node in spec["inbound_nodes"] for inbound in node]
        for name, spec in legacy_layers.items()
    }
    assert _inbound(rebuilt) == theirs


@pytest.mark.real
def test_configs_that_matter(
    rebuilt: keras.Model, legacy_layers: dict[str, dict[str, Any]]
) -> None:
    mismatches = []
    for layer in rebuilt.layers:
        spec = legacy_layers[layer.name]
        ours = layer.get_config()
        for key in CONFIG_KEYS.get(spec["class_name"], ()):
            if _norm(ours[key]) != _norm(spec["config"][key]):
                mismatches.append((layer.name, key, ours[key], spec["config"][key]))
        if spec["class_name"] == "Lambda" and layer.scale != spec["config"]["arguments"]["scale"]:
            mismatches.append((layer.name, "scale", layer.scale, spec["config"]["arguments"]))
    assert mismatches == []


@pytest.mark.real
def test_scales_and_constants_match_the_legacy_file(
    legacy_layers: dict[str, dict[str, Any]],
) -> None:
    scales = {
        name.split("_")[0] + ("_6" if name.startswith("Block8_6") else ""): spec["config"][
            "arguments"
        ]["scale"]
        for name, spec in legacy_layers.items()
        if spec["class_name"] == "Lambda"
    }
    assert scales == {
        "Block35": architecture.BLOCK35_SCALE,
        "Block17": architecture.BLOCK17_SCALE,
        "Block8": architecture.BLOCK8_SCALE,
        "Block8_6": architecture.FINAL_BLOCK8_SCALE,
    }
    assert "Block8_6_Activation" not in legacy_layers
    assert legacy_layers["Dropout"]["config"]["rate"] == architecture.DROPOUT_RATE


def test_scalesum_is_the_legacy_formula() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3, 4)).astype(np.float32)
    got = keras.ops.convert_to_numpy(ScaleSum(0.17)([a, b]))
    np.testing.assert_array_equal(got, a + b * np.float32(0.17))


def test_l2_output_is_the_only_extra_layer() -> None:
    with_l2 = build_model(l2_output=True)
    names = {layer.name for layer in with_l2.layers}
    plain = {layer.name for layer in build_model(l2_output=False).layers}
    assert names - plain == {architecture.L2_OUTPUT_NAME}
    assert [t.shape for t in with_l2.outputs] == [(None, 128), (None, 128)]


def test_saved_archive_loads_in_safe_mode_without_lambda(tmp_path: Path) -> None:
    model = build_model(l2_output=True)
    path = tmp_path / "m.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json").decode()
    assert '"Lambda"' not in config
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    assert isinstance(loaded.get_layer("Block17_3_ScaleSum"), ScaleSum)
    assert loaded.get_layer("Block17_3_ScaleSum").scale == pytest.approx(0.10)
