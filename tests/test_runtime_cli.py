"""``facenet enroll|recognize|evaluate|gallery``: outputs, exit codes, bad input, real data."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import runtime_fakes as fakes
from helpers.cli import facenet, invoke
from PIL import Image

from toolchain.gallery import open_gallery

ROOT = Path(__file__).resolve().parents[1]



def people(db: Path) -> dict[str, int]:
    with open_gallery(db) as gallery:
        return {p.name: p.embeddings for p in gallery.people()}


def test_enroll_name_photos_folder_then_no_op(fake_artifacts: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "People"
    fakes.photo(folder / "Ada Lovelace.jpg", [("red", 60)])
    fakes.photo(folder / "Bob.png", [("blue", 70)])
    db = tmp_path / "g.db"
    code, out, err = invoke(capsys, "enroll", folder, "--gallery", db,
                            "--artifacts", fake_artifacts)
    assert code == 0, err
    assert "2 face(s) added, 0 already there, 0 skipped" in out
    assert people(db) == {"Ada Lovelace": 1, "Bob": 1}
    code, out, _ = invoke(capsys, "enroll", folder, "--gallery", db, "--artifacts", fake_artifacts)
    assert code == 0
    assert "0 face(s) added, 2 already there" in out
    assert people(db) == {"Ada Lovelace": 1, "Bob": 1}


def test_enroll_per_person_folders_and_name_option(fake_artifacts: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(3):
        fakes.photo(tmp_path / "train" / "red_person" / f"{i}.jpg", [("red", 40 + 10 * i)])
        fakes.photo(tmp_path / "train" / "green_person" / f"{i}.png", [("green", 45 + 10 * i)])
    extra = [fakes.photo(tmp_path / f"y{i}.png", [("yellow", 50 + i)]) for i in range(2)]
    db = tmp_path / "g.db"
    code, _, err = invoke(capsys, "enroll", tmp_path / "train", "--gallery", db,
                          "--artifacts", fake_artifacts)
    assert code == 0, err
    code, _, err = invoke(capsys, "enroll", "--name", "Yolanda", *extra, "--gallery", db,
                          "--artifacts", fake_artifacts)
    assert code == 0, err
    assert people(db) == {"red_person": 3, "green_person": 3, "Yolanda": 2}


def test_enroll_bad_inputs(fake_artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "People"
    fakes.photo(folder / "Good.jpg", [("red", 60)])
    fakes.photo(folder / "Gray.png", [("blue", 60)], mode="L")
    fakes.photo(folder / "Alpha.png", [("green", 60)], mode="RGBA")
    fakes.photo(folder / "Cmyk.jpg", [("yellow", 60)], mode="CMYK")
    gray16 = Image.open(fakes.photo(tmp_path / "g8.png", [("blue", 64)], mode="L"))
    Image.fromarray(np.asarray(gray16).astype(np.uint16) * 257).save(folder / "Deep.png")
    fakes.photo(folder / "Nobody.png", [])
    fakes.photo(folder / "Crowd.png", [("red", 40), ("green", 70)])
    (folder / "Notes.jpg").write_text("not a photo")
    truncated = (folder / "Good.jpg").read_bytes()
    (folder / "Cut.jpg").write_bytes(truncated[: len(truncated) // 2])
    fakes.photo(folder / "Bomb.png", [("magenta", 60)], size=(400, 400))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)
    db = tmp_path / "g.db"

    code, out, err = invoke(capsys, "enroll", folder, "--gallery", db,
                            "--artifacts", fake_artifacts)
    assert code == 1
    lines = err.strip().splitlines()
    for name, phrase in [("Nobody.png", "no face found"), ("Crowd.png", "2 faces"),
                         ("Notes.jpg", "not an image"), ("Cut.jpg", "truncated"),
                         ("Bomb.png", "decompression bomb")]:
        matching = [line for line in lines if name in line]
        assert len(matching) == 1 and phrase in matching[0], (name, lines)
    assert people(db) == {"Good": 1, "Gray": 1, "Alpha": 1, "Cmyk": 1, "Deep": 1}
    assert "5 face(s) added" in out and "5 skipped" in out

    code, out, err = invoke(capsys, "enroll", folder / "Crowd.png", "--largest",
                            "--gallery", db, "--artifacts", fake_artifacts)
    assert code == 0, err
    assert people(db)["Crowd"] == 1


def test_enroll_usage_errors(fake_artifacts: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = invoke(capsys, "enroll", tmp_path / "missing.jpg", "--artifacts", fake_artifacts)
    assert code == 2 and "does not exist" in err
    photo = fakes.photo(tmp_path / "a.png", [("red", 50)])
    code, _, err = invoke(capsys, "enroll", photo, "--name", "  ", "--artifacts", fake_artifacts)
    assert code == 2 and "--name" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = invoke(capsys, "enroll", empty, "--gallery", tmp_path / "g.db",
                          "--artifacts", fake_artifacts)
    assert code == 1 and "no photos found" in err


@pytest.fixture
def enrolled(fake_artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    db = tmp_path / "enrolled.db"
    fakes.photo(tmp_path / "People" / "Red.png", [("red", 60)])
    fakes.photo(tmp_path / "People" / "Blue.png", [("blue", 60)])
    code, _, err = invoke(capsys, "enroll", tmp_path / "People", "--gallery", db,
                          "--artifacts", fake_artifacts)
    assert code == 0, err
    return db


@pytest.fixture
def queries(tmp_path: Path) -> Path:
    folder = tmp_path / "queries"
    fakes.photo(folder / "a_group.jpg", [("blue", 50), ("yellow", 40), ("red", 80)])
    fakes.photo(folder / "b_red.png", [("red", 100)], mode="P")
    fakes.photo(folder / "c_nobody.png", [])
    return folder


def test_recognize_json(fake_artifacts: Path, enrolled: Path, queries: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = invoke(capsys, "recognize", queries, "--gallery", enrolled, "--json",
                            "--top-k", "2", "--artifacts", fake_artifacts)
    assert code == 0, err
    assert err.strip().splitlines() == [f"facenet: {queries / 'c_nobody.png'}: no face found"]
    doc = json.loads(out)
    assert doc["threshold"] == fakes.THRESHOLD and doc["threshold_source"] == "model metadata"
    assert (doc["crop"], doc["crop_source"]) == ("box", "the gallery's")
    results = {Path(r["file"]).name: r for r in doc["results"]}
    group = sorted(results["a_group.jpg"]["faces"], key=lambda f: f["box"]["x"])
    assert [f["label"] for f in group] == ["Blue", "unknown", "Red"]
    assert [f["name"] for f in group] == ["Blue", None, "Red"]
    assert all(len(f["candidates"]) == 2 for f in group)
    assert group[1]["distance"] > fakes.THRESHOLD
    assert [f["name"] for f in results["b_red.png"]["faces"]] == ["Red"]
    assert results["c_nobody.png"]["faces"] == [] and results["c_nobody.png"]["error"] is None


def test_recognize_threshold_and_centroid_options(fake_artifacts: Path, enrolled: Path,
                                                  queries: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = invoke(capsys, "recognize", queries / "a_group.jpg", "--gallery", enrolled,
                          "--json", "--threshold", "1.99", "--match", "centroid",
                          "--artifacts", fake_artifacts)
    assert code == 0
    doc = json.loads(out)
    assert doc["threshold"] == 1.99 and doc["match"] == "centroid"
    assert all(f["name"] is not None for f in doc["results"][0]["faces"])
    code, _, err = invoke(capsys, "recognize", queries, "--threshold", "-1",
                          "--gallery", enrolled, "--artifacts", fake_artifacts)
    assert code == 2 and "--threshold" in err
    code, _, err = invoke(capsys, "recognize", queries, "--match", "mean",
                          "--gallery", enrolled, "--artifacts", fake_artifacts)
    assert code == 2 and "--match" in err


def test_recognize_csv_and_table(fake_artifacts: Path, enrolled: Path, queries: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = invoke(capsys, "recognize", queries, "--gallery", enrolled, "--csv",
                          "--artifacts", fake_artifacts)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["status"] for r in rows] == ["face", "face", "face", "face", "no_face"]
    assert sorted(r["name"] for r in rows if r["status"] == "face") == [
        "Blue", "Red", "Red", "unknown"]
    assert all(float(r["distance"]) >= 0 for r in rows if r["status"] == "face")
    code, out, _ = invoke(capsys, "recognize", queries, "--gallery", enrolled,
                          "--artifacts", fake_artifacts)
    assert code == 0
    assert "Red" in out and "unknown" in out and "threshold 0.500 (model metadata)" in out
    code, _, err = invoke(capsys, "recognize", queries, "--json", "--csv",
                          "--gallery", enrolled, "--artifacts", fake_artifacts)
    assert code == 2 and "exclusive" in err


def test_recognize_bad_files_do_not_stop_the_run(fake_artifacts: Path, enrolled: Path,
                                                 queries: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    code, out, err = invoke(capsys, "recognize", bad, queries / "b_red.png", "--json",
                            "--gallery", enrolled, "--artifacts", fake_artifacts)
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and str(bad) in err
    results = json.loads(out)["results"]
    assert results[0]["error"] and results[0]["faces"] == []
    assert results[1]["faces"][0]["name"] == "Red"


def test_recognize_annotate(fake_artifacts: Path, enrolled: Path, queries: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "annotated"
    rgb = fakes.photo(tmp_path / "rgb" / "b_red.png", [("red", 100)])
    code, _, err = invoke(capsys, "recognize", queries, rgb, "--annotate", out_dir,
                          "--gallery", enrolled, "--artifacts", fake_artifacts)
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "a_group.annotated.jpg", "b_red-2.annotated.png", "b_red.annotated.png",
        "c_nobody.annotated.png"]
    original = Image.open(rgb).convert("RGB")
    drawn = Image.open(out_dir / "b_red-2.annotated.png").convert("RGB")
    assert drawn.size == original.size
    assert drawn.getpixel((300, 190)) == original.getpixel((300, 190)) == fakes.BACKGROUND
    assert original.getpixel((10, 70)) == fakes.COLORS["red"]
    assert drawn.getpixel((10, 70)) == (0, 200, 70)
    band = [drawn.getpixel((x, y)) for x in range(10, 80) for y in range(2, 19)]
    assert (0, 200, 70) in band
    assert sum(min(pixel) > 230 for pixel in band) > 20
    assert Image.open(out_dir / "a_group.annotated.jpg").size == (320, 200)


def sha256s(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_annotate_never_writes_over_an_input(fake_artifacts: Path, enrolled: Path, queries: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """``--annotate`` into the photos' own folder, which also holds a user's photo named like an
    output: every input keeps its bytes, and a rerun reads the photos but not the pictures."""
    fakes.photo(queries / "b_red.annotated.png", [("blue", 60)])
    inputs = sha256s(queries)
    photos = ["a_group.jpg", "b_red.annotated.png", "b_red.png", "c_nobody.png"]
    for _run in range(2):
        code, out, err = invoke(capsys, "recognize", queries, "--annotate", queries, "--json",
                                "--gallery", enrolled, "--artifacts", fake_artifacts)
        assert code == 0, err
        assert sorted(Path(r["file"]).name for r in json.loads(out)["results"]) == photos
        after = sha256s(queries)
        assert {name: after[name] for name in inputs} == inputs
        assert sorted(set(after) - set(inputs)) == [
            "a_group.annotated.jpg", "b_red-2.annotated.png", "b_red.annotated.annotated.png",
            "c_nobody.annotated.png"]


def test_annotate_folder_inside_the_input_folder_is_not_read(
        fake_artifacts: Path, enrolled: Path, queries: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = queries / "annotated"
    fakes.photo(out_dir / "old picture.png", [("red", 60)])
    code, out, err = invoke(capsys, "recognize", queries, "--annotate", out_dir, "--json",
                            "--gallery", enrolled, "--artifacts", fake_artifacts)
    assert code == 0, err
    assert sorted(Path(r["file"]).name for r in json.loads(out)["results"]) == [
        "a_group.jpg", "b_red.png", "c_nobody.png"]
    assert (out_dir / "b_red.annotated.png").is_file()


def test_annotated_output_named_after_a_hard_link_to_an_input_is_not_overwritten(
        fake_artifacts: Path, enrolled: Path, queries: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    photo = queries / "b_red.png"
    os.link(photo, out_dir / "b_red.annotated.png")
    before = hashlib.sha256(photo.read_bytes()).hexdigest()
    code, _, err = invoke(capsys, "recognize", photo, "--annotate", out_dir,
                          "--gallery", enrolled, "--artifacts", fake_artifacts)
    assert code == 0, err
    assert hashlib.sha256(photo.read_bytes()).hexdigest() == before
    assert (out_dir / "b_red-2.annotated.png").is_file()


def test_fatal_errors_are_one_line_with_their_code(fake_artifacts: Path, enrolled: Path,
                                                   queries: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    photo = queries / "b_red.png"
    code, _, err = invoke(capsys, "recognize", photo, "--gallery", tmp_path / "none.db",
                          "--artifacts", fake_artifacts)
    assert code == 3 and len(err.strip().splitlines()) == 1 and "does not exist" in err
    not_db = tmp_path / "notes.db"
    not_db.write_text("hello" * 100)
    code, _, err = invoke(capsys, "recognize", photo, "--gallery", not_db,
                          "--artifacts", fake_artifacts)
    assert code == 3 and "not a readable facenet gallery" in err
    assert not_db.read_text() == "hello" * 100
    code, _, err = invoke(capsys, "recognize", photo, "--gallery", enrolled,
                          "--artifacts", tmp_path / "no-artifacts")
    assert code == 6 and "nox -s export" in err and len(err.strip().splitlines()) == 1
    fakes.write_tiny_facenet(fake_artifacts / "models" / "facenet.onnx", threshold="0.7")
    before = people(enrolled)
    code, _, err = invoke(capsys, "enroll", photo, "--name", "X", "--gallery", enrolled,
                          "--artifacts", fake_artifacts)
    assert code == 4 and "enroll again into a new gallery" in err
    assert people(enrolled) == before


def _dataset(root: Path) -> Path:
    sizes = {"train": (40, 50, 60, 70), "val": (45, 65)}
    for split, sides in sizes.items():
        for person in ("red", "green", "blue"):
            for side in sides:
                fakes.photo(root / split / person / f"{side}.png", [(person, side)])
    fakes.photo(root / "val" / "green" / "nobody.png", [])
    return root


def test_evaluate_reports_and_store_threshold(fake_artifacts: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    dataset = _dataset(tmp_path / "dataset")
    db = tmp_path / "calibrated.db"
    code, out, err = invoke(capsys, "eval", "dataset", dataset, "--store-threshold",
                            "--gallery", db,
                            "--artifacts", fake_artifacts)
    assert code == 0, err
    assert "nobody.png: no face found" in err
    reports = fake_artifacts / "reports"
    doc = json.loads((reports / "evaluate.json").read_text())
    ident, ver = doc["identification"], doc["verification"]
    assert (ident["total"], ident["correct_closed"]) == (7, 6)
    assert ident["confusion"]["green"] == {"green": 2, "(no face)": 1}
    assert (ver["pairs_same"], ver["pairs_different"]) == (6 * 4, 6 * 8)
    assert ver["auc"] == pytest.approx(1.0) and ver["eer"] == pytest.approx(0.0)
    assert 0.0 < ver["best_threshold"] < 0.9 and ver["best_accuracy"] == 1.0
    markdown = (reports / "evaluate.md").read_text()
    assert "| ROC AUC | 1.0000 |" in markdown and "nobody.png" in markdown
    for name in ("evaluate_roc.png", "evaluate_distances.png"):
        with Image.open(reports / name) as chart:
            assert chart.format == "PNG" and chart.size == (800, 600)
            assert len(chart.convert("RGB").getcolors(1 << 20) or []) > 10
    assert "ROC AUC" in out and "stored threshold" in out
    with open_gallery(db) as gallery:
        assert gallery.threshold == pytest.approx(ver["best_threshold"])
        assert gallery.people() == []
    enroll_code, _, _ = invoke(capsys, "enroll", dataset / "train", "--gallery", db,
                               "--artifacts", fake_artifacts)
    assert enroll_code == 0
    code, out, _ = invoke(capsys, "recognize", dataset / "val" / "red", "--gallery", db,
                          "--json", "--artifacts", fake_artifacts)
    doc = json.loads(out)
    assert doc["threshold_source"] == "calibrated, stored in the gallery"
    assert doc["threshold"] == pytest.approx(ver["best_threshold"])


def test_evaluate_needs_train_and_val(fake_artifacts: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ds" / "train" / "a").mkdir(parents=True)
    code, _, err = invoke(capsys, "eval", "dataset", tmp_path / "ds", "--artifacts", fake_artifacts)
    assert code == 3 and "train" in err
    assert not (fake_artifacts / "reports").exists()


def test_gallery_commands(fake_artifacts: Path, enrolled: Path, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = invoke(capsys, "gallery", "list", "--gallery", enrolled)
    assert code == 0 and "Blue" in out and "Red" in out and "2 people, 2 embeddings" in out
    exported = tmp_path / "export.json"
    assert invoke(capsys, "gallery", "export", exported, "--gallery", enrolled)[0] == 0
    copy = tmp_path / "copy.db"
    code, out, _ = invoke(capsys, "gallery", "import", exported, "--gallery", copy,
                          "--artifacts", fake_artifacts)
    assert code == 0 and "imported 2 embeddings" in out
    assert people(copy) == people(enrolled)
    code, out, _ = invoke(capsys, "gallery", "import", exported, "--gallery", copy)
    assert code == 0 and "imported 0 embeddings" in out and "2 were already" in out
    code, out, err = invoke(capsys, "gallery", "export", "-", "--gallery", enrolled)
    assert code == 0 and json.loads(out) == json.loads(exported.read_text())
    assert "exported 2 embeddings to standard output" in err
    assert not Path("-").exists()

    before = exported.read_text()
    broken = tmp_path / "broken.json"
    broken.write_text(before.replace('"box": [', '"box": ["x", ', 1))
    code, _, err = invoke(capsys, "gallery", "import", broken, "--gallery", copy)
    assert code == 3 and str(broken) in err
    assert people(copy) == people(enrolled)
    assert invoke(capsys, "gallery", "import", broken, "--gallery", tmp_path / "new.db")[0] == 3
    assert not (tmp_path / "new.db").exists()

    code, out, _ = invoke(capsys, "gallery", "remove", "Red", "--gallery", copy)
    assert code == 0 and "removed 'Red' (1 embeddings)" in out
    assert people(copy) == {"Blue": 1}
    code, _, err = invoke(capsys, "gallery", "remove", "Red", "--gallery", copy)
    assert code == 3 and "no person named 'Red'" in err
    assert invoke(capsys, "gallery", "list", "--gallery", tmp_path / "nope.db")[0] == 3


def test_gallery_import_seed_database_json(fake_artifacts: Path, tmp_path: Path, queries: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from toolchain.core.preprocess import crop_face
    from toolchain.runtime.embedder import Embedder

    embedder = Embedder(fake_artifacts / "models" / "facenet.onnx")
    red = Image.open(fakes.photo(tmp_path / "red.png", [("red", 60)])).convert("RGB")
    pixels = np.asarray(red)
    box = fakes.SquareDetector().detect(pixels)[0].box
    vector = embedder.embed(crop_face(pixels, box)[None])[0] * 7.5
    seed = tmp_path / "DataBase.json"
    seed.write_text(json.dumps({"Red Person": vector.tolist()}))
    db = tmp_path / "seed.db"
    code, out, err = invoke(capsys, "gallery", "import", seed, "--gallery", db,
                            "--artifacts", fake_artifacts)
    assert code == 0, err
    assert "imported 1 embeddings (seed DataBase.json)" in out
    code, out, _ = invoke(capsys, "recognize", queries / "b_red.png", "--gallery", db,
                          "--json", "--artifacts", fake_artifacts)
    assert json.loads(out)["results"][0]["faces"][0]["name"] == "Red Person"
    code, _, err = invoke(capsys, "gallery", "import", seed, "--gallery", tmp_path / "n.db",
                          "--artifacts", tmp_path / "no-models")
    assert code == 6 and "nox -s export" in err


FORBIDDEN = ("tensorflow", "keras", "matplotlib", "cv2", "tf2onnx")


def _check_no_heavy_imports(argv: list[str], prelude: str, cwd: Path) -> None:
    script = prelude + f"""
from toolchain.cli.app import run
code = run({argv!r})
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {FORBIDDEN!r})
print(code, heavy)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=600, check=False, cwd=cwd)
    assert result.returncode == 0, result.stderr
    code, heavy = result.stdout.strip().splitlines()[-1].split(" ", 1)
    assert heavy == "[]", heavy
    assert code == "0", result.stderr


def test_recognize_imports_no_tensorflow(fake_artifacts: Path, enrolled: Path, queries: Path,
                                         tmp_path: Path) -> None:
    _check_no_heavy_imports(
        ["recognize", str(queries / "b_red.png"), "--gallery", str(enrolled), "--json",
         "--annotate", str(tmp_path / "ann"), "--artifacts", str(fake_artifacts)],
        fakes.SUBPROCESS_PRELUDE, tmp_path)


RECOGNIZE_FORBIDDEN = (*FORBIDDEN, "onnx", "fastapi", "starlette", "uvicorn", "ray", "av",
                       "openvino", "psycopg", "rich")
"""What ``facenet recognize --json`` with a pipe for stderr must not import: nothing of the
converter, the service, Ray, video decoding, OpenVINO (not the chosen runtime), PostgreSQL, nor
rich (no table, no progress bar off a terminal). pydantic is not in it: typer 0.29 coerces every
parameter with it, so any typer command imports it."""

RECOGNIZE_PACKAGES = {"toolchain.cli": {"app", "common", "main", "options", "output", "recognize"},
                      "toolchain": {"cli", "core", "gallery", "runtime", "video"}}
"""The only submodules of these packages that ``facenet recognize`` may import: no other
command's module, and none of the service, bench, convert, evaluation, batch or legacy tiers
(``toolchain.video`` for its video-argument check only)."""


def test_recognize_imports_only_its_own_path(fake_artifacts: Path, enrolled: Path,
                                             queries: Path, tmp_path: Path) -> None:
    """The start of ``facenet recognize one.jpg`` (issue 25, cold start) is its imports: a
    command module or tier that creeps into its path costs every one-photo run. The modules the
    run adds to those the test's prelude had already loaded are held to the lists above."""
    script = fakes.SUBPROCESS_PRELUDE + f"""
import json
before = set(sys.modules)
from toolchain.cli.app import run
code = run(["recognize", {str(queries / "b_red.png")!r}, "--gallery", {str(enrolled)!r},
            "--json", "--artifacts", {str(fake_artifacts)!r}])
print(code, json.dumps(sorted(set(sys.modules) - before)))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=600, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    code, listed = result.stdout.strip().splitlines()[-1].split(" ", 1)
    assert code == "0", result.stderr
    loaded = json.loads(listed)
    assert "onnxruntime" in loaded and "toolchain.cli.recognize" in loaded, loaded
    assert [m for m in loaded if m.split(".")[0] in RECOGNIZE_FORBIDDEN] == []
    for package, allowed in RECOGNIZE_PACKAGES.items():
        depth = package.count(".") + 1
        strays = {m for m in loaded if m.startswith(package + ".")
                  and m.split(".")[depth] not in allowed}
        assert not strays, f"{package}: {sorted(strays)}"


# ---- real models and photos -------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_artifacts() -> Path:
    root = Path(os.environ.get("FACENET_ARTIFACTS", "artifacts")).resolve()
    for name in ("facenet.onnx", "mtcnn_pnet.onnx", "mtcnn_rnet.onnx", "mtcnn_onet.onnx"):
        if not (root / "models" / name).is_file():
            pytest.skip(f"{root / 'models' / name} missing: run `nox -s export` first")
    if not (root / "source" / "5-celebrity-faces-dataset" / "val").is_dir():
        pytest.skip("the 5-celebrity photos are missing: run `nox -s fetch` first")
    return root


@pytest.fixture(scope="module")
def real_gallery(real_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("real") / "celebrities.db"
    train = real_artifacts / "source" / "5-celebrity-faces-dataset" / "train"
    result = facenet("enroll", train, "--largest", "--gallery", db, "--artifacts", real_artifacts)
    assert result.returncode in (0, 1), result.stderr
    skipped = [line for line in result.stderr.splitlines() if line.startswith("facenet: ")]
    small = [line for line in skipped if "--min-enroll-face" in line]
    assert all("no face found" in line for line in skipped if line not in small), skipped
    assert result.returncode == (1 if skipped else 0)
    counts = people(db)
    assert sorted(counts) == ["ben_afflek", "elton_john", "jerry_seinfeld", "madonna",
                              "mindy_kaling"]
    assert sum(counts.values()) + len(skipped) == 93
    assert len(skipped) - len(small) <= 3 and len(small) <= 12
    return db


@pytest.mark.real
@pytest.mark.slow
def test_real_recognize_val_25_of_25(real_artifacts: Path, real_gallery: Path) -> None:
    val = real_artifacts / "source" / "5-celebrity-faces-dataset" / "val"
    result = facenet("recognize", val, "--json", "--gallery", real_gallery,
                     "--artifacts", real_artifacts)
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)["results"]
    assert len(results) == 25
    right = 0
    for item in results:
        face = max(item["faces"], key=lambda f: f["box"]["width"] * f["box"]["height"])
        right += face["name"] == Path(item["file"]).parent.name
    assert right == 25


@pytest.mark.real
@pytest.mark.slow
def test_real_evaluate_writes_reports(real_artifacts: Path, tmp_path: Path) -> None:
    scratch = tmp_path / "artifacts"
    scratch.mkdir()
    (scratch / "models").symlink_to(real_artifacts / "models")
    dataset = real_artifacts / "source" / "5-celebrity-faces-dataset"
    result = facenet("eval", "dataset", dataset, "--store-threshold",
                     "--gallery", tmp_path / "cal.db", "--artifacts", scratch)
    assert result.returncode == 0, result.stderr
    reports = scratch / "reports"
    doc = json.loads((reports / "evaluate.json").read_text())
    # The README's table (default minimum enroll face, 40 px).
    assert doc["enrolled"] == 82
    assert doc["identification"]["total"] == 25
    assert doc["identification"]["accuracy_closed"] == 1.0
    verification = doc["verification"]
    assert (verification["pairs_same"], verification["pairs_different"]) == (410, 1640)
    assert round(verification["auc"], 4) == 0.9998
    assert round(verification["eer"] * 100, 2) == 0.55
    assert round(verification["eer_threshold"], 3) == 1.203
    assert round(verification["best_threshold"], 3) == 1.199
    assert round(verification["best_accuracy"] * 100, 2) == 99.51
    assert doc["crop"] == "align"
    assert (reports / "evaluate.md").read_text().startswith("# Evaluation")
    for name in ("evaluate_roc.png", "evaluate_distances.png"):
        assert Image.open(reports / name).format == "PNG"
    with open_gallery(tmp_path / "cal.db") as gallery:
        assert gallery.threshold == pytest.approx(doc["verification"]["best_threshold"])
        assert gallery.crop == "align"


@pytest.mark.real
def test_real_recognize_imports_no_tensorflow(real_artifacts: Path, real_gallery: Path,
                                              tmp_path: Path) -> None:
    photo = next((real_artifacts / "source" / "5-celebrity-faces-dataset" / "val" / "madonna")
                 .glob("*.jpg"))
    _check_no_heavy_imports(
        ["recognize", str(photo), "--gallery", str(real_gallery), "--json",
         "--artifacts", str(real_artifacts)],
        "import sys\n", ROOT)


# ---- user text in outputs, help, version, optional modules ----

HOSTILE_NAMES = ["[/]", "[red]x[/red]", "\x1b[31mEvil\x1b[0m", "=HYPERLINK(\"http://x\")",
                 "+1; Bo: 2"]
"""Person names of a gallery: rich markup, terminal escapes, spreadsheet formulas, and the
characters the old candidates cell used as separators. The name rule refuses the escape
sequence now (tests/test_gallery_names.py); a gallery written before it may hold one."""


@pytest.fixture
def hostile(fake_artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A gallery of the hostile names, one synthetic face each (sizes tell them apart): each
    enrolled by `facenet enroll --name`, the escape sequence renamed in by hand, as an older
    gallery holds it."""
    db = tmp_path / "hostile.db"
    colors = ["red", "green", "blue", "yellow", "magenta"]
    for i, name in enumerate(HOSTILE_NAMES):
        photo = fakes.photo(tmp_path / f"h{i}.png", [(colors[i], 60)])
        typed = f"older{i}" if "\x1b" in name else name
        code, _, err = invoke(capsys, "enroll", "--name", typed, photo, "--gallery", db,
                              "--artifacts", fake_artifacts)
        assert code == 0, err
        if typed != name:
            with sqlite3.connect(db) as conn:
                conn.execute("UPDATE people SET name = ? WHERE name = ?", (name, typed))
            conn.close()
    return db


def test_names_are_shown_literally_never_as_markup(fake_artifacts: Path, hostile: Path,
                                                   queries: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = invoke(capsys, "gallery", "list", "--gallery", hostile,
                            "--artifacts", fake_artifacts)
    assert code == 0, err
    assert "[/]" in out and "[red]x[/red]" in out
    assert "\x1b" not in out and "\\x1b[31mEvil\\x1b[0m" in out
    code, out, err = invoke(capsys, "recognize", queries, "--gallery", hostile,
                            "--artifacts", fake_artifacts)
    assert code == 0, err
    assert "[/]" in out and "\x1b" not in out and "\\x1b[31mEvil" in out


def test_csv_cells_are_neutralized_and_candidates_unambiguous(
        fake_artifacts: Path, hostile: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """OWASP CSV injection: a text cell starting with = + - @ tab or CR gets a leading '; the
    candidates cell is JSON, so names holding ; or : read back exactly."""
    query = fakes.photo(tmp_path / "-query.png", [("yellow", 60), ("magenta", 60)])
    code, out, err = invoke(capsys, "recognize", query, "--csv", "--top-k", "5",
                            "--gallery", hostile, "--artifacts", fake_artifacts)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["name"] for r in rows} == {"'=HYPERLINK(\"http://x\")", "'+1; Bo: 2"}
    for row in rows:
        candidates = json.loads(row["candidates"])
        assert sorted(c["name"] for c in candidates) == sorted(HOSTILE_NAMES)
        assert all(isinstance(c["distance"], float) for c in candidates)
        assert not row["file"].startswith(("=", "+", "-", "@"))


def test_control_characters_in_problem_lines_are_escaped(
        fake_artifacts: Path, enrolled: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "evil\x1b[2Jname\n.jpg"
    bad.write_text("not a photo")
    code, _, err = invoke(capsys, "recognize", bad, "--gallery", enrolled,
                          "--artifacts", fake_artifacts)
    assert code == 1
    assert "\x1b" not in err and "evil\\x1b[2Jname\\n.jpg" in err
    assert len(err.strip().splitlines()) == 1


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    code, out, _ = invoke(capsys, "--version")
    assert code == 0
    assert out.strip() == f"facenet {version('facenet-toolchain')}"


def test_help_keeps_square_brackets_and_lists_every_format(
        capsys: pytest.CaptureFixture[str]) -> None:
    from toolchain.convert.formats import FORMATS
    from toolchain.runtime.recognizer import MIN_ENROLL_FACE

    code, out, _ = invoke(capsys, "recognize", "--help")
    assert code == 0
    flat = " ".join(out.split())
    assert "?gallery=NAME) [default: <artifacts>/gallery.db]" in flat
    assert "at most this [default: the gallery's calibrated threshold" in flat
    code, out, _ = invoke(capsys, "enroll", "--help")
    assert f"[default: {MIN_ENROLL_FACE:g}," in " ".join(out.split())
    code, out, _ = invoke(capsys, "model", "export", "--help")
    assert code == 0
    listed = " ".join(out.split()).replace("- ", "-")
    for name in FORMATS:
        assert f" {name}," in listed or f" {name}, or all" in listed, name


def test_extra_for_each_optional_module_matches_pyproject() -> None:
    """Every module the missing-module message knows is installed by the extra it names, and
    that extra is the smallest one that installs it."""
    import tomllib

    from toolchain.cli.app import EXTRA_FOR_MODULE

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    distribution = {"tensorflow": "tensorflow-cpu", "keras": "tensorflow-cpu",
                    "ai_edge_litert": "ai-edge-litert"}

    def names(extra: str) -> set[str]:
        return {req.split("=")[0].split(">")[0].split("<")[0].strip() for req in extras[extra]}

    for module, extra in EXTRA_FOR_MODULE.items():
        wanted = distribution.get(module, module)
        holding = sorted((len(reqs), name) for name, reqs in extras.items()
                         if wanted in names(name))
        assert holding and holding[0][1] == extra, (module, holding)


def test_each_command_entry_builds_that_command_alone() -> None:
    """A run that names its command builds only that command's module (the start of a one-photo
    run); every entry of COMMANDS is named as its module defines it, and the whole tree lists
    them in that order."""
    import typer.main

    from toolchain.cli.app import COMMANDS, build_app, named_command

    whole = typer.main.get_command(build_app())
    assert list(whole.commands) == [name for name, _ in COMMANDS]  # type: ignore[attr-defined]
    for name, _ in COMMANDS:
        alone = typer.main.get_command(build_app(name))
        assert list(alone.commands) == [name]  # type: ignore[attr-defined]
    assert named_command(["-v", "--quiet", "recognize", "x.jpg"]) == "recognize"
    assert named_command(["model", "verify"]) == "model"
    for whole_tree in (["--help", "recognize"], ["--version"], ["recognise", "x"], [], ["-v"]):
        assert named_command(whole_tree) is None, whole_tree


# ---- warnings and per-file problems ----


def test_recognize_against_an_empty_gallery_warns(fake_artifacts: Path, enrolled: Path,
                                                  queries: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    for person in ("Red", "Blue"):
        code, _, err = invoke(capsys, "gallery", "remove", person, "--gallery", enrolled,
                              "--artifacts", fake_artifacts)
        assert code == 0, err
    code, out, err = invoke(capsys, "recognize", queries / "b_red.png", "--json",
                            "--gallery", enrolled, "--artifacts", fake_artifacts)
    assert code == 0
    assert [f["label"] for f in json.loads(out)["results"][0]["faces"]] == ["unknown"]
    assert f"facenet: warning: the gallery {enrolled} is empty" in err


def test_enrolling_a_photo_already_enrolled_as_someone_else_warns(
        fake_artifacts: Path, enrolled: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = invoke(capsys, "enroll", "--name", "Robert",
                          tmp_path / "People" / "Red.png", "--gallery", enrolled,
                          "--artifacts", fake_artifacts)
    assert code == 0, err
    assert "already in the gallery as 'Red', not added again as 'Robert'" in err
    assert err.startswith("facenet: warning: ")
    assert people(enrolled) == {"Red": 1, "Blue": 1}


def test_enroll_minimum_face_size(fake_artifacts: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    small = fakes.photo(tmp_path / "Small.png", [("red", 30)])
    db = tmp_path / "g.db"
    code, _, err = invoke(capsys, "enroll", small, "--largest", "--gallery", db,
                          "--artifacts", fake_artifacts)
    assert code == 1
    assert "the face is 30x30 px, under the 40 px short side needed to enroll" in err
    code, _, err = invoke(capsys, "enroll", small, "--min-enroll-face", "25", "--gallery", db,
                          "--artifacts", fake_artifacts)
    assert code == 0, err
    assert people(db) == {"Small": 1}


def test_crop_options_are_recorded_and_a_mismatch_is_refused(
        fake_artifacts: Path, tmp_path: Path, queries: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    fakes.photo(tmp_path / "People" / "Red.png", [("red", 60)])
    db = tmp_path / "margin.db"
    code, _, err = invoke(capsys, "enroll", tmp_path / "People", "--margin", "10%",
                          "--gallery", db, "--artifacts", fake_artifacts)
    assert code == 0, err
    with open_gallery(db) as gallery:
        assert gallery.crop == "margin=10%"
    # No crop option: the gallery's crop is used.
    code, out, err = invoke(capsys, "recognize", queries / "b_red.png", "--gallery", db,
                            "--json", "--artifacts", fake_artifacts)
    assert code == 0, err
    assert [f["name"] for f in json.loads(out)["results"][0]["faces"]] == ["Red"]
    # Another crop: refused, one line, exit 4 (integrity), unless allowed.
    code, out, err = invoke(capsys, "recognize", queries / "b_red.png", "--gallery", db,
                            "--margin", "20", "--artifacts", fake_artifacts)
    assert code == 4 and out == ""
    assert err.strip().splitlines() == [
        f"facenet: error: gallery {db} was enrolled with crop 'margin=10%', this query crops "
        "'margin=20px': embeddings of different crops are not comparable; drop the crop "
        "options to use the gallery's, or pass --allow-crop-mismatch"]
    code, _, err = invoke(capsys, "recognize", queries / "b_red.png", "--gallery", db,
                          "--margin", "20", "--allow-crop-mismatch", "--artifacts", fake_artifacts)
    assert code == 0, err
    code, _, err = invoke(capsys, "enroll", tmp_path / "People", "--margin", "wide",
                          "--gallery", db, "--artifacts", fake_artifacts)
    assert code == 2 and "neither pixels (32) nor a share of the box (20%)" in err


# ---- the global --verbose and --quiet ----


@pytest.mark.real
@pytest.mark.slow
def test_verbose_adds_debug_lines_and_quiet_keeps_warnings_only(
        tmp_path: Path, runtime_python: Path) -> None:
    """``facenet [-v|-q] recognize`` on a real photo, each run finding an optimized-graph cache
    whose recorded sha256 is off (a WARNING, then an INFO as it is rebuilt): by default warnings
    and info, no debug; ``--verbose`` adds the debug lines (the models it loaded); ``--quiet``
    keeps the warning only. The recognition itself is the same in all three. The gallery and the
    cache are the test's own (its enrollment builds the cache next to the linked models): a fresh
    tree has neither the demo gallery nor a cache yet when the test runs."""

    from helpers.real import artifacts_root, shared_data

    real = artifacts_root() / "models"
    models = tmp_path / "artifacts" / "models"
    models.mkdir(parents=True)
    for name in ("facenet.onnx", "mtcnn_pnet.onnx", "mtcnn_rnet.onnx", "mtcnn_onet.onnx"):
        (models / name).symlink_to(real / name)
    gallery = tmp_path / "obama.db"
    photo = shared_data("photos") / "obama1.jpg"
    sidecar = models / "facenet.onnx.optimized.json"

    built = facenet("enroll", "--name", "obama", *sorted(shared_data("people/obama").iterdir()),
                    "--gallery", gallery, "--artifacts", models.parent, python=runtime_python)
    assert built.returncode == 0 and sidecar.is_file(), built.stderr

    def run(*flags: str) -> tuple[str, dict[str, list[str]]]:
        recorded = json.loads(sidecar.read_text())
        recorded["optimized_sha256"] = "0" * 64
        sidecar.write_text(json.dumps(recorded))
        done = facenet(*flags, "recognize", photo, "--json", "--gallery", gallery,
                       "--artifacts", models.parent, python=runtime_python)
        assert done.returncode == 0, done.stderr
        levels: dict[str, list[str]] = {}
        for line in done.stderr.splitlines():
            levels.setdefault(line.split(" ", 1)[0], []).append(line)
        return done.stdout, levels

    plain, default = run()
    loud, verbose = run("--verbose")
    quiet_out, quiet = run("-q")
    assert plain == loud == quiet_out
    assert [f["name"] for f in json.loads(plain)["results"][0]["faces"]] == ["obama"]
    rebuilt = "facenet.onnx.optimized does not match its recorded sha256; rebuilding it"
    for levels in (default, verbose, quiet):
        assert levels["WARNING"] == [f"WARNING toolchain.runtime.ort_options: {rebuilt}"]
    assert set(default) == {"WARNING", "INFO"} and len(default["INFO"]) == 1
    assert "saved the optimized graph of facenet.onnx" in default["INFO"][0]
    assert set(verbose) == {"WARNING", "INFO", "DEBUG"}
    assert any("loaded" in line and "facenet.onnx" in line for line in verbose["DEBUG"])
    assert verbose["INFO"] == default["INFO"]
    assert set(quiet) == {"WARNING"}
