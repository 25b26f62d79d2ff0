"""Reading legacy Keras .h5 files with h5py only, and the deterministic npz writer."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers.legacy_h5 import (
    TINY_LAYERS,
    TINY_PARAMETERS,
    TINY_TENSORS,
    TINY_WEIGHTED,
    write_legacy_h5,
)

from toolchain.core.errors import InputError
from toolchain.legacy.h5file import iter_weight_arrays, read_legacy
from toolchain.legacy.model import weight_key
from toolchain.legacy.npzfile import npz_bytes


def test_tiny_file_structure(tiny_h5: Path) -> None:
    model = read_legacy(tiny_h5)
    assert model.model_class == "Model"
    assert model.name == "tiny"
    assert (model.keras_version, model.backend) == ("2.1.2", "tensorflow")
    assert len(model.layers) == TINY_LAYERS
    assert len(model.weighted_layers) == TINY_WEIGHTED
    assert model.tensors == TINY_TENSORS
    assert model.parameters == TINY_PARAMETERS
    assert model.input_layers == ("input_1",)
    assert model.output_layers == ("Dense",)
    assert model.input_shapes == ((None, 160, 160, 3),)
    assert model.output_shapes == ((None, 2),)
    assert model.layer("ScaleSum").inbound == ("Conv_BatchNorm", "Branch")
    assert [lam.path for lam in model.lambdas] == ["ScaleSum"]
    bn = model.layer("Conv_BatchNorm")
    assert [w.key for w in bn.weights] == ["beta", "moving_mean", "moving_variance"]
    assert bn.weights[0].name == "Conv_BatchNorm/beta:0"
    assert model.class_counts()["Conv2D"] == 2


def test_weight_arrays_are_the_stored_datasets(tmp_path: Path) -> None:
    path = tmp_path / "m.h5"
    written = write_legacy_h5(path)
    got = {
        layer.name: {info.key: array for info, array in arrays}
        for layer, arrays in iter_weight_arrays(read_legacy(path))
    }
    assert sorted(got) == sorted(written)
    for layer, arrays in written.items():
        assert sorted(got[layer]) == sorted(arrays)
        for key, array in arrays.items():
            assert got[layer][key].dtype == np.float32
            np.testing.assert_array_equal(got[layer][key], array)


def test_bad_files_raise_input_error_naming_the_file(bad_h5: tuple[Path, str]) -> None:
    path, phrase = bad_h5
    with pytest.raises(InputError) as info:
        read_legacy(path)
    assert str(path) in str(info.value)
    assert phrase in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_legacy(tmp_path / "absent.h5")


def _sequential_h5(path: Path, config: object) -> None:
    rng = np.random.default_rng(3)
    with h5py.File(path, "w") as h5:
        h5.attrs["keras_version"] = b"2.2.4"
        h5.attrs["backend"] = b"tensorflow"
        h5.attrs["model_config"] = json.dumps(config).encode()
        group = h5.create_group("model_weights")
        group.attrs["layer_names"] = np.array([b"d1", b"d2"], dtype="S")
        for name, shape in (("d1", (5, 3)), ("d2", (3, 1))):
            sub = group.create_group(name)
            sub.attrs["weight_names"] = np.array(
                [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()], dtype="S"
            )
            sub.create_dataset(f"{name}/kernel:0", data=rng.standard_normal(shape))
            sub.create_dataset(f"{name}/bias:0", data=np.zeros(shape[1:]))


SEQ_LAYERS = [
    {"class_name": "Dense", "config": {"name": "d1", "units": 3, "batch_input_shape": [None, 5]}},
    {"class_name": "Dense", "config": {"name": "d2", "units": 1}},
]


@pytest.mark.parametrize(
    "config",
    [
        {"class_name": "Sequential", "config": SEQ_LAYERS},
        {"class_name": "Sequential", "config": {"name": "seq", "layers": SEQ_LAYERS}},
    ],
    ids=["keras-2.1-list", "keras-2.2-dict"],
)
def test_sequential_configs(tmp_path: Path, config: dict[str, object]) -> None:
    path = tmp_path / "seq.h5"
    _sequential_h5(path, config)
    model = read_legacy(path)
    assert [layer.name for layer in model.layers] == ["d1", "d2"]
    assert model.layer("d2").inbound == ("d1",)
    assert model.parameters == 5 * 3 + 3 + 3 * 1 + 1
    assert model.input_shapes == ((None, 5),)
    assert model.output_shapes == ((None, 1),)
    assert model.layer("d1").weights[0].dtype == "float64"


def test_sequential_weight_shape_checked_against_units(tmp_path: Path) -> None:
    layers = [SEQ_LAYERS[0], {"class_name": "Dense", "config": {"name": "d2", "units": 2}}]
    path = tmp_path / "seq.h5"
    _sequential_h5(path, {"class_name": "Sequential", "config": layers})
    with pytest.raises(InputError, match="'d2/kernel:0' of layer 'd2' has shape"):
        read_legacy(path)


def test_weight_key() -> None:
    assert weight_key("Conv2d_1a_3x3/kernel:0") == "kernel"
    assert weight_key("outer/inner/moving_variance:0") == "moving_variance"
    assert weight_key("bias") == "bias"


def test_npz_bytes_deterministic_and_loadable() -> None:
    arrays = {"kernel": np.arange(12, dtype=np.float32).reshape(3, 4), "bias": np.ones(4, "f4")}
    data = npz_bytes(arrays)
    assert data == npz_bytes(dict(reversed(list(arrays.items()))))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["bias.npy", "kernel.npy"]
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    with np.load(io.BytesIO(data), allow_pickle=False) as loaded:
        for key, array in arrays.items():
            assert loaded[key].dtype == array.dtype
            np.testing.assert_array_equal(loaded[key], array)


def test_npz_bytes_refuses_object_arrays() -> None:
    with pytest.raises(ValueError, match="object dtype"):
        npz_bytes({"x": np.array([{"a": 1}], dtype=object)})


@pytest.mark.real
def test_real_file_structure(real_h5: Path) -> None:
    model = read_legacy(real_h5)
    assert (model.keras_version, model.backend) == ("2.1.2", "tensorflow")
    assert len(model.layers) == 426
    assert model.parameters == 22_808_144
    assert len(model.weighted_layers) == 245
    assert model.tensors == 490
    assert len(model.lambdas) == 21
    assert model.lambdas[0].path == "Block35_1_ScaleSum"
    assert model.code.callables == ()
    assert model.input_shapes == ((None, 160, 160, 3),)
    assert model.output_shapes == ((None, 128),)
    assert model.output_layers == ("Bottleneck_BatchNorm",)
    counts = model.class_counts()
    assert (counts["Conv2D"], counts["BatchNormalization"], counts["Lambda"]) == (132, 112, 21)
