"""OpenVINO and int8 at run time: ``--runtime`` / ``--precision``, and galleries shared by them.

The exports themselves are held to the tolerance table by ``tests/test_parity.py`` (every format of
the table, ``openvino`` and ``openvino-int8`` included). Here: the choices, the whole pipeline on
OpenVINO with ONNX Runtime absent, a missing runtime reported in one line, and the declared
compatibility of precisions: a gallery enrolled with fp32 on ONNX Runtime, searched with each
other model on the shared real photos, names the same people in the same boxes.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers.cli import invoke
from helpers.real import artifacts_root, shared_data

from toolchain.cli.options import PrecisionChoice, RuntimeChoice
from toolchain.runtime.backends import (
    EMBEDDER_FILES,
    PRECISIONS,
    RUNTIMES,
    ModelChoice,
    check_choice,
)

COMBINATIONS = [(runtime, precision) for runtime in RUNTIMES for precision in PRECISIONS]

BOX_SLACK = 2.0
"""Pixels a box may move between runtimes (the MTCNN nets run on each runtime's kernels)."""


def test_the_command_line_choices_are_the_runtime_ones() -> None:
    assert tuple(c.value for c in RuntimeChoice) == RUNTIMES
    assert tuple(c.value for c in PrecisionChoice) == PRECISIONS
    assert set(EMBEDDER_FILES) == set(COMBINATIONS)
    assert ModelChoice().embedder_file == "facenet.onnx"
    assert ModelChoice("openvino", "int8").embedder_file == "facenet_openvino_int8/facenet.xml"
    with pytest.raises(ValueError, match="runtime must be one of"):
        check_choice("tensorrt", "fp32")
    with pytest.raises(ValueError, match="precision must be one of"):
        ModelChoice("openvino", "fp16")  # type: ignore[arg-type]


def test_an_unknown_runtime_is_a_usage_error(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    code, _, err = invoke(capsys, "recognize", tmp_path, "--runtime", "tensorrt")
    assert code == 2 and "tensorrt" in err


def _models() -> Path:
    models = artifacts_root() / "models"
    for runtime, precision in COMBINATIONS:
        if not (models / EMBEDDER_FILES[(runtime, precision)]).is_file():
            pytest.skip(f"{models / EMBEDDER_FILES[(runtime, precision)]} missing: run "
                        "`nox -s export` first")
    return models


def _recognize(capsys: pytest.CaptureFixture[str], gallery: Path, runtime: str,
               precision: str) -> list[dict[str, object]]:
    code, out, err = invoke(capsys, "recognize", shared_data() / "photos", "--gallery", gallery,
                            "--artifacts", artifacts_root(), "--runtime", runtime,
                            "--precision", precision, "--json")
    assert code == 0, err
    faces = [face for photo in json.loads(out)["results"] for face in photo["faces"]]
    assert faces
    return faces


@pytest.mark.real
def test_an_fp32_gallery_names_the_same_people_with_every_model(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _models()
    gallery = tmp_path / "fp32.db"
    code, _, err = invoke(capsys, "enroll", shared_data() / "people", "--gallery", gallery,
                          "--artifacts", artifacts_root())
    assert code == 0, err
    baseline = _recognize(capsys, gallery, "onnxruntime", "fp32")
    assert {face["name"] for face in baseline} >= {"obama", "biden", "kit_harington"}
    for runtime, precision in COMBINATIONS[1:]:
        faces = _recognize(capsys, gallery, runtime, precision)
        assert [f["name"] for f in faces] == [f["name"] for f in baseline], (runtime, precision)
        for got, want in zip(faces, baseline, strict=True):
            moved = [abs(got["box"][k] - want["box"][k]) for k in ("x", "y", "width", "height")]
            assert max(moved) <= BOX_SLACK, (runtime, precision)


@pytest.mark.real
def test_an_imported_gallery_is_bound_to_the_weights(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    _models()
    source, copy, export = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "a.json"
    art = artifacts_root()
    assert invoke(capsys, "enroll", shared_data() / "people" / "biden", "--name", "biden",
                  "--gallery", source, "--artifacts", art)[0] == 0
    assert invoke(capsys, "gallery", "export", export, "--gallery", source)[0] == 0
    code, _, err = invoke(capsys, "gallery", "import", export, "--gallery", copy,
                          "--artifacts", art)
    assert code == 0, err
    names = [f["name"] for f in _recognize(capsys, copy, "openvino", "int8")]
    assert "biden" in names


def _python_without(module: str, python: Path, *args: str | Path
                    ) -> subprocess.CompletedProcess[str]:
    """``facenet ARGS`` in ``python`` with ``module`` made unimportable."""
    code = (f"import sys; sys.modules[{module!r}] = None; sys.argv = ['facenet', *sys.argv[1:]]; "
            "from toolchain.cli.main import main; main()")
    return subprocess.run([str(python), "-c", code, *map(str, args)], capture_output=True,
                          text=True, check=False, timeout=600,
                          env={**os.environ, "PYTHONUTF8": "1"})


@pytest.mark.real
def test_openvino_runs_the_whole_pipeline_without_onnxruntime(runtime_python: Path,
                                                              tmp_path: Path) -> None:
    _models()
    gallery = tmp_path / "ov.db"
    data, artifacts = shared_data(), artifacts_root()
    enrolled = _python_without("onnxruntime", runtime_python, "enroll", data / "people",
                               "--gallery", gallery, "--artifacts", artifacts,
                               "--runtime", "openvino")
    assert enrolled.returncode == 0, enrolled.stderr
    found = _python_without("onnxruntime", runtime_python, "recognize",
                            data / "photos" / "two_people.jpg", "--gallery", gallery,
                            "--artifacts", artifacts, "--runtime", "openvino",
                            "--precision", "int8", "--json")
    assert found.returncode == 0, found.stderr
    names = [face["name"] for face in json.loads(found.stdout)["results"][0]["faces"]]
    assert names == ["obama", "biden"]


@pytest.mark.real
def test_a_missing_runtime_is_one_line_naming_the_extra(runtime_python: Path,
                                                        tmp_path: Path) -> None:
    _models()
    proc = _python_without("openvino", runtime_python, "recognize",
                           shared_data() / "photos" / "two_people.jpg", "--gallery",
                           tmp_path / "none.db", "--artifacts", artifacts_root(),
                           "--runtime", "openvino")
    assert proc.returncode == 8
    assert proc.stderr.strip().count("\n") == 0 and "facenet-toolchain[openvino]" in proc.stderr


@pytest.mark.real
@pytest.mark.services
def test_serve_runs_int8_on_openvino(tmp_path: Path) -> None:
    from helpers.service_server import running_server

    people = shared_data() / "people"
    with running_server(tmp_path, "--runtime", "openvino", "--precision", "int8") as server:
        for person in ("obama", "biden"):
            assert server.enroll(person, *sorted((people / person).iterdir())).status_code == 201
        found = server.recognize(shared_data() / "photos" / "two_people.jpg")
        assert found.status_code == 200, found.text
        assert [face["name"] for face in found.json()["faces"]] == ["obama", "biden"]


@pytest.mark.real
def test_threads_share_one_openvino_embedder(tmp_path: Path) -> None:
    """The service's workers share the embedder: each thread runs its own infer request."""
    import threading

    import numpy as np

    from toolchain.runtime.embedder import Embedder

    embedder = Embedder(_models() / EMBEDDER_FILES[("openvino", "int8")], runtime="openvino")
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (3, 160, 160, 3), dtype=np.uint8) for _ in range(4)]
    alone = [embedder.embed(c) for c in crops]
    wrong: list[int] = []

    def work(i: int) -> None:
        for _ in range(5):
            if not np.allclose(embedder.embed(crops[i]), alone[i], atol=1e-6):
                wrong.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(crops))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
