"""Vetting Lambda bytecode by decoding it, never by running it."""

from __future__ import annotations

import base64
import copy
import json
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from helpers.corpus_legacy_code import (
    HOSTILE_CONFIGS,
    deep_config,
    evil_lambda,
    functional,
    lstm,
    with_layer,
    with_layer_config,
    wrapper,
)
from helpers.legacy_h5 import (
    REAL_LAMBDA_B64,
    lambda_b64,
    patched_real_lambda,
    tiny_config,
    trap_function,
    write_legacy_h5,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from toolchain.core.errors import UnsafeCodeError
from toolchain.legacy.codewalk import MAX_DEPTH, bind_lambdas, scan_config, vet_code
from toolchain.legacy.h5file import read_legacy
from toolchain.legacy.lambdas import VETTED_SOURCE, decode_lambda, scale_sum, vet_lambda

RUNNING = f"{sys.version_info.major}.{sys.version_info.minor}"


def _config(function: Any, arguments: Any = None, function_type: str = "lambda") -> dict[str, Any]:
    return {
        "function": function,
        "function_type": function_type,
        "arguments": {"scale": 0.17} if arguments is None else arguments,
    }


def test_real_facenet_lambda_is_vetted() -> None:
    vetted = vet_lambda("Block35_1_ScaleSum", _config([REAL_LAMBDA_B64, None, None]))
    assert vetted.layer == "Block35_1_ScaleSum"
    assert vetted.scale == pytest.approx(0.17)
    assert vetted.python_version == "3.6"
    assert vetted.source == VETTED_SOURCE
    for op in ("LOAD_FAST", "BINARY_SUBSCR", "BINARY_MULTIPLY", "BINARY_ADD", "RETURN_VALUE"):
        assert op in vetted.disassembly


def test_decode_recovers_source_and_disassembly() -> None:
    decoded = decode_lambda("L", [REAL_LAMBDA_B64, None, None])
    assert decoded.source == "lambda inputs, scale: inputs[0] + inputs[1] * scale"
    assert decoded.decompile_error is None
    assert decoded.instructions[-1] == ("RETURN_VALUE", None)
    assert len(decoded.instructions) == 10


def test_same_lambda_marshaled_by_this_python_is_vetted() -> None:
    vetted = vet_lambda("L", _config([lambda_b64(VETTED_SOURCE), None, None], {"scale": 1}))
    assert vetted.python_version == RUNNING
    assert vetted.scale == 1.0


def test_booby_trapped_lambda_is_refused_and_never_run(tmp_path: Path) -> None:
    sentinel = tmp_path / "SENTINEL"
    with pytest.raises(UnsafeCodeError) as info:
        vet_lambda("Block35_1_ScaleSum", _config(trap_function(sentinel)))
    message = str(info.value)
    assert "'Block35_1_ScaleSum'" in message
    assert f"Python {RUNNING}" in message
    assert "open" in message and str(sentinel) in message
    assert "\n" not in message
    assert not sentinel.exists()


def test_modified_python36_lambda_is_refused_with_its_source() -> None:
    subtract = patched_real_lambda(b"\x17\x00S\x00", b"\x18\x00S\x00")
    with pytest.raises(UnsafeCodeError, match=r"inputs\[0\] - inputs\[1\] \* scale"):
        vet_lambda("L", _config(subtract))


@pytest.mark.parametrize(
    "source",
    [
        "lambda inputs, scale: inputs[1] + inputs[0] * scale",
        "lambda inputs, scale: inputs[0] + inputs[1] * scale + 1",
        "lambda inputs, scale: inputs[0] - inputs[1] * scale",
        "lambda x, scale: x[0] + x[1] * scale",
        "lambda inputs, scale, *rest: inputs[0] + inputs[1] * scale",
        "lambda inputs, scale: inputs[0] + inputs[1] * __import__('os').getpid()",
        "lambda inputs, scale: (yield inputs)",
    ],
)
def test_other_code_is_refused(source: str) -> None:
    with pytest.raises(UnsafeCodeError, match="refusing it"):
        vet_lambda("L", _config([lambda_b64(source), None, None]))


@pytest.mark.parametrize(
    "arguments",
    [{"scale": "0.17"}, {"scale": 0.17, "extra": 1}, {}, {"scale": True}, {"scale": None}, [0.17]],
)
def test_arguments_must_be_one_float_scale(arguments: Any) -> None:
    with pytest.raises(UnsafeCodeError, match="arguments"):
        vet_lambda("L", _config([REAL_LAMBDA_B64, None, None], arguments))


def test_defaults_or_closure_are_refused() -> None:
    with pytest.raises(UnsafeCodeError, match="defaults or a closure"):
        vet_lambda("L", _config([REAL_LAMBDA_B64, [1.0], None]))


@pytest.mark.parametrize(
    ("function", "function_type"),
    [("scale_sum", "function"), ("os.system", "function"), ("anything", "raw")],
)
def test_non_lambda_function_types_are_refused(function: str, function_type: str) -> None:
    with pytest.raises(UnsafeCodeError, match="function_type"):
        vet_lambda("L", _config(function, function_type=function_type))


@pytest.mark.parametrize(
    "function",
    [
        ["%%% not base64 %%%", None, None],
        [base64.b64encode(b"\xe3garbage bytes").decode(), None, None],
        [base64.b64encode(b"").decode(), None, None],
        [None, None, None],
        12,
    ],
)
def test_undecodable_function_is_refused(function: Any) -> None:
    with pytest.raises(UnsafeCodeError, match="'L'"):
        vet_lambda("L", _config(function))


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=160))
def test_random_bytes_never_pass(data: bytes) -> None:
    with pytest.raises(UnsafeCodeError):
        vet_lambda("L", _config([base64.b64encode(data).decode(), None, None]))


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=135), st.integers(min_value=0, max_value=255))
def test_any_single_byte_change_of_the_real_lambda_is_refused_or_identical(
    position: int, value: int
) -> None:
    raw = bytearray(base64.b64decode(REAL_LAMBDA_B64))
    changed = raw[position] != value
    raw[position] = value
    config = _config([base64.b64encode(bytes(raw)).decode(), None, None])
    try:
        vetted = vet_lambda("L", config)
    except UnsafeCodeError:
        return
    decoded = decode_lambda("L", config["function"])
    original = decode_lambda("L", [REAL_LAMBDA_B64, None, None])
    assert decoded.instructions == original.instructions, (changed, vetted)


def test_scale_sum_is_the_vetted_arithmetic() -> None:
    a, b = np.arange(4.0), np.arange(4.0, 8.0)
    np.testing.assert_allclose(scale_sum([a, b], 0.17), a + b * 0.17)


@pytest.mark.real
def test_all_real_lambdas_are_vetted(real_h5: Path) -> None:
    model = read_legacy(real_h5)
    vetted = vet_code(model.code)
    assert len(vetted) == 21
    assert {v.source for v in vetted} == {VETTED_SOURCE}
    scales = [v.scale for v in vetted]
    assert scales == [0.17] * 5 + [0.1] * 10 + [0.2] * 5 + [1.0]


# ---- the whole config is walked: Lambdas and callables at any depth ----


def _vetted_lambda(name: str) -> dict[str, Any]:
    """A Lambda layer entry holding the real vetted FaceNet lambda, like ``ScaleSum``."""
    (spec,) = (s for s in tiny_config()["config"]["layers"] if s["name"] == "ScaleSum")
    return {**spec, "name": name, "config": {**spec["config"], "name": name}, "inbound_nodes": []}


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        (functional("inner", evil_lambda(Path("S"))), "inner/evil_lambda"),
        (functional("a", functional("b", functional("c", evil_lambda(Path("S"))))),
         "a/b/c/evil_lambda"),
        (wrapper("Sequential", "seq", layers=[evil_lambda(Path("S"))]), "seq/evil_lambda"),
        ({"class_name": "Sequential", "name": "old", "config": [evil_lambda(Path("S"))]},
         "old/evil_lambda"),
        (wrapper("TimeDistributed", "td", layer=evil_lambda(Path("S"))), "td/evil_lambda"),
        (wrapper("Bidirectional", "bi", layer=lstm("f"), backward_layer=evil_lambda(Path("S"))),
         "bi/evil_lambda"),
        (wrapper("RNN", "rnn", cell={"class_name": "StackedRNNCells",
                                     "config": {"cells": [evil_lambda(Path("S"), "c")]}}),
         "rnn/c"),
    ],
    ids=["model", "model-3-deep", "sequential", "sequential-keras-2.1", "timedistributed",
         "bidirectional", "rnn-cells"],
)
def test_nested_lambdas_are_found_with_their_path(extra: dict[str, Any], path: str) -> None:
    code = scan_config(with_layer(extra))
    assert [site.path for site in code.lambdas] == ["ScaleSum", path]
    assert code.callables == ()
    with pytest.raises(UnsafeCodeError, match=f"'{path}'"):
        vet_code(code)


@pytest.mark.parametrize("name", sorted(HOSTILE_CONFIGS))
def test_every_hostile_config_is_refused_naming_its_path(tmp_path: Path, name: str) -> None:
    sentinel = tmp_path / "SENTINEL"
    config, names, phrases = HOSTILE_CONFIGS[name](sentinel)
    with pytest.raises(UnsafeCodeError) as info:
        vet_code(scan_config(config))
    message = str(info.value)
    assert names in message and "\n" not in message
    for phrase in phrases:
        assert phrase in message
    assert not sentinel.exists()


def test_vetted_lambda_inside_a_nested_model_is_accepted_and_bound_at_depth() -> None:
    config = with_layer(functional("inner", _vetted_lambda("Scale2")))
    site = scan_config(config).lambdas[1]
    site.config["module"] = "__main__"
    original = copy.deepcopy(config)
    vetted = vet_code(scan_config(config))
    assert [(v.layer, v.source) for v in vetted] == [
        ("ScaleSum", VETTED_SOURCE),
        ("inner/Scale2", VETTED_SOURCE),
    ]
    bound = bind_lambdas(config, "scale_sum")
    assert config == original
    bound_sites = scan_config(bound).lambdas
    assert [s.path for s in bound_sites] == ["ScaleSum", "inner/Scale2"]
    for bound_site in bound_sites:
        assert bound_site.config["function"] == "scale_sum"
        assert bound_site.config["function_type"] == "function"
        assert "module" not in bound_site.config
    assert REAL_LAMBDA_B64 not in json.dumps(bound)


KERAS_215_DENSE = {
    "activation": "linear",
    "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform",
                           "config": {"seed": None}, "registered_name": None},
    "bias_initializer": {"class_name": "Zeros", "config": {}},
    "kernel_regularizer": {"class_name": "L1L2", "config": {"l1": 0.0, "l2": 0.1}},
    "kernel_constraint": {"class_name": "MaxNorm", "config": {"max_value": 2}},
    "bias_constraint": "non_neg",
    "dtype": {"module": "keras.mixed_precision", "class_name": "Policy",
              "config": {"name": "float32"}, "registered_name": None},
}


@pytest.mark.parametrize(
    "changes",
    [
        KERAS_215_DENSE,
        {"activation": {"module": "keras.activations", "class_name": "function",
                        "config": "relu", "registered_name": "relu"}},
        {"activation": {"class_name": "LeakyReLU", "config": {"alpha": 0.3}}},
        {"activation": None, "kernel_initializer": "he_normal", "kernel_regularizer": "l2"},
    ],
    ids=["keras-2.15-dense", "builtin-function-object", "advanced-activation", "builtin-names"],
)
def test_builtin_references_are_not_code(changes: dict[str, Any]) -> None:
    code = scan_config(with_layer_config("Dense", **changes))
    assert code.callables == ()
    assert len(vet_code(code)) == 1


TRAP = [lambda_b64("lambda x: __import__('os').system('id')"), None, None]


@pytest.mark.parametrize(
    ("changes", "path", "phrase"),
    [
        ({"activation": "os.system"}, "Dense/activation", "'os.system' is not a built-in"),
        ({"activation": "deserialize"}, "Dense/activation", "'deserialize'"),
        ({"activation": TRAP}, "Dense/activation", "serialized function"),
        ({"activation": {"module": "builtins", "class_name": "function", "config": "exec",
                         "registered_name": "exec"}}, "Dense/activation", "module 'builtins'"),
        ({"activation": {"class_name": "function", "config": "system"}}, "Dense/activation",
         "serialized function reference 'system'"),
        ({"activation": {"class_name": "__lambda__", "config": {"code": TRAP[0]}}},
         "Dense/activation", "'__lambda__'"),
        ({"recurrent_activation": "evil"}, "Dense/recurrent_activation", "'evil'"),
        ({"kernel_initializer": "my_init"}, "Dense/kernel_initializer", "'my_init'"),
        ({"kernel_initializer": {"class_name": "MyInit", "config": {}}},
         "Dense/kernel_initializer", "'MyInit'"),
        ({"kernel_regularizer": {"class_name": "EvilRegularizer", "config": {}}},
         "Dense/kernel_regularizer", "'EvilRegularizer'"),
        ({"activity_regularizer": TRAP}, "Dense/activity_regularizer", "serialized function"),
        ({"bias_constraint": "clip_everything"}, "Dense/bias_constraint", "'clip_everything'"),
        ({"kernel_constraint": {"module": "my_pkg.constraints", "class_name": "MaxNorm",
                                "config": {}}}, "Dense/kernel_constraint", "module 'my_pkg"),
        ({"kernel_constraint": {"class_name": "MaxNorm", "config": {},
                                "registered_name": "Evil>MaxNorm"}},
         "Dense/kernel_constraint", "registered_name 'Evil>MaxNorm'"),
        ({"dtype": {"class_name": "EvilPolicy", "config": {"name": "float32"}}}, "Dense/dtype",
         "'EvilPolicy'"),
    ],
)
def test_callable_references_are_refused(changes: dict[str, Any], path: str, phrase: str) -> None:
    code = scan_config(with_layer_config("Dense", **changes))
    assert [site.path for site in code.callables] == [path]
    with pytest.raises(UnsafeCodeError, match=f"'{path}'") as info:
        vet_code(code)
    assert phrase in str(info.value)


@pytest.mark.parametrize("class_name", ["TFOpLambda", "SlicingOpLambda", "TextVectorization",
                                        "MyLayer", "keras.layers.Lambda"])
def test_layer_classes_outside_the_builtins_are_refused(class_name: str) -> None:
    extra = {"class_name": class_name, "name": "x", "config": {"name": "x", "function": "io.x"}}
    code = scan_config(with_layer(extra))
    assert [site.path for site in code.callables] == ["x"]


@pytest.mark.parametrize(
    ("changes", "phrase"),
    [
        ({"output_shape": TRAP, "output_shape_type": "lambda"}, "output_shape"),
        ({"output_shape": "os.system", "output_shape_type": "function"}, "output_shape"),
        ({"output_shape": TRAP}, "output_shape"),
        ({"output_shape": [80, True, 4]}, "output_shape"),
        ({"output_shape": [80, -1, 4]}, "output_shape"),
        ({"mask": TRAP, "mask_type": "lambda"}, "mask"),
        ({"mask": "os.system", "mask_type": "function"}, "mask"),
        ({"mask": [1, 0]}, "mask"),
        ({"mask_type": "lambda"}, "mask"),
        ({"module": ["os"]}, "module"),
        ({"output_shape_module": {"x": 1}}, "output_shape_module"),
    ],
)
def test_lambda_output_shape_mask_and_modules_must_not_be_code(
    changes: dict[str, Any], phrase: str
) -> None:
    config = {**_config([REAL_LAMBDA_B64, None, None]), "output_shape": [80, 80, 4],
              "output_shape_type": "raw", **changes}
    with pytest.raises(UnsafeCodeError, match=phrase):
        vet_lambda("L", config)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"output_shape": None},
        {"output_shape": [None, 4]},
        {"mask": None, "mask_type": "raw", "mask_module": None},
        {"module": "__main__", "output_shape_module": None},
    ],
)
def test_lambda_plain_shape_no_mask_is_vetted(changes: dict[str, Any]) -> None:
    config = {**_config([REAL_LAMBDA_B64, None, None]), "output_shape": [80, 80, 4],
              "output_shape_type": "raw", **changes}
    assert vet_lambda("L", config).source == VETTED_SOURCE


def test_depth_is_bounded_and_refused() -> None:
    inside = json.loads(deep_config(MAX_DEPTH - 10))
    assert scan_config(inside).callables == ()
    with pytest.raises(UnsafeCodeError, match=f"deeper than {MAX_DEPTH} levels"):
        scan_config(json.loads(deep_config(MAX_DEPTH)))


@pytest.mark.parametrize("depth", [MAX_DEPTH + 5, 100_000])
def test_read_legacy_refuses_a_pathologically_deep_config(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "deep.h5"
    write_legacy_h5(path)
    with h5py.File(path, "r+") as h5:
        h5.attrs["model_config"] = deep_config(depth).encode()
    with pytest.raises(UnsafeCodeError, match="deeper than") as info:
        read_legacy(path)
    assert str(path) in str(info.value)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12)
    | st.sampled_from(["Lambda", "class_name", "config", "layers", "activation", "module"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(["class_name", "config", "name", "layer", "layers", "module",
                         "registered_name", "activation", "kernel_initializer", "function"])
        | st.text(max_size=6),
        children,
        max_size=5,
    ),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None)
@given(JSON)
def test_walker_never_crashes_on_any_json(node: Any) -> None:
    try:
        code = scan_config(node)
    except UnsafeCodeError:
        return
    for site in code.lambdas:
        assert isinstance(site.config, dict)
    for ref in code.callables:
        assert "\n" not in ref.refusal and ref.refusal.endswith("refusing it")
