"""The bad-input corpus: every command on broken, hostile and unusual files.

The machinery lives in :mod:`helpers.corpus`; the cases of one area may live in a
``helpers/corpus_*.py`` module imported here. Every case is generated (small files, or real face
photos transformed) inside a per-test workspace holding an ``artifacts/`` tree (models symlinked to
one session copy of the exported ONNX models, a gallery copied from one enrolled with a real photo)
and an ``inputs/`` folder. Each refused case asserts:

- the documented exit code (:mod:`toolchain.core.errors`; 1 for a run in which some photos failed,
  2 for a command-line usage error);
- ONE error line on stderr that names the file and the problem, and no ``Traceback`` (log
  records may accompany it; anything else on stderr fails a strict case);
- nothing in the workspace (artifacts, gallery, inputs) changed, appeared or was half-written
  (every file hashed before and after; a gallery compared by its SQL dump as well).

Photo variants that must WORK (grayscale, RGBA, CMYK, 16-bit, EXIF-rotated, animated GIF, 20+
faces, non-ASCII names) assert the faces found instead. Runtime cases need the exported models
(``nox -s export``) and skip with that reason if they are missing; legacy ``recover`` cases need
``FACENET_LEGACY_PYTHON``; weights cases need the recovered npz (``nox -s recover``).
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.allowances import read_only_as_root
from helpers.cli import facenet
from helpers.corpus import (
    CASES,
    CROWD_CELL,
    ENROLLED,
    MARKS,
    RECOVER,
    Command,
    Outcome,
    Store,
    Workspace,
    _store_for,
    assert_refused,
    broken_h5,
    case,
    crowd_image,
    diff,
    error_lines,
    face_photo,
    garbage_lambda,
    jpeg_bytes,
    no_face_image,
    other_lambda,
    other_model_gallery,
    png_bomb,
    read_only_runner,
    real_file,
    run,
    snapshot,
    tiny,
    wrong_input_onnx,
)
from helpers.legacy_h5 import trap_function
from PIL import Image

from toolchain.core.boxes import iou

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


# ---- inspect (modern env, no TensorFlow) ----

def inspect_case(variant: str) -> None:
    @case(f"inspect-{variant}")
    def _setup(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
        path, phrase = broken_h5(ws, variant)
        return partial(facenet, "model", "inspect", path), Outcome(3, path.name, (phrase,))


for _variant in ("not_hdf5", "truncated", "no_model_config", "config_not_json",
                 "weight_wrong_shape", "no_model_weights"):
    inspect_case(_variant)


@case("inspect-empty-file")
def _inspect_empty(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    path = ws.photo("empty.h5", data=b"")
    return partial(facenet, "model", "inspect", path), Outcome(3, path.name, ("not an HDF5 file",))


@case("inspect-lambda-other-operation")
def _inspect_other_op(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    path = tiny(ws, function=other_lambda("lambda inputs, scale: inputs[0] - inputs[1] * scale"))
    return partial(facenet, "model", "inspect", path), Outcome(5, "'ScaleSum'", ("differ",))


@case("inspect-lambda-unknown-bytecode")
def _inspect_garbage(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    path = tiny(ws, function=garbage_lambda())
    return (partial(facenet, "model", "inspect", path),
            Outcome(5, "'ScaleSum'", ("not a marshaled",)))


@case("inspect-booby-trap-lambda")
def _inspect_trap(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    sentinel = ws.root / "SENTINEL"
    path = tiny(ws, function=trap_function(sentinel))
    return (partial(facenet, "model", "inspect", "--json", path),
            Outcome(5, "'ScaleSum'", ("refus",), sentinel=sentinel))


@case("inspect-missing-path")
def _inspect_missing(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    path = ws.inputs / "no such model.h5"
    return partial(facenet, "model", "inspect", path), Outcome(3, path.name, ("no such file",))


@case("inspect-directory")
def _inspect_directory(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    path = ws.inputs / "a folder.h5"
    path.mkdir()
    return (partial(facenet, "model", "inspect", path),
            Outcome(3, path.name, ("not a regular file",)))


@case("inspect-non-ascii-name")
def _inspect_non_ascii(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    path = ws.photo("mödel ñame 名前.h5", data=b"plain text, not HDF5\n")
    return partial(facenet, "model", "inspect", path), Outcome(3, path.name, ("not an HDF5 file",))


# ---- recover (legacy env, run as a subprocess) ----

def recover(ws: Workspace, *args: str | Path) -> subprocess.CompletedProcess[str]:
    python = os.environ["FACENET_LEGACY_PYTHON"]
    return run([str(RECOVER), "--artifacts", str(ws.artifacts), *map(str, args)],
               python=python, timeout=600)


@case("recover-booby-trap-lambda", needs="legacy")
def _recover_trap(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    sentinel = ws.root / "SENTINEL"
    path = tiny(ws, function=trap_function(sentinel))
    return (partial(recover, ws, "--h5", path),
            Outcome(5, "'ScaleSum'", ("refus",), sentinel=sentinel))


@case("recover-lambda-other-operation", needs="legacy")
def _recover_other_op(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    path = tiny(ws, function=other_lambda("lambda inputs, scale: inputs[0] * scale"))
    return partial(recover, ws, "--h5", path), Outcome(5, "'ScaleSum'", ("differ",))


@case("recover-lambda-unknown-bytecode", needs="legacy")
def _recover_garbage(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    path = tiny(ws, function=garbage_lambda())
    return partial(recover, ws, "--h5", path), Outcome(5, "'ScaleSum'", ("not a marshaled",))


def recover_case(variant: str) -> None:
    @case(f"recover-{variant}", needs="legacy")
    def _setup(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
        path, phrase = broken_h5(ws, variant)
        return (partial(recover, ws, "--h5", path, "--skip-reference"),
                Outcome(3, path.name, (phrase,)))


for _variant in ("not_hdf5", "truncated", "no_model_config", "weight_wrong_shape"):
    recover_case(_variant)


@case("recover-directory", needs="legacy")
def _recover_directory(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    path = ws.inputs / "folder.h5"
    path.mkdir()
    return partial(recover, ws, "--h5", path), Outcome(3, path.name, ("directory",))


# ---- photos (recognize / enroll on the exported ONNX models) ----

def photo_case(name: str, filename: str, make: Callable[[], bytes], phrase: str,
               command: str = "recognize") -> None:
    @case(f"{command}-{name}", needs="models")
    def _setup(ws: Workspace, store: Store | None) -> tuple[Command, Outcome]:
        assert store is not None
        ws.runtime(store)
        path = ws.photo(filename, data=make())
        return (partial(facenet, command, path, "--artifacts", ws.artifacts),
                Outcome(1, path.name, (phrase,), strict=command == "recognize"))


photo_case("zero-bytes", "empty.jpg", lambda: b"", "empty file")
photo_case("text-named-jpg", "notes.jpg", lambda: b"just some text\n" * 20, "not an image")
photo_case("truncated-jpeg", "cut.jpg", lambda: jpeg_bytes(face_photo())[:4000], "truncated")
photo_case("png-decompression-bomb", "bomb.png", png_bomb, "decompression bomb")
photo_case("non-ascii-name", "brökèn fïlé 照片.jpg", lambda: b"\x00\x01 text", "not an image")
photo_case("truncated-jpeg", "Ada.jpg", lambda: jpeg_bytes(face_photo())[:3000], "truncated",
           command="enroll")
photo_case("photo-without-face", "Nobody.jpg", lambda: jpeg_bytes(no_face_image()),
           "no face found", command="enroll")
photo_case("photo-with-25-faces", "Crowd.jpg", lambda: jpeg_bytes(crowd_image()),
           "faces; use --largest", command="enroll")
photo_case("png-decompression-bomb", "Bomb.png", png_bomb, "decompression bomb",
           command="enroll")


# ---- models ----

def model_case(name: str, target: str, mutate: Callable[[bytes], bytes] | None, code: int,
               phrase: str) -> None:
    @case(f"model-{name}", needs="models")
    def _setup(ws: Workspace, store: Store | None) -> tuple[Command, Outcome]:
        assert store is not None
        ws.runtime(store)
        path = ws.models / target
        if mutate is None:
            path.unlink()
        else:
            ws.replace(path, mutate((store.models / target).read_bytes()))
        photo = ws.photo("face.jpg", face_photo(), quality=95)
        return (partial(facenet, "recognize", photo, "--artifacts", ws.artifacts),
                Outcome(code, str(path), (phrase,)))


model_case("facenet-missing", "facenet.onnx", None, 6, "nox -s export")
model_case("facenet-truncated", "facenet.onnx", lambda d: d[: len(d) // 3], 4, "cannot load")
model_case("facenet-wrong-input-shape", "facenet.onnx", lambda _d: wrong_input_onnx(), 4,
           "expected [N, 160, 160, 3]")
model_case("mtcnn-onet-truncated", "mtcnn_onet.onnx", lambda d: d[: len(d) // 2], 4,
           "not a loadable ONNX model")
model_case("mtcnn-pnet-missing", "mtcnn_pnet.onnx", None, 6, "nox -s export")


# ---- galleries ----

def make_text(path: Path) -> None:
    path.write_text("this is a text file, not a database\n" * 50)


def make_random(path: Path) -> None:
    path.write_bytes(np.random.default_rng(3).bytes(4096))


def make_foreign_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE notes (x); INSERT INTO notes VALUES (1);")
    conn.close()


def make_nothing(path: Path) -> None:
    assert not path.exists()


def make_directory(path: Path) -> None:
    path.mkdir()


def gallery_case(name: str, command: str, make: Callable[[Path], None], code: int,
                 phrase: str) -> None:
    @case(f"gallery-{name}-{command}", needs="models")
    def _setup(ws: Workspace, store: Store | None) -> tuple[Command, Outcome]:
        assert store is not None
        ws.link_models(store)
        make(ws.gallery)
        photo = ws.photo("Madonna.jpg", face_photo("madonna"), quality=95)
        return (partial(facenet, command, photo, "--artifacts", ws.artifacts),
                Outcome(code, str(ws.gallery), (phrase,)))


gallery_case("not-sqlite", "recognize", make_text, 3, "not a readable facenet gallery")
gallery_case("not-sqlite", "enroll", make_random, 3, "not a readable facenet gallery")
gallery_case("foreign-sqlite", "recognize", make_foreign_sqlite, 3, "not a facenet gallery")
gallery_case("other-model", "recognize", other_model_gallery, 4, "different models")
gallery_case("other-model", "enroll", other_model_gallery, 4, "different models")
gallery_case("missing", "recognize", make_nothing, 3, "does not exist")
gallery_case("directory", "recognize", make_directory, 3, "is a directory")


@case("gallery-read-only-enroll", needs="models")
def _gallery_read_only(ws: Workspace, store: Store | None) -> tuple[Command, Outcome]:
    assert store is not None
    ws.runtime(store)
    runner = read_only_runner()
    ws.gallery.chmod(0o444)
    photo = ws.photo("Madonna.jpg", face_photo("madonna"), quality=95)
    return (partial(facenet, "enroll", photo, "--artifacts", ws.artifacts, preexec=runner),
            Outcome(3, str(ws.gallery), ("cannot write",)))


# ---- paths on the command line ----

@case("usage-recognize-missing-photo")
def _usage_recognize(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    path = ws.inputs / "gone photo.jpg"
    return (partial(facenet, "recognize", path, "--artifacts", ws.artifacts),
            Outcome(2, path.name, ("does not exist",), strict=False))


@case("usage-enroll-missing-photo")
def _usage_enroll(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    path = ws.inputs / "Zoë Ådams.jpg"
    return (partial(facenet, "enroll", path, "--artifacts", ws.artifacts),
            Outcome(2, path.name, ("does not exist",), strict=False))


@case("usage-gallery-import-directory")
def _usage_import(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    return (partial(facenet, "gallery", "import", ws.inputs, "--artifacts", ws.artifacts),
            Outcome(2, str(ws.inputs), ("is a directory",), strict=False))


@case("usage-evaluate-file-not-folder")
def _usage_evaluate(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    path = ws.photo("dataset.txt", data=b"x")
    return (partial(facenet, "eval", "dataset", path, "--artifacts", ws.artifacts),
            Outcome(2, path.name, ("is a file",), strict=False))


# ---- weights and checksums: `facenet model verify` / `facenet model checksums` ----

def weights_tree(ws: Workspace) -> Path:
    """``artifacts/weights``: every real npz symlinked, the manifest copied (editable)."""
    source = real_file("weights/manifest.json", "run `nox -s recover` first").parent
    target = ws.artifacts / "weights"
    target.mkdir()
    for path in source.glob("*.npz"):
        (target / path.name).symlink_to(path)
    shutil.copyfile(source / "manifest.json", target / "manifest.json")
    return target


def flip_byte(ws: Workspace, path: Path, offset: int = 4096) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    ws.replace(path, bytes(data))


def verify(ws: Workspace, artifacts: Path | None = None) -> Command:
    return partial(facenet, "model", "verify", "--artifacts", artifacts or ws.artifacts)


@case("verify-npz-hash-mismatch", needs="weights")
def _verify_flipped(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    target = weights_tree(ws) / "Block17_3_Conv2d_1x1.npz"
    flip_byte(ws, target)
    return verify(ws), Outcome(4, str(target), ("does not match manifest.json", "Block17_3"))


@case("verify-npz-missing", needs="weights")
def _verify_missing_npz(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    target = weights_tree(ws) / "Mixed_6a_Branch_0_Conv2d_1a_3x3.npz"
    target.unlink()
    return verify(ws), Outcome(4, str(target), ("missing",))


@case("verify-npz-unlisted", needs="weights")
def _verify_extra_npz(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    extra = weights_tree(ws) / "Ghost_Layer.npz"
    np.savez(extra, kernel=np.zeros((1, 1), np.float32))
    return verify(ws), Outcome(4, str(extra), ("not listed in manifest.json",))


@case("verify-manifest-missing", needs="weights")
def _verify_manifest_missing(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    manifest = weights_tree(ws) / "manifest.json"
    manifest.unlink()
    return verify(ws), Outcome(4, str(manifest), ("nox -s recover",))


@case("verify-manifest-not-json", needs="weights")
def _verify_manifest_bad(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    manifest = weights_tree(ws) / "manifest.json"
    manifest.write_text('{"layers": [')
    return verify(ws), Outcome(4, str(manifest), ("not a readable JSON manifest",))


@case("verify-sums-malformed")
def _verify_sums_bad(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    sums = ws.artifacts / "SHA256SUMS"
    sums.write_text("not a checksum line\n")
    return verify(ws), Outcome(4, str(sums), ("line 1 is not",))


@case("verify-artifacts-missing")
def _verify_no_artifacts(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    missing = ws.root / "nowhere"
    return verify(ws, missing), Outcome(6, str(missing), ("does not exist", "run `nox`"))


@case("verify-model-truncated", needs="models")
def _verify_model_truncated(ws: Workspace, store: Store | None) -> tuple[Command, Outcome]:
    assert store is not None
    ws.link_models(store)
    proc = facenet("model", "checksums", "--artifacts", ws.artifacts)
    assert proc.returncode == 0, proc.stderr
    target = ws.models / "mtcnn_rnet.onnx"
    ws.replace(target, target.read_bytes()[:1000])
    return verify(ws), Outcome(4, str(target), ("does not match SHA256SUMS",))


@case("checksums-refuses-tampered-weights", needs="weights")
def _checksums_tampered(ws: Workspace, _store: Store | None) -> tuple[Command, Outcome]:
    target = weights_tree(ws) / "Conv2d_4b_3x3.npz"
    flip_byte(ws, target, 200)
    return (partial(facenet, "model", "checksums", "--artifacts", ws.artifacts),
            Outcome(4, str(target), ("not writing",)))




for _area in sorted((Path(__file__).parent / "helpers").glob("corpus_*.py")):
    importlib.import_module(f"helpers.{_area.stem}")  # registers that area's cases


@read_only_as_root
@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=MARKS[CASES[name].needs]) for name in sorted(CASES)]
)
def test_refused(name: str, ws: Workspace, request: pytest.FixtureRequest) -> None:
    command, outcome = CASES[name].setup(ws, _store_for(CASES[name].needs, request))
    before = snapshot(ws.root)
    proc = command()
    assert_refused(proc, outcome.code, outcome.names, outcome.phrases, outcome.strict)
    if outcome.sentinel is not None:
        assert not outcome.sentinel.exists(), "the booby-trapped code was executed"
    after = snapshot(ws.root)
    assert after == before, f"workspace changed: {diff(before, after)}"
    leftovers = [p for p in ws.root.rglob(".*") if p.is_file()]
    assert not leftovers, f"temporary files left behind: {leftovers}"


# --------------------------------------------------------------------------------------------
# Unusual photos that must WORK (converted, rotated, first frame, many faces, no face)
# --------------------------------------------------------------------------------------------


def exif_rotated(face: Image.Image) -> tuple[Image.Image, dict[str, Any]]:
    """Pixels stored turned 90 degrees, EXIF Orientation 6 saying how to turn them upright."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return face.transpose(Image.Transpose.ROTATE_90), {"exif": exif.tobytes(), "quality": 95}


def rgba(face: Image.Image) -> tuple[Image.Image, dict[str, Any]]:
    pixels = np.asarray(face.convert("RGBA")).copy()
    pixels[:12, :, 3] = 0
    return Image.fromarray(pixels), {}


def sixteen_bit(face: Image.Image) -> tuple[Image.Image, dict[str, Any]]:
    levels = np.asarray(face.convert("L")).astype(np.uint16) * 257
    image = Image.fromarray(levels)
    assert image.mode.startswith("I;16")
    return image, {}


def animated(face: Image.Image) -> tuple[Image.Image, dict[str, Any]]:
    blank = Image.new("RGB", face.size, (0, 0, 0)).quantize(256)
    return face.quantize(256), {"save_all": True, "append_images": [blank], "duration": 100,
                                "loop": 0}


VARIANTS: dict[str, tuple[str, Callable[[Image.Image], tuple[Image.Image, dict[str, Any]]]]] = {
    "grayscale": ("gray.jpg", lambda f: (f.convert("L"), {"quality": 95})),
    "rgba-transparent": ("rgba.png", rgba),
    "cmyk-jpeg": ("cmyk.jpg", lambda f: (f.convert("CMYK"), {"quality": 95})),
    "16-bit-png": ("deep.png", sixteen_bit),
    "exif-rotated": ("rotated.jpg", exif_rotated),
    "animated-gif": ("anim.gif", animated),
    "palette-png": ("palette.png", lambda f: (f.quantize(64), {})),
}
"""Photo variants of the enrolled face: each must be recognized, box in the upright frame."""


def recognize_json(ws: Workspace, *paths: Path) -> tuple[subprocess.CompletedProcess[str],
                                                          dict[str, Any]]:
    proc = facenet("recognize", "--json", *paths, "--artifacts", ws.artifacts)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc, json.loads(proc.stdout) if proc.stdout.strip() else {}


@pytest.mark.real
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_photo_variant_is_recognized(variant: str, ws: Workspace, store: Store) -> None:
    ws.runtime(store)
    name, transform = VARIANTS[variant]
    image, options = transform(face_photo())
    path = ws.photo(name, image, **options)
    before = snapshot(ws.root)

    proc, out = recognize_json(ws, path)

    assert proc.returncode == 0, proc.stderr
    faces = out["results"][0]["faces"]
    assert len(faces) == 1, faces
    assert faces[0]["name"] == ENROLLED
    upright_width, upright_height = face_photo().size
    box = faces[0]["box"]
    x, y, w, h = box["x"], box["y"], box["width"], box["height"]
    assert x + w <= upright_width + 1 and y + h <= upright_height + 1, "box not in upright frame"
    assert iou((x, y, w, h), store.box) >= 0.85, (box, store.box)
    assert snapshot(ws.root) == before


@pytest.mark.real
def test_exif_rotation_matters(ws: Workspace, store: Store) -> None:
    """Control for the EXIF case: the same turned pixels without the tag give another box."""
    ws.runtime(store)
    turned, _ = exif_rotated(face_photo())
    path = ws.photo("turned.jpg", turned, quality=95)
    proc, out = recognize_json(ws, path)
    assert proc.returncode == 0, proc.stderr
    boxes = [tuple(face["box"].values()) for face in out["results"][0]["faces"]]
    assert all(iou(box, store.box) < 0.5 for box in boxes), boxes


@pytest.mark.real
@pytest.mark.parametrize("kind", ["one-pixel", "no-face"])
def test_photo_without_a_face_is_reported_not_failed(kind: str, ws: Workspace,
                                                     store: Store) -> None:
    ws.runtime(store)
    image = Image.new("RGB", (1, 1), (200, 120, 90)) if kind == "one-pixel" else no_face_image()
    path = ws.photo(f"{kind}.png", image)
    before = snapshot(ws.root)
    proc, out = recognize_json(ws, path)
    assert proc.returncode == 0, proc.stderr
    assert out["results"][0] == {"file": str(path), "error": None, "faces": []}
    assert error_lines(proc.stderr) == [f"facenet: {path}: no face found"]
    assert snapshot(ws.root) == before


@pytest.mark.real
def test_photo_with_many_faces(ws: Workspace, store: Store) -> None:
    ws.runtime(store)
    path = ws.photo("crowd.jpg", crowd_image(), quality=95)
    proc, out = recognize_json(ws, path)
    assert proc.returncode == 0, proc.stderr
    faces = out["results"][0]["faces"]
    assert len(faces) >= 20, len(faces)
    cells = {(int((f["box"]["x"] + f["box"]["width"] / 2) // CROWD_CELL),
              int((f["box"]["y"] + f["box"]["height"] / 2) // CROWD_CELL)) for f in faces}
    assert len(cells) == len(faces), "one face per tile, no duplicates"
    assert any(face["name"] == ENROLLED for face in faces)


@pytest.mark.real
@read_only_as_root
def test_read_only_gallery_still_recognizes(ws: Workspace, store: Store) -> None:
    ws.runtime(store)
    runner = read_only_runner()
    ws.gallery.chmod(0o444)
    path = ws.photo("face.jpg", face_photo(), quality=95)
    before = snapshot(ws.root)
    proc = facenet("recognize", "--json", path, "--artifacts", ws.artifacts, preexec=runner)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"][0]["faces"][0]["name"] == ENROLLED
    assert snapshot(ws.root) == before


@pytest.mark.real
def test_names_with_spaces_and_non_ascii(ws: Workspace, store: Store) -> None:
    """Enroll ``People/Zoë Ådams 李.jpg`` (seed convention), recognize another photo of her."""
    ws.runtime(store)
    people = ws.inputs / "Pëople dir"
    people.mkdir()
    face_photo("madonna", "train", 0).save(people / "Zoë Ådams 李.jpg", quality=95)
    enrolled = facenet("enroll", people, "--artifacts", ws.artifacts)
    assert enrolled.returncode == 0, enrolled.stderr
    assert "Zoë Ådams 李" in enrolled.stdout

    query = ws.photo("query — ünïcode 照片.png", face_photo("madonna", "val", 0))
    proc, out = recognize_json(ws, query)
    assert proc.returncode == 0, proc.stderr
    assert out["results"][0]["file"] == str(query)
    assert [f["name"] for f in out["results"][0]["faces"]] == ["Zoë Ådams 李"]

    listed = facenet("gallery", "list", "--artifacts", ws.artifacts)
    assert listed.returncode == 0 and "Zoë Ådams 李" in listed.stdout


def test_inspect_file_with_spaces_and_non_ascii(ws: Workspace) -> None:
    path = tiny(ws, "tiny mödel 名前.h5")
    proc = facenet("model", "inspect", "--json", path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["file"] == str(path) and report["all_lambdas_vetted"] is True


# --------------------------------------------------------------------------------------------
# Weights: the strict loader (in-process, one model build) and `facenet model export` on the CLI
# --------------------------------------------------------------------------------------------


class Trap:
    """Pickles as a call that creates a sentinel file: runs only if something unpickles it."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.sentinel), "w"))


def set_manifest_hash(weights: Path, npz: str) -> None:
    """Make the manifest agree with a changed npz, so the loader's structural checks speak."""
    manifest = json.loads((weights / "manifest.json").read_text())
    for entry in manifest["layers"]:
        if entry.get("npz") == npz:
            entry["npz_sha256"] = hashlib.sha256((weights / npz).read_bytes()).hexdigest()
    (weights / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))


def rewrite(ws: Workspace, weights: Path, npz: str,
            change: Callable[[dict[str, Any]], None]) -> None:
    with np.load(weights / npz, allow_pickle=False) as data:
        arrays: dict[str, Any] = {key: data[key] for key in data.files}
    change(arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    ws.replace(weights / npz, buffer.getvalue())
    set_manifest_hash(weights, npz)


def w_pickled(ws: Workspace, weights: Path) -> tuple[str, ...]:
    def trap(arrays: dict[str, Any]) -> None:
        arrays["kernel"] = np.array([Trap(ws.root / "SENTINEL")], dtype=object)

    rewrite(ws, weights, "Conv2d_1a_3x3.npz", trap)
    return ("Conv2d_1a_3x3", "pickled object array")


def w_extra_array(ws: Workspace, weights: Path) -> tuple[str, ...]:
    rewrite(ws, weights, "Block35_2_Conv2d_1x1.npz",
            lambda a: a.__setitem__("surprise", np.zeros(3, np.float32)))
    return ("Block35_2_Conv2d_1x1", "extra tensor 'surprise'")


def w_missing_array(ws: Workspace, weights: Path) -> tuple[str, ...]:
    rewrite(ws, weights, "Conv2d_2a_3x3_BatchNorm.npz", lambda a: a.pop("moving_variance"))
    return ("Conv2d_2a_3x3_BatchNorm", "'moving_variance' missing")


def w_wrong_dtype(ws: Workspace, weights: Path) -> tuple[str, ...]:
    rewrite(ws, weights, "Bottleneck.npz",
            lambda a: a.__setitem__("kernel", a["kernel"].astype(np.float64)))
    return ("Bottleneck", "float64")


def w_wrong_shape(ws: Workspace, weights: Path) -> tuple[str, ...]:
    rewrite(ws, weights, "Bottleneck.npz", lambda a: a.__setitem__("kernel", a["kernel"].T))
    return ("Bottleneck", "(128, 1792)")


def w_hash_mismatch(ws: Workspace, weights: Path) -> tuple[str, ...]:
    flip_byte(ws, weights / "Block8_2_Conv2d_1x1.npz")
    return ("Block8_2_Conv2d_1x1", "does not match the manifest")


def w_not_a_zip(ws: Workspace, weights: Path) -> tuple[str, ...]:
    ws.replace(weights / "Mixed_7a_Branch_2_Conv2d_1a_3x3.npz", b"PK\x03\x04 not really a zip")
    set_manifest_hash(weights, "Mixed_7a_Branch_2_Conv2d_1a_3x3.npz")
    return ("Mixed_7a_Branch_2_Conv2d_1a_3x3", "unreadable npz")


def w_npz_missing(ws: Workspace, weights: Path) -> tuple[str, ...]:
    (weights / "Block17_7_Conv2d_1x1.npz").unlink()
    return ("Block17_7_Conv2d_1x1", "is missing")


def w_manifest_missing(ws: Workspace, weights: Path) -> tuple[str, ...]:
    (weights / "manifest.json").unlink()
    return ("manifest.json", "nox -s recover")


def w_manifest_not_json(ws: Workspace, weights: Path) -> tuple[str, ...]:
    (weights / "manifest.json").write_text('{"format": "facenet-toolchain/weights-manifest/1",')
    return ("manifest.json", "not valid JSON")


def w_manifest_wrong_kind(ws: Workspace, weights: Path) -> tuple[str, ...]:
    (weights / "manifest.json").write_text('["a list, not a manifest"]')
    return ("manifest.json", "expected")


WEIGHT_CASES: dict[str, tuple[Callable[[Workspace, Path], tuple[str, ...]], int]] = {
    "pickled-object-array": (w_pickled, 4),
    "extra-array": (w_extra_array, 4),
    "missing-array": (w_missing_array, 4),
    "wrong-dtype": (w_wrong_dtype, 4),
    "wrong-shape": (w_wrong_shape, 4),
    "hash-mismatch": (w_hash_mismatch, 4),
    "not-a-zip": (w_not_a_zip, 4),
    "npz-missing": (w_npz_missing, 4),
    "manifest-missing": (w_manifest_missing, 6),
    "manifest-not-json": (w_manifest_not_json, 4),
    "manifest-wrong-kind": (w_manifest_wrong_kind, 4),
}
"""Broken weight sets: how to break a copy of the real one, and the expected exit code."""


@pytest.fixture(scope="module")
def keras_model() -> Any:
    """InceptionResNetV1 built once (Keras 3), with its untrained weights."""
    pytest.importorskip("tensorflow")
    real_file("weights/manifest.json", "run `nox -s recover` first")
    from toolchain.convert.architecture import build_model

    return build_model()


def weights_digest(model: Any) -> str:
    digest = hashlib.sha256()
    for array in model.get_weights():
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


@pytest.mark.real
@pytest.mark.parametrize("name", sorted(WEIGHT_CASES))
def test_weights_refused(name: str, ws: Workspace, keras_model: Any) -> None:
    from toolchain.convert.weights import load_weights
    from toolchain.core.errors import ToolchainError

    weights = weights_tree(ws)
    breaker, code = WEIGHT_CASES[name]
    phrases = breaker(ws, weights)
    before = snapshot(ws.root)
    untouched = weights_digest(keras_model)

    with pytest.raises(ToolchainError) as caught:
        load_weights(keras_model, weights)

    message = str(caught.value)
    assert caught.value.exit_code == code, message
    assert "\n" not in message
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} not in {message!r}"
    assert not (ws.root / "SENTINEL").exists(), "a pickle in an npz was executed"
    assert weights_digest(keras_model) == untouched, "a rejected set changed the model"
    assert snapshot(ws.root) == before


@pytest.mark.real
@pytest.mark.slow
def test_export_cli_refuses_tampered_weights(ws: Workspace) -> None:
    """``facenet model export`` on a set with a flipped byte: exit 4, the layer named, no model."""
    pytest.importorskip("tensorflow")
    weights = weights_tree(ws)
    flip_byte(ws, weights / "Block8_6_Conv2d_1x1.npz", 5000)
    before = snapshot(ws.root)
    proc = facenet("model", "export", "--format", "keras", "--artifacts", ws.artifacts)
    assert_refused(proc, 4, "Block8_6_Conv2d_1x1", ("weights rejected", "tampered"),
                   strict=False)
    assert snapshot(ws.root) == before
    assert not ws.models.exists() or not any(ws.models.iterdir()), "a refused export wrote a model"
