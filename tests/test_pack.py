"""Model packs: written from the models, opened with no artifacts tree, every damage refused.

The fast tests use the fake world of :mod:`runtime_fakes` (a tiny FaceNet-signature model, the
square detector, MTCNN stand-in files: the pack checks bytes, and the writer loads only FaceNet);
the ``real`` ones write packs of the exported models into ``tmp_path`` (hard links to
``artifacts/models``: nothing here writes into a pack file in place, damage replaces files).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import runtime_fakes as fakes
from helpers.allowances import read_only_mount
from helpers.cli import invoke
from helpers.real import artifacts_root, run_read_only, shared_data

from toolchain.core.atomic import sha256_file
from toolchain.core.errors import (
    InputError,
    IntegrityError,
    MissingArtifactError,
    ToolchainError,
)
from toolchain.core.paths import Layout
from toolchain.runtime.backends import ModelChoice
from toolchain.runtime.pack import PACK_FORMAT, ArtifactModels, open_pack
from toolchain.runtime.pack_writer import select_runs, write_pack
from toolchain.runtime.recognizer import Recognizer

ROOT = Path(__file__).resolve().parents[1]


def flip(path: Path, offset: int | None = None) -> None:
    """Flip one byte of ``path`` in a new file (a pack file may be a hard link: never in place)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if offset is None else offset] ^= 0x01
    path.unlink()
    path.write_bytes(bytes(data))


def edit_manifest(pack: Path, change: Callable[[dict[str, Any]], None]) -> None:
    manifest = json.loads((pack / "manifest.json").read_text())
    change(manifest)
    (pack / "manifest.json").unlink()
    (pack / "manifest.json").write_text(json.dumps(manifest))


# --------------------------------------------------------------------------------------------
# The fake world
# --------------------------------------------------------------------------------------------


@pytest.fixture
def pack(fake_artifacts: Path) -> Path:
    return fakes.install_pack(fake_artifacts)


def test_the_export_writer_makes_a_pack_that_opens_alone(pack: Path, tmp_path: Path) -> None:
    manifest = json.loads((pack / "manifest.json").read_text())
    assert manifest["format"] == PACK_FORMAT and manifest["made"]["by"] == "tests"
    assert manifest["runs"] == [{"runtime": "onnxruntime", "precision": "fp32",
                                 "embedder": "facenet.onnx"}]
    assert sorted(manifest["files"]) == ["facenet.onnx", "mtcnn_onet.onnx", "mtcnn_pnet.onnx",
                                         "mtcnn_rnet.onnx"]
    for rel, record in manifest["files"].items():
        assert record == {"sha256": sha256_file(pack / rel), "size": (pack / rel).stat().st_size}
        assert (pack / rel).stat().st_ino == (pack.parent / "models" / rel).stat().st_ino
    model = manifest["model"]
    assert model["default_threshold"] == fakes.THRESHOLD and model["embedding_dim"] == 128
    assert model["weights_fingerprint"] == manifest["files"]["facenet.onnx"]["sha256"]
    assert model["input_size"] == [160, 160, 3] and model["default_crop"] is None

    alone = tmp_path / "elsewhere" / "pack"
    shutil.copytree(pack, alone)
    shutil.rmtree(tmp_path / "artifacts")
    photo = fakes.photo(tmp_path / "red.png", [("red", 60), ("blue", 50)])
    with Recognizer.load(alone, gallery=tmp_path / "g.db") as rec:
        assert rec.threshold()[0] == fakes.THRESHOLD
        rec.enroll("Red", fakes.photo(tmp_path / "enroll.png", [("red", 70)]))
        assert [m.label for m in rec.recognize(photo)] == ["Red", "unknown"]


def test_loading_reads_each_pack_file_once(pack: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Each file is read once per load; once its digest is remembered (its times settled: here
    at once), a later load reads none, and a byte flipped in place is still refused."""
    import toolchain.core.integrity.digests as digests_module
    import toolchain.runtime.embedder as embedder_module
    import toolchain.runtime.ort_options as ort_module

    monkeypatch.setenv(digests_module.CACHE_DIR_ENV, str(tmp_path / "cache"))
    Recognizer.load(pack)  # the first session writes the optimized-graph cache
    reads: Counter[str] = Counter()

    def counting(path: Path, *args: Any) -> str:
        reads[Path(path).name] += 1
        return sha256_file(path, *args)

    for module in (digests_module, ort_module, embedder_module):
        monkeypatch.setattr(module, "sha256_file", counting)
    rec = Recognizer.load(pack)
    assert reads == {"facenet.onnx": 1, "mtcnn_pnet.onnx": 1, "mtcnn_rnet.onnx": 1,
                     "mtcnn_onet.onnx": 1, "facenet.onnx.optimized": 1,
                     "facenet.onnx.optimized.data": 1}
    assert rec.embedder.fingerprint == sha256_file(pack / "facenet.onnx")

    monkeypatch.setattr(digests_module, "SETTLE_SECONDS", 0.0)
    Recognizer.load(pack)
    reads.clear()
    Recognizer.load(pack)
    assert not reads, "remembered digests were read again"
    victim = pack / "mtcnn_rnet.onnx"
    info = victim.stat()
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    with open(victim, "r+b") as fh:  # in place: same inode, same size, mtime set back
        fh.write(bytes(data))
    os.utime(victim, ns=(info.st_atime_ns, info.st_mtime_ns))
    with pytest.raises(IntegrityError, match=r"mtcnn_rnet\.onnx: sha256 does not match"):
        Recognizer.load(pack)


def _model_fact(key: str, value: Any) -> Callable[[Path], None]:
    return lambda pack: edit_manifest(pack, lambda m: m["model"].update({key: value}))


def _file_record(rel: str, **record: Any) -> Callable[[Path], None]:
    return lambda pack: edit_manifest(pack, lambda m: m["files"][rel].update(record))


def _substitute(pack: Path) -> None:
    (pack / "facenet.onnx").unlink()
    fakes.write_tiny_facenet(pack / "facenet.onnx", threshold="0.7")


def _truncate(pack: Path) -> None:
    data = (pack / "facenet.onnx").read_bytes()
    (pack / "facenet.onnx").unlink()
    (pack / "facenet.onnx").write_bytes(data[:99])


def _add_outside(manifest: dict[str, Any]) -> None:
    manifest["files"]["../elsewhere.onnx"] = manifest["files"]["facenet.onnx"]


DAMAGE: dict[str, tuple[Callable[[Path], None], type[ToolchainError], str]] = {
    "flipped byte, FaceNet": (lambda p: flip(p / "facenet.onnx"), IntegrityError,
                              "facenet.onnx: sha256 does not match its manifest"),
    "flipped byte, MTCNN": (lambda p: flip(p / "mtcnn_onet.onnx", 0), IntegrityError,
                            "mtcnn_onet.onnx: sha256 does not match its manifest"),
    "substituted FaceNet": (_substitute, IntegrityError,
                            "facenet.onnx: sha256 does not match its manifest"),
    "truncated": (_truncate, IntegrityError, "facenet.onnx is 99 bytes, its manifest says"),
    "missing file": (lambda p: (p / "mtcnn_pnet.onnx").unlink(), MissingArtifactError,
                     "mtcnn_pnet.onnx is missing (its manifest lists it)"),
    "missing manifest": (lambda p: (p / "manifest.json").unlink(), MissingArtifactError,
                         "is not a model pack: it has no manifest.json"),
    "manifest: threshold": (_model_fact("default_threshold", 0.9), IntegrityError,
                            "default_threshold: 0.9 in the manifest, 0.5 in facenet.onnx"),
    "manifest: fingerprint": (_model_fact("weights_fingerprint", "0" * 64), IntegrityError,
                              "does not describe its model (weights_fingerprint"),
    "manifest: crop": (_model_fact("default_crop", "align"), IntegrityError,
                       "default_crop: 'align' in the manifest, None in"),
    "manifest: sha256": (_file_record("mtcnn_rnet.onnx", sha256="f" * 64), IntegrityError,
                         "mtcnn_rnet.onnx: sha256 does not match its manifest"),
    "manifest: size": (_file_record("facenet.onnx", size=1), IntegrityError,
                       "its manifest says 1 (changed"),
    "manifest: format": (lambda p: edit_manifest(
                             p, lambda m: m.update(format="facenet-toolchain/model-pack/2")),
                         IntegrityError, "'facenet-toolchain/model-pack/2' is not a model pack "
                         "this toolchain reads (facenet-toolchain/model-pack/1)"),
    "manifest: not JSON": (lambda p: (p / "manifest.json").write_text("{not json"),
                           IntegrityError, "not a readable JSON manifest"),
    "manifest: path outside": (lambda p: edit_manifest(p, _add_outside), IntegrityError,
                               "lists '../elsewhere.onnx', not a path inside"),
    "manifest: file dropped": (lambda p: edit_manifest(p, lambda m: m["files"].pop(
                                   "mtcnn_rnet.onnx")),
                               IntegrityError, "lists no mtcnn_rnet.onnx though it says the pack "
                               "runs onnxruntime fp32"),
    "manifest: run renamed": (lambda p: edit_manifest(p, lambda m: m["runs"][0].update(
                                  precision="int8")),
                              IntegrityError, "names another FaceNet model than "
                              "facenet_int8.onnx"),
}
"""What is done to a pack, the error it must raise and a phrase of its message."""


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_every_damage_is_refused_with_its_exit_code(
        case: str, pack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    damage, error, phrase = DAMAGE[case]
    damage(pack)
    with pytest.raises(error) as raised:
        Recognizer.load(pack)
    assert phrase in str(raised.value)
    # The command line, on a tree whose models are that pack alone.
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.move(pack, tree / "pack")
    shutil.rmtree(tmp_path / "artifacts")
    photo = fakes.photo(tmp_path / "a.png", [("red", 60)])
    code, _, err = invoke(capsys, "compare", photo, photo, "--artifacts", tree)
    assert code == (6 if case == "missing manifest" else error.exit_code), err
    assert len(err.strip().splitlines()) == 1, err


def test_the_artifacts_pack_is_preferred_and_checked_against_sha256sums(
        pack: Path, tmp_path: Path) -> None:
    from toolchain.core.integrity.sums import format_sums

    artifacts = pack.parent
    layout = Layout(artifacts)
    with Recognizer.from_artifacts(artifacts) as rec:
        assert rec.embedder.path == pack / "facenet.onnx"
        assert rec.gallery_path == artifacts / "gallery.db"
    manifest = pack / "manifest.json"
    (artifacts / "SHA256SUMS").write_text(format_sums({"pack/manifest.json": "0" * 64}))
    with pytest.raises(IntegrityError, match=r"manifest\.json: sha256 does not match SHA256SUMS"):
        Recognizer.from_artifacts(artifacts)
    (artifacts / "SHA256SUMS").write_text(format_sums(
        {"pack/manifest.json": sha256_file(manifest)}))
    Recognizer.from_artifacts(artifacts).close()
    (artifacts / "SHA256SUMS").unlink()
    shutil.rmtree(layout.pack_dir)  # a tree exported before packs: models/ as before
    with Recognizer.from_artifacts(artifacts) as rec:
        assert rec.embedder.path == layout.models_dir / "facenet.onnx"


def test_the_writer_never_replaces_what_is_not_a_pack(pack: Path, tmp_path: Path) -> None:
    source = ArtifactModels(Layout(pack.parent))
    home = tmp_path / "home"
    (home / "notes").mkdir(parents=True)
    (home / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a model pack: refusing to replace it"):
        write_pack(source, home)
    assert (home / "notes" / "todo.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    copied = write_pack(source, empty, link=False)
    assert copied.linked == 0 and copied.files == 4
    assert (empty / "facenet.onnx").stat().st_ino != (pack / "facenet.onnx").stat().st_ino
    again = write_pack(open_pack(empty), empty)  # a pack rewritten from itself
    assert again.runs == (ModelChoice(),)
    Recognizer.load(empty).close()


def test_the_writer_names_what_is_missing_and_what_disagrees(pack: Path) -> None:
    layout = Layout(pack.parent)
    with pytest.raises(MissingArtifactError,
                       match=r"holds no onnxruntime int8 model .*export --format onnx-int8`"):
        write_pack(ArtifactModels(layout), pack, select_runs(["onnxruntime"], ["int8"]))
    # an int8 model of another export (another threshold) beside the fp32 one
    fakes.write_tiny_facenet(layout.models_dir / "facenet_int8.onnx", threshold="0.7")
    summary = write_pack(ArtifactModels(layout), pack)
    assert summary.runs == (ModelChoice(),)
    assert "facenet_int8.onnx states another default_threshold" in summary.left_out[0]
    with pytest.raises(IntegrityError, match="are not one export"):
        write_pack(ArtifactModels(layout), pack, select_runs(runtimes=["onnxruntime"]))
    with pytest.raises(InputError, match="runtime must be one of"):
        select_runs(runtimes=["tensorrt"])


def test_a_tampered_source_model_is_never_packed(pack: Path) -> None:
    from toolchain.core.integrity.sums import format_sums

    layout = Layout(pack.parent)
    listed = {f"models/{p.name}": sha256_file(p) for p in layout.models_dir.iterdir()}
    (layout.root / "SHA256SUMS").write_text(format_sums(listed))
    before = (pack / "manifest.json").read_text()
    flip(layout.models_dir / "facenet.onnx")
    with pytest.raises(IntegrityError, match=r"facenet\.onnx: sha256 does not match SHA256SUMS"):
        write_pack(ArtifactModels(layout), pack)
    assert (pack / "manifest.json").read_text() == before


def test_service_and_batch_open_a_pack_with_no_artifacts_tree(pack: Path, tmp_path: Path) -> None:
    from toolchain.batch.pipeline import BatchConfig, PhotoWorker
    from toolchain.service.config import ServiceConfig
    from toolchain.service.engine import Engine

    alone = tmp_path / "pack"
    shutil.move(pack, alone)
    shutil.rmtree(tmp_path / "artifacts")
    nowhere = tmp_path / "no-artifacts"
    engine = Engine.load(ServiceConfig(artifacts=nowhere, gallery=tmp_path / "g.db",
                                       models=alone))
    try:
        assert engine.models == alone
        assert engine.readiness()["model"] == sha256_file(alone / "facenet.onnx")[:16]
    finally:
        engine.close()
    photo = fakes.photo(tmp_path / "red.png", [("red", 60)])
    worker = PhotoWorker(BatchConfig(mode="recognize", artifacts=str(nowhere),
                                     gallery=str(tmp_path / "g.db"), crop="box",
                                     models=str(alone)))
    out = worker({"index": np.array([0]), "path": np.array([str(photo)]),
                  "name": np.array([""])})
    assert len(json.loads(out["record"][0])["faces"]) == 1
    assert not nowhere.exists()


# --------------------------------------------------------------------------------------------
# The real models
# --------------------------------------------------------------------------------------------


def _real_layout() -> Layout:
    layout = Layout(artifacts_root())
    for name in ("facenet.onnx", "facenet_int8.onnx", "mtcnn_pnet.onnx", "mtcnn_rnet.onnx",
                 "mtcnn_onet.onnx"):
        if not (layout.models_dir / name).is_file():
            pytest.skip(f"{layout.models_dir / name} missing: run `nox -s export` first")
    return layout


@pytest.fixture(scope="module")
def real_packs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A full pack (hard links) and a slim one (ONNX Runtime only, copies) of the real models."""
    source = ArtifactModels(_real_layout())
    root = tmp_path_factory.mktemp("packs")
    full = write_pack(source, root / "full")
    slim = write_pack(source, root / "slim", select_runs(runtimes=["onnxruntime"]), link=False)
    assert full.runs[:2] == slim.runs == (ModelChoice("onnxruntime", "fp32"),
                                          ModelChoice("onnxruntime", "int8"))
    assert slim.linked == 0 and slim.files == 5 and slim.size_bytes < full.size_bytes
    return full.path, slim.path


def _runtime_python() -> str:
    value = os.environ.get("FACENET_RUNTIME_PYTHON", "")
    return value if value and Path(value).is_file() else sys.executable


RECOGNIZE = """
import hashlib, json, sys
from toolchain import Recognizer
pack, gallery, photo = sys.argv[1:4]
with Recognizer.load(pack, gallery=gallery) as rec:
    matches = rec.recognize(photo)
    vectors = rec.embed(photo)
print(json.dumps({"names": [m.label for m in matches], "distances": [m.distance for m in matches],
                  "embeddings": hashlib.sha256(vectors.tobytes()).hexdigest()}))
"""
"""Recognize one photo with a pack, in a fresh process; print names, distances, embeddings."""


def _recognized(rec: Recognizer, photo: Path) -> dict[str, Any]:
    matches = rec.recognize(photo)
    return {"names": [m.label for m in matches], "distances": [m.distance for m in matches],
            "embeddings": hashlib.sha256(rec.embed(photo).tobytes()).hexdigest()}


@pytest.mark.real
def test_a_real_pack_copied_alone_recognizes_bit_for_bit(
        real_packs: tuple[Path, Path], tmp_path: Path) -> None:
    full, _ = real_packs
    people, photos = shared_data("people"), shared_data("photos")
    gallery, photo = tmp_path / "g.db", photos / "obama_and_biden.jpg"
    with Recognizer.from_artifacts(artifacts_root(), gallery=gallery) as rec:
        rec.enroll_many([(p.parent.name, p) for p in sorted(people.glob("*/*.jpg"))],
                        largest=True)
        expected = _recognized(rec, photo)
    assert {"biden", "obama"} <= set(expected["names"])

    alone = tmp_path / "machine" / "facenet-pack"
    shutil.copytree(full, alone)  # real copies, nothing but the pack
    done = subprocess.run([_runtime_python(), "-c", RECOGNIZE, str(alone), str(gallery),
                           str(photo)], capture_output=True, text=True, timeout=600,
                          cwd=alone.parent, env={**os.environ, "PYTHONPATH": str(ROOT),
                                                 "FACENET_ARTIFACTS": str(tmp_path / "none")})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == expected
    assert not (tmp_path / "none").exists()


@pytest.mark.real
@pytest.mark.slow
def test_every_run_of_a_real_pack_embeds_as_the_artifacts_do(
        real_packs: tuple[Path, Path]) -> None:
    full, _ = real_packs
    photo = shared_data("photos") / "obama1.jpg"
    for choice in open_pack(full).runs:
        options = {"runtime": choice.runtime, "precision": choice.precision}
        with Recognizer.from_artifacts(artifacts_root(), **options) as ours, \
                Recognizer.load(full, **options) as packed:
            assert np.array_equal(packed.embed(photo), ours.embed(photo)), choice
            assert packed.threshold() == ours.threshold() and packed.crop() == ours.crop()
            assert packed.embedder.fingerprint == ours.embedder.fingerprint


@pytest.mark.real
@read_only_mount
def test_a_read_only_real_pack_runs_with_or_without_a_cache(
        real_packs: tuple[Path, Path], tmp_path: Path) -> None:
    _, slim = real_packs
    pack = tmp_path / "ro-pack"
    shutil.copytree(slim, pack)
    photo = shared_data("photos") / "obama1.jpg"
    with Recognizer.load(slim) as rec:
        expected = hashlib.sha256(rec.embed(photo).tobytes()).hexdigest()
    script = ("import hashlib, sys; from toolchain import Recognizer; "
              "rec = Recognizer.load(sys.argv[1]); "
              "print(hashlib.sha256(rec.embed(sys.argv[2]).tobytes()).hexdigest())")
    before = sorted(p.name for p in pack.iterdir())
    cache = tmp_path / "cache"
    for cache_dir, cached in ((cache, True), (cache, True), (pack / "cache", False)):
        done = run_read_only(pack, [_runtime_python(), "-c", script, str(pack), str(photo)],
                             timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT),
                                               "FACENET_CACHE_DIR": str(cache_dir)})
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == expected
        assert sorted(p.name for p in pack.iterdir()) == before
        assert ("running without it" in done.stderr) != cached, done.stderr
    digest = json.loads((pack / "manifest.json").read_text())["files"]["facenet.onnx"]["sha256"]
    kept = sorted(p.name for p in cache.iterdir() if p.name != "digests")  # remembered digests
    assert kept == [f"{digest}.onnx.optimized", f"{digest}.onnx.optimized.data",
                    f"{digest}.onnx.optimized.json"]


@pytest.mark.real
def test_a_slim_pack_refuses_a_runtime_it_does_not_hold(real_packs: tuple[Path, Path]) -> None:
    _, slim = real_packs
    with pytest.raises(MissingArtifactError) as raised:
        Recognizer.load(slim, runtime="openvino", precision="int8")
    assert str(raised.value).startswith(
        f"model pack {slim} holds no openvino int8 FaceNet model (it runs onnxruntime fp32, "
        "onnxruntime int8); use a pack that does")
    with Recognizer.load(slim, precision="int8") as rec:
        assert rec.embedder.path.name == "facenet_int8.onnx"


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.services
def test_the_service_serves_a_tree_that_holds_only_a_pack(
        real_packs: tuple[Path, Path], tmp_path: Path) -> None:
    from helpers.service_server import running_server

    _, slim = real_packs
    tree = tmp_path / "srv"
    shutil.copytree(slim, tree / "pack", copy_function=os.link)
    photo = shared_data("photos") / "obama1.jpg"
    with running_server(tmp_path, artifacts=tree) as server:
        assert server.get("/readyz").json()["status"] == "ready"
        assert server.enroll("obama", photo).status_code == 201
        assert [f["name"] for f in server.recognize(photo).json()["faces"]] == ["obama"]
        served = server.get("/local/models/facenet.onnx")
        assert served.status_code == 200
        assert hashlib.sha256(served.content).hexdigest() == sha256_file(slim / "facenet.onnx")
    assert not (tree / "models").exists()


@pytest.mark.real
@pytest.mark.slow
def test_the_cli_writes_a_slim_pack_and_recognizes_from_it_alone(tmp_path: Path) -> None:
    """`facenet model pack --runtime onnxruntime --copy`, the pack moved away from every
    artifacts tree, then `enroll --models PACK` and `recognize --models PACK --json` in the
    runtime environment give what `--artifacts` gives."""
    layout = _real_layout()
    python = _runtime_python()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def facenet(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([python, "-m", "toolchain", *map(str, args)], capture_output=True,
                              text=True, env=env, cwd=tmp_path, check=False)

    made = facenet("model", "pack", "--out", tmp_path / "made", "--runtime", "onnxruntime",
                   "--copy", "--artifacts", layout.root)
    assert made.returncode == 0, made.stderr
    assert "5 files" in made.stdout and "runs onnxruntime fp32, onnxruntime int8" in made.stdout
    alone = tmp_path / "elsewhere" / "pack"
    shutil.move(tmp_path / "made", alone)
    people, photos = shared_data("people"), shared_data("photos")
    outputs = []
    for models in (("--models", alone), ("--artifacts", layout.root)):
        gallery = tmp_path / f"{models[0].strip('-')}.db"
        enrolled = facenet("enroll", people, "--gallery", gallery, *models)
        assert enrolled.returncode == 0, enrolled.stderr
        recognized = facenet("recognize", photos, "--json", "--gallery", gallery, *models)
        assert recognized.returncode == 0, recognized.stderr
        document = json.loads(recognized.stdout)
        document.pop("gallery")
        outputs.append(document)
    assert outputs[0] == outputs[1]
    assert not (tmp_path / "artifacts").exists(), "--models needs no artifacts tree"
    flip(alone / "facenet.onnx")
    refused = facenet("recognize", photos, "--gallery", tmp_path / "models.db", "--models", alone)
    assert refused.returncode == 4 and len(refused.stderr.strip().splitlines()) == 1
