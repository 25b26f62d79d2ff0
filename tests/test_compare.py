"""``Recognizer.compare`` / ``facenet compare``, and the margin and runner-up of ``recognize``.

Synthetic photos (coloured squares, see :mod:`runtime_fakes`) for the logic; the real shared
photos for the decision the issue asks for (Obama vs Obama: same, Obama vs Biden: different).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import runtime_fakes as fakes
from helpers.cli import invoke
from helpers.real import SHARED_DATA, artifacts_root, shared_data

from toolchain.core.errors import InputError
from toolchain.runtime.faces import CropSource, ThresholdSource
from toolchain.runtime.recognizer import Recognizer

PEOPLE = SHARED_DATA / "people"



# ---- Recognizer.compare ----


def test_compare_same_and_different_without_creating_a_gallery(fake_artifacts: Path,
                                                               tmp_path: Path) -> None:
    red = fakes.photo(tmp_path / "red.png", [("red", 60)])
    red2 = fakes.photo(tmp_path / "red2.png", [("red", 90)], size=(400, 300))
    blue = fakes.photo(tmp_path / "blue.png", [("blue", 60)])
    gallery = tmp_path / "never.db"
    with Recognizer.from_artifacts(fake_artifacts, gallery=gallery) as rec:
        same = rec.compare(red, red2)
        different = rec.compare(red, blue)
    assert not gallery.exists()
    assert same.same and same.decision == "same" and same.distance < 0.05
    assert same.threshold == fakes.THRESHOLD and same.threshold_source == ThresholdSource.MODEL
    assert same.margin == pytest.approx(fakes.THRESHOLD - same.distance)
    assert same.a.source == str(red) and same.b.source == str(red2)
    assert same.a.box == (10.0, 20.0, 60.0, 60.0) and same.b.box == (10.0, 20.0, 90.0, 90.0)
    assert (same.a.number, same.a.faces) == (1, 1)
    assert not different.same and different.decision == "different"
    assert different.distance > fakes.THRESHOLD and different.margin < 0


def test_compare_distance_is_euclidean_between_the_unit_embeddings(fake_artifacts: Path,
                                                                    tmp_path: Path) -> None:
    red = fakes.photo(tmp_path / "red.png", [("red", 60)])
    green = fakes.photo(tmp_path / "green.png", [("green", 60)])
    with Recognizer.from_artifacts(fake_artifacts, gallery=tmp_path / "g.db") as rec:
        a, b = rec.embed(red)[0], rec.embed(green)[0]
        result = rec.compare(red, green)
    # |a - b|^2 = 2 - 2 a.b for unit vectors
    assert result.distance == pytest.approx(np.sqrt(2 - 2 * float(a @ b)), abs=1e-4)


def test_compare_picks_the_largest_face_or_the_numbered_one(fake_artifacts: Path,
                                                            tmp_path: Path) -> None:
    group = fakes.photo(tmp_path / "group.png", [("red", 40), ("blue", 80)], size=(400, 200))
    red = fakes.photo(tmp_path / "red.png", [("red", 60)])
    with Recognizer.from_artifacts(fake_artifacts, gallery=tmp_path / "g.db") as rec:
        numbers = {face.box[2]: n for n, face in enumerate(rec.faces(group), 1)}
        largest = rec.compare(group, red)
        chosen = rec.compare(red, group, face_b=numbers[40.0])
    assert largest.a.box[2] == 80 and largest.a.faces == 2 and not largest.same
    assert chosen.b.box[2] == 40 and chosen.b.number == numbers[40.0] and chosen.same


def test_compare_threshold_given_then_gallery_then_model(fake_artifacts: Path,
                                                         tmp_path: Path) -> None:
    red = fakes.photo(tmp_path / "red.png", [("red", 60)])
    blue = fakes.photo(tmp_path / "blue.png", [("blue", 60)])
    gallery = tmp_path / "g.db"
    with Recognizer.from_artifacts(fake_artifacts, gallery=gallery) as rec:
        rec.enroll("Red", red)
        rec.gallery().set_threshold(1.99, "test")
        stored = rec.compare(red, blue)
    assert (stored.threshold, stored.threshold_source) == (1.99, ThresholdSource.GALLERY)
    assert stored.same
    with Recognizer.from_artifacts(fake_artifacts, gallery=gallery, threshold=0.01) as rec:
        given = rec.compare(red, blue)
    assert (given.threshold, given.threshold_source) == (0.01, ThresholdSource.GIVEN)
    assert not given.same


def test_compare_refuses_a_photo_without_that_face(fake_artifacts: Path, tmp_path: Path) -> None:
    red = fakes.photo(tmp_path / "red.png", [("red", 60)])
    empty = fakes.photo(tmp_path / "empty.png", [])
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a photo")
    with Recognizer.from_artifacts(fake_artifacts, gallery=tmp_path / "g.db") as rec:
        with pytest.raises(InputError, match=r"empty\.png: no face found"):
            rec.compare(red, empty)
        with pytest.raises(InputError, match=r"notes\.jpg: not an image"):
            rec.compare(notes, red)
        with pytest.raises(InputError, match=r"red\.png: no face number 2: 1 face\(s\) found"):
            rec.compare(red, red, face_a=2)
        with pytest.raises(InputError, match="no face number 0"):
            rec.compare(red, red, face_b=0)
        pixels = np.full((100, 100, 3), 128, np.uint8)
        with pytest.raises(InputError, match="image B: no face found"):
            rec.compare(red, pixels)


# ---- facenet compare ----


def test_compare_command_json_table_and_exit_codes(fake_artifacts: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    red = fakes.photo(tmp_path / "red.png", [("red", 60)])
    blue = fakes.photo(tmp_path / "blue.png", [("blue", 60)])
    code, out, err = invoke(capsys, "compare", red, blue, "--json", "--artifacts", fake_artifacts)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["decision"] == "different" and doc["threshold"] == fakes.THRESHOLD
    assert doc["threshold_source"] == "model metadata"
    assert doc["margin"] == pytest.approx(fakes.THRESHOLD - doc["distance"], abs=1e-5)
    assert doc["a"] == {"source": str(red), "face": 1, "faces": 1,
                        "box": {"x": 10.0, "y": 20.0, "width": 60.0, "height": 60.0},
                        "confidence": 0.99}
    code, out, err = invoke(capsys, "compare", red, red, "--threshold", "0.3",
                            "--artifacts", fake_artifacts)
    assert code == 0, err
    assert "threshold 0.300 (given)" in out and "same person" in out
    assert not (fake_artifacts / "gallery.db").exists()

    empty = fakes.photo(tmp_path / "empty.png", [])
    code, _, err = invoke(capsys, "compare", red, empty, "--artifacts", fake_artifacts)
    assert code == 3 and err.strip() == f"facenet: error: {empty}: no face found"
    code, _, err = invoke(capsys, "compare", red, blue, "--face-b", "3",
                          "--artifacts", fake_artifacts)
    assert code == 3 and "blue.png: no face number 3" in err and len(err.splitlines()) == 1
    code, _, err = invoke(capsys, "compare", red, blue, "--face-a", "0",
                          "--artifacts", fake_artifacts)
    assert code == 2 and "--face-a" in err
    code, _, err = invoke(capsys, "compare", red, tmp_path, "--artifacts", fake_artifacts)
    assert code == 2 and "is a directory" in err


def test_help_lists_the_commands_by_audience_on_one_screen(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = invoke(capsys, "--help")
    commands = [line.split()[0] for line in out.split("Commands:", 1)[1].splitlines()
                if line.startswith("  ") and not line.startswith("   ")]
    assert code == 0
    assert commands == ["enroll", "recognize", "watch", "compare", "gallery", "batch", "serve",
                        "model", "eval", "bench"]
    assert len(out.splitlines()) <= 30, "facenet --help fits on one screen"


# ---- recognize: margin and runner-up ----


@pytest.fixture
def enrolled(fake_artifacts: Path, tmp_path: Path) -> Path:
    db = tmp_path / "enrolled.db"
    with Recognizer.from_artifacts(fake_artifacts, gallery=db) as rec:
        for name, color in (("Red", "red"), ("Blue", "blue"), ("Green", "green")):
            assert rec.enroll(name, fakes.photo(tmp_path / f"{name}.png", [(color, 60)])).ok
    return db


def test_match_carries_margin_and_runner_up(fake_artifacts: Path, enrolled: Path,
                                            tmp_path: Path) -> None:
    query = fakes.photo(tmp_path / "q.png", [("red", 70), ("yellow", 70)])
    with Recognizer.from_artifacts(fake_artifacts, gallery=enrolled, top_k=3) as rec:
        wide = sorted(rec.recognize(query), key=lambda m: m.box[0])
    with Recognizer.from_artifacts(fake_artifacts, gallery=enrolled, top_k=1) as rec:
        narrow = sorted(rec.recognize(query), key=lambda m: m.box[0])
    for full, one in zip(wide, narrow, strict=True):
        assert full.distance is not None and full.margin is not None
        assert full.margin == pytest.approx(fakes.THRESHOLD - full.distance)
        assert full.runner_up == full.candidates[1]
        assert full.runner_up.name != full.candidates[0].name
        assert len(one.candidates) == 1 and one.runner_up == full.runner_up
        assert one.margin == pytest.approx(full.margin)
    red, yellow = wide
    assert red.name == "Red" and red.margin is not None and red.margin > 0
    assert yellow.name is None and yellow.margin is not None and yellow.margin < 0


def test_runner_up_is_none_with_one_person(fake_artifacts: Path, tmp_path: Path) -> None:
    red = fakes.photo(tmp_path / "red.png", [("red", 60)])
    with Recognizer.from_artifacts(fake_artifacts, gallery=tmp_path / "one.db") as rec:
        rec.enroll("Red", red)
        (match,) = rec.recognize(red)
    assert match.name == "Red" and match.runner_up is None
    assert match.margin == pytest.approx(fakes.THRESHOLD - (match.distance or 0.0))


def test_recognize_outputs_margin_and_runner_up(fake_artifacts: Path, enrolled: Path,
                                                tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    query = fakes.photo(tmp_path / "q.png", [("red", 70)])
    nobody = fakes.photo(tmp_path / "nobody.png", [])
    code, out, err = invoke(capsys, "recognize", query, "--json", "--top-k", "1",
                            "--gallery", enrolled, "--artifacts", fake_artifacts)
    assert code == 0, err
    (face,) = json.loads(out)["results"][0]["faces"]
    assert face["name"] == "Red" and len(face["candidates"]) == 1
    assert face["margin"] == pytest.approx(fakes.THRESHOLD - face["distance"], abs=1e-5)
    assert face["runner_up"]["name"] in ("Blue", "Green")
    assert face["runner_up"]["distance"] > face["distance"]

    code, out, err = invoke(capsys, "recognize", query, nobody, "--csv", "--gallery", enrolled,
                            "--artifacts", fake_artifacts)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["status"] for r in rows] == ["face", "no_face"]
    assert float(rows[0]["margin"]) == pytest.approx(face["margin"], abs=1e-4)
    assert rows[0]["runner_up"] == face["runner_up"]["name"]
    assert float(rows[0]["runner_up_distance"]) == pytest.approx(
        face["runner_up"]["distance"], abs=1e-4)
    assert all(v is not None for v in rows[1].values())

    code, out, err = invoke(capsys, "recognize", query, "--gallery", enrolled,
                            "--artifacts", fake_artifacts)
    assert code == 0, err
    assert "margin" in out and "runner-up" in out
    assert f"+{face['margin']:.3f}" in out


# ---- real photos ----


@pytest.fixture
def real_recognizer(tmp_path: Path) -> Recognizer:
    models = artifacts_root() / "models"
    if not (models / "facenet.onnx").exists():
        pytest.skip(f"{models / 'facenet.onnx'} missing: run `nox -s export` first")
    shared_data("people")
    return Recognizer.from_artifacts(artifacts_root(), gallery=tmp_path / "none.db")


@pytest.mark.real
def test_real_photos_same_and_different(real_recognizer: Recognizer) -> None:
    with real_recognizer as rec:
        same = rec.compare(PEOPLE / "obama" / "obama.jpg", PEOPLE / "obama" / "obama2.jpg")
        different = rec.compare(PEOPLE / "obama" / "obama.jpg", PEOPLE / "biden" / "biden.jpg")
    assert same.threshold_source == ThresholdSource.MODEL
    assert (same.crop, same.crop_source) == ("align", CropSource.MODEL)
    assert same.decision == "same" and same.distance == pytest.approx(0.487, abs=0.01)
    assert different.decision == "different"
    assert different.distance == pytest.approx(1.463, abs=0.01)


@pytest.mark.real
def test_real_photos_with_the_seed_crop(real_recognizer: Recognizer) -> None:
    rec = Recognizer(real_recognizer.detector, real_recognizer.embedder, crop="box")
    same = rec.compare(PEOPLE / "obama" / "obama.jpg", PEOPLE / "obama" / "obama2.jpg")
    different = rec.compare(PEOPLE / "obama" / "obama.jpg", PEOPLE / "biden" / "biden.jpg")
    assert (same.crop, same.crop_source) == ("box", CropSource.GIVEN)
    assert same.distance == pytest.approx(0.464, abs=0.01)
    assert different.distance == pytest.approx(1.402, abs=0.01)
