"""Vetting Lambda bytecode by decoding it, never by running it."""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REAL_LAMBDA_B64, lambda_b64, patched_real_lambda, trap_function
from hypothesis import given, settings
from hypothesis import strategies as st

from toolchain.errors import UnsafeCodeError
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
    vetted = [vet_lambda(layer.name, layer.config) for layer in model.lambdas]
    assert len(vetted) == 21
    assert {v.source for v in vetted} == {VETTED_SOURCE}
    scales = [v.scale for v in vetted]
    assert scales == [0.17] * 5 + [0.1] * 10 + [0.2] * 5 + [1.0]
