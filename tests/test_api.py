"""The Python API (Recognizer, Embedder) on synthetic photos; the README example on real data."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import runtime_fakes as fakes

from toolchain.core.errors import InputError, IntegrityError, MissingArtifactError
from toolchain.runtime.embedder import Embedder
from toolchain.runtime.faces import Match
from toolchain.runtime.recognizer import FALLBACK_THRESHOLD, Recognizer

ROOT = Path(__file__).resolve().parents[1]



@pytest.fixture
def rec(fake_artifacts: Path, tmp_path: Path) -> Recognizer:
    return Recognizer.from_artifacts(fake_artifacts, gallery=tmp_path / "g.db")


def test_embedder_reads_names_shapes_metadata_and_fingerprint(tmp_path: Path) -> None:
    path = fakes.write_tiny_facenet(tmp_path / "m.onnx")
    embedder = Embedder(path)
    assert (embedder.input_name, embedder.output_name, embedder.dim) == ("face", "embedding", 128)
    assert embedder.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()
    assert embedder.default_threshold == fakes.THRESHOLD
    assert embedder.metadata["preprocessing"] == "prewhiten"
    crops = np.random.default_rng(0).integers(0, 256, (5, 160, 160, 3), dtype=np.uint8)
    out = embedder.embed(crops)
    assert out.shape == (5, 128) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    assert embedder.embed(crops[:0]).shape == (0, 128)
    with pytest.raises(ValueError):
        embedder.embed(crops[:, :100])


def test_embedder_batches_match_single_runs(tmp_path: Path) -> None:
    crops = np.random.default_rng(1).integers(0, 256, (7, 160, 160, 3), dtype=np.uint8)
    dynamic = Embedder(fakes.write_tiny_facenet(tmp_path / "dyn.onnx"), batch_size=3)
    fixed = Embedder(fakes.write_tiny_facenet(tmp_path / "one.onnx", batch=1))
    assert fixed.batch_size == 1
    whole = dynamic.embed(crops)
    np.testing.assert_allclose(fixed.embed(crops), whole, atol=1e-5)
    np.testing.assert_allclose(np.concatenate([dynamic.embed(c[None]) for c in crops]), whole,
                               atol=1e-5)


def test_embedder_threshold_absent_or_unusable(tmp_path: Path) -> None:
    assert Embedder(fakes.write_tiny_facenet(tmp_path / "a.onnx", threshold=None)
                    ).default_threshold is None
    assert Embedder(fakes.write_tiny_facenet(tmp_path / "b.onnx", threshold="close")
                    ).default_threshold is None


def test_embedder_errors(tmp_path: Path) -> None:
    with pytest.raises(MissingArtifactError, match="nox -s export"):
        Embedder(tmp_path / "missing.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 50)
    with pytest.raises(IntegrityError, match="cannot load"):
        Embedder(corrupt)
    with pytest.raises(IntegrityError, match=r"expected \[N, 160, 160, 3\]"):
        Embedder(fakes.write_tiny_facenet(tmp_path / "wrong.onnx", height=96))


def test_detect_faces_embed(rec: Recognizer, tmp_path: Path) -> None:
    path = fakes.photo(tmp_path / "two.png", [("red", 50), ("blue", 90)])
    detections = rec.detect(path)
    assert len(detections) == 2
    faces = rec.faces(path)
    assert [f.box for f in faces] == [d.box for d in detections]
    assert faces[1].area > faces[0].area
    assert all(f.crop.shape == (160, 160, 3) and f.crop.dtype == np.uint8 for f in faces)
    vectors = rec.embed(path)
    assert vectors.shape == (2, 128)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    from PIL import Image

    pixels = np.asarray(Image.open(path).convert("RGB"))
    np.testing.assert_allclose(rec.embed(pixels), vectors)
    assert rec.embed(fakes.photo(tmp_path / "none.png", [])).shape == (0, 128)
    with pytest.raises(InputError):
        rec.detect(pixels[..., 0])


def test_faces_of_several_photos_go_through_the_embedder_in_one_batch(
        rec: Recognizer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photos = [fakes.photo(tmp_path / f"p{i}.png", [("red", 40), ("green", 40)]) for i in range(5)]
    batches: list[int] = []
    real_embed = rec.embedder.embed

    def spy(crops: np.ndarray) -> np.ndarray:
        batches.append(len(crops))
        return real_embed(crops)

    monkeypatch.setattr(rec.embedder, "embed", spy)
    results = list(rec.analyze(photos))
    assert batches == [10]
    assert [len(r.faces) for r in results] == [2] * 5


def test_enroll_and_recognize(rec: Recognizer, tmp_path: Path) -> None:
    red = rec.enroll("Red", fakes.photo(tmp_path / "red.png", [("red", 60)]))
    assert red.status == "added" and red.ok
    assert rec.enroll("Red", tmp_path / "red.png").status == "already"
    blue = rec.enroll("Blue", fakes.photo(tmp_path / "blue.jpg", [("blue", 70)]))
    assert blue.status == "added"
    group = fakes.photo(tmp_path / "group.jpg", [("blue", 40), ("yellow", 50), ("red", 80)])
    matches = rec.recognize(group)
    assert all(isinstance(m, Match) for m in matches)
    assert [m.label for m in sorted(matches, key=lambda m: m.box[0])] == [
        "Blue", "unknown", "Red"]
    unknown = next(m for m in matches if m.name is None)
    assert unknown.distance is not None and unknown.distance > fakes.THRESHOLD
    assert len(unknown.candidates) == 2
    assert rec.threshold() == (fakes.THRESHOLD, "model metadata")


def test_rgb_everywhere_red_is_not_blue(rec: Recognizer, tmp_path: Path) -> None:
    """The seed enrolled BGR and recognized RGB: a red face became a blue one. Not here."""
    rec.enroll("Red", fakes.photo(tmp_path / "red.png", [("red", 60)]))
    rec.enroll("Blue", fakes.photo(tmp_path / "blue.png", [("blue", 60)]))
    for fmt in ("jpg", "bmp", "gif", "webp"):
        matches = rec.recognize(fakes.photo(tmp_path / f"query.{fmt}", [("red", 90)]))
        assert [m.label for m in matches] == ["Red"], fmt


def test_enroll_many_reports_each_photo(rec: Recognizer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a photo")
    items = [
        ("Red", fakes.photo(tmp_path / "r1.png", [("red", 60)])),
        ("Red", fakes.photo(tmp_path / "r2.png", [("red", 40), ("green", 45)])),
        ("Nobody", fakes.photo(tmp_path / "empty.png", [])),
        ("Bad", bad),
        ("Green", fakes.photo(tmp_path / "g.png", [("green", 50)])),
        ("Tiny", fakes.photo(tmp_path / "tiny.png", [("blue", 39), ("yellow", 25)])),
        ("Blue", fakes.photo(tmp_path / "b.png", [("blue", 41), ("yellow", 25)])),
    ]
    outcomes = rec.enroll_many(items)
    assert [o.status for o in outcomes] == ["added", "multiple_faces", "no_face", "error",
                                            "added", "too_small", "added"]
    assert "39x39 px, under the 40 px" in outcomes[5].message
    assert outcomes[6].face is not None and outcomes[6].face.box[2] == 41
    assert all(str(o.path) in o.message for o in outcomes if not o.ok)
    largest = rec.enroll_many([items[1]], largest=True)[0]
    assert largest.status == "added" and largest.face is not None
    assert largest.face.box[2] == 45
    assert {p.name: p.embeddings for p in rec.gallery().people()} == {"Red": 2, "Green": 1,
                                                                      "Blue": 1}


def test_threshold_precedence(fake_artifacts: Path, tmp_path: Path) -> None:
    gallery = tmp_path / "t.db"
    with Recognizer.from_artifacts(fake_artifacts, gallery=gallery) as rec:
        assert rec.threshold() == (fakes.THRESHOLD, "model metadata")
        rec.enroll("Red", fakes.photo(tmp_path / "red.png", [("red", 60)]))
        rec.gallery().set_threshold(0.25, "test")
        assert rec.threshold() == (0.25, "calibrated, stored in the gallery")
    with Recognizer.from_artifacts(fake_artifacts, gallery=gallery, threshold=1.5) as rec:
        assert rec.threshold() == (1.5, "given")
    fakes.write_tiny_facenet(fake_artifacts / "models" / "facenet.onnx", threshold=None)
    with Recognizer.from_artifacts(fake_artifacts, gallery=tmp_path / "new.db") as rec:
        assert rec.threshold() == (FALLBACK_THRESHOLD, "built-in default")


def test_recognize_needs_a_gallery_of_the_same_model(fake_artifacts: Path, tmp_path: Path) -> None:
    photo = fakes.photo(tmp_path / "red.png", [("red", 60)])
    with Recognizer.from_artifacts(fake_artifacts, gallery=tmp_path / "missing.db") as rec, \
            pytest.raises(InputError, match="does not exist"):
        rec.recognize(photo)
    with Recognizer.from_artifacts(fake_artifacts, gallery=tmp_path / "g.db") as rec:
        rec.enroll("Red", photo)
    other = fakes.write_tiny_facenet(tmp_path / "other" / "models" / "facenet.onnx",
                                     threshold="0.7")
    with Recognizer.from_artifacts(other.parent.parent, gallery=tmp_path / "g.db") as rec, \
            pytest.raises(IntegrityError, match="enroll again"):
        rec.recognize(photo)


def test_missing_models_name_the_nox_session(tmp_path: Path) -> None:
    with pytest.raises(MissingArtifactError, match="nox -s export"):
        Recognizer.from_artifacts(tmp_path)


def _real_models() -> Path:
    root = Path(__import__("os").environ.get("FACENET_ARTIFACTS", "artifacts"))
    for name in ("facenet.onnx", "mtcnn_pnet.onnx", "mtcnn_rnet.onnx", "mtcnn_onet.onnx"):
        if not (root / "models" / name).is_file():
            pytest.skip(f"{root / 'models' / name} missing: run `nox -s export` first")
    if not (root / "source" / "5-celebrity-faces-dataset").is_dir():
        pytest.skip("the 5-celebrity photos are missing: run `nox -s fetch` first")
    return root


@pytest.mark.real
@pytest.mark.slow
def test_readme_api_example_runs(tmp_path: Path) -> None:
    real = _real_models()
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "api_example.py"), str(real.resolve()),
         str(tmp_path / "example.db")],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines, result.stderr
    # the printed line, pinned (no report holds it): the face, its distance to madonna's train
    # photos and its box
    assert lines[0] == "madonna 0.521 (57.0, 63.0, 78.0, 108.0)", lines
