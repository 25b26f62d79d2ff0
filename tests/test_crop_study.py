"""The crop study and the default decision on the real labelled photos, face_recognition beside."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import artifacts_root, shared_data

from toolchain.core.contracts import ONNX_FILE
from toolchain.core.crop import DEFAULT_CROP
from toolchain.core.paths import Layout
from toolchain.evaluation.calibration import DetectedPhotos
from toolchain.evaluation.crops import ALL_SETS, run_study
from toolchain.evaluation.labelled import FACE_RECOGNITION_EXAMPLES, parse_set
from toolchain.evaluation.peer import PeerPhotos
from toolchain.runtime.embedder import Embedder
from toolchain.runtime.loading import load_detector

pytestmark = [pytest.mark.real, pytest.mark.slow]


@pytest.fixture(scope="module")
def study():  # type: ignore[no-untyped-def]
    layout = Layout(artifacts_root())
    if not (layout.models_dir / ONNX_FILE).exists():
        pytest.skip(f"{layout.models_dir / ONNX_FILE} missing: run `nox -s export` first")
    python = os.environ.get("FACENET_BASELINE_PYTHON")
    if not python:
        pytest.skip("FACENET_BASELINE_PYTHON (the face_recognition env) is not set")
    examples = shared_data("people").parent
    sets = [parse_set(str(layout.dataset_dir)),
            parse_set(f"{FACE_RECOGNITION_EXAMPLES}@{examples}")]
    peer = PeerPhotos(Path(python), [p.path for s in sets for p in s.photos])
    photos = DetectedPhotos(load_detector(layout.models_dir))
    return run_study(photos, Embedder(layout.models_dir / ONNX_FILE), sets, peer=peer)


def test_the_default_crop_is_the_best_measured(study) -> None:  # type: ignore[no-untyped-def]
    assert study.best == study.default_crop == DEFAULT_CROP.text
    box, default = study.crop("box").of(ALL_SETS), study.crop(study.default_crop).of(ALL_SETS)
    assert study.crop(study.default_crop).threshold.tar >= study.crop("box").threshold.tar
    assert default.eer <= box.eer


def test_the_default_threshold_holds_the_policy(study) -> None:  # type: ignore[no-untyped-def]
    overall = study.crop(study.default_crop).of(ALL_SETS)
    assert overall.threshold == pytest.approx(study.default_threshold)
    assert overall.false_accepts <= study.far * overall.impostor_pairs
    assert overall.impostor_pairs > 9000


def test_our_default_is_at_least_as_accurate_as_face_recognition(study) -> None:  # type: ignore[no-untyped-def]
    assert study.peer is not None and len(study.peer) == 2
    for row in study.peer:
        assert row.pairs > 400
        assert row.ours.accuracy >= row.peer.accuracy, row.set


def test_the_policy_cuts_false_accepts(study) -> None:  # type: ignore[no-untyped-def]
    for before in study.previous:
        after = study.crop(study.default_crop).of(before.set)
        assert after.false_accepts < before.false_accepts, before.set
