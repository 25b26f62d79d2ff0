"""The runtime install (``requirements/runtime.txt``, no TensorFlow) recognizes real faces.

``nox -s tests`` builds the runtime environment from its pinned requirements file and passes its
python as ``FACENET_RUNTIME_PYTHON``; these tests run the real ``facenet`` command there on the
exported ONNX models and the shared photos of six people, so a runtime pin that breaks the
runtime (or a runtime import that needs TensorFlow) fails CI.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers.cli import facenet
from helpers.real import artifacts_root, shared_data

ONNX_MODELS = ("facenet.onnx", "mtcnn_pnet.onnx", "mtcnn_rnet.onnx", "mtcnn_onet.onnx")

pytestmark = pytest.mark.real



@pytest.fixture
def runtime_artifacts(tmp_path: Path) -> Path:
    """A private artifacts tree holding copies of the exported ONNX models."""
    models = tmp_path / "artifacts" / "models"
    models.mkdir(parents=True)
    for name in ONNX_MODELS:
        source = artifacts_root() / "models" / name
        if not source.is_file():
            pytest.skip(f"{source} missing: run `nox -s export` first")
        shutil.copyfile(source, models / name)
    return tmp_path / "artifacts"


def test_runtime_env_has_no_tensorflow(runtime_python: Path) -> None:
    proc = subprocess.run(
        [str(runtime_python), "-c",
         "import importlib.util as u; print([m for m in ('tensorflow', 'keras', 'tf2onnx') "
         "if u.find_spec(m)])"],
        capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_runtime_env_enrolls_and_recognizes_real_faces(runtime_python: Path,
                                                       runtime_artifacts: Path) -> None:
    data = shared_data()
    enrolled = facenet("enroll", data / "people", "--artifacts", runtime_artifacts,
                       python=runtime_python)
    assert enrolled.returncode == 0, enrolled.stderr
    proc = facenet("recognize", "--json", data / "photos" / "two_people.jpg",
                   "--artifacts", runtime_artifacts, python=runtime_python)
    assert proc.returncode == 0, proc.stderr
    faces = json.loads(proc.stdout)["results"][0]["faces"]
    assert sorted(face["name"] for face in faces) == ["biden", "obama"]
