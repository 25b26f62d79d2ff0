"""``SHA256SUMS``, ``facenet model checksums`` / ``verify``, and :func:`verify_file`."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from helpers.cli import facenet
from helpers.real import artifacts_root

from toolchain.core.errors import InputError, IntegrityError, MissingArtifactError
from toolchain.core.integrity import (
    SUMS_NAME,
    check_gallery_file,
    read_sums,
    record_files,
    verify_artifacts,
    verify_file,
    write_checksums,
)
from toolchain.core.integrity.galleries import GALLERY_COLUMNS, GALLERY_SCHEMA_VERSION
from toolchain.core.integrity.sums import check_sums, format_sums, parse_sums, tracked_files
from toolchain.core.paths import Layout
from toolchain.gallery import open_gallery
from toolchain.legacy.npzfile import npz_bytes

ROOT = Path(__file__).resolve().parents[1]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def small_tree(root: Path) -> Layout:
    """A synthetic artifacts tree: two npz + manifest, models, a report, a source file."""
    layout = Layout(root)
    layout.weights_dir.mkdir(parents=True)
    layers: list[dict[str, str | None]] = []
    for name in ("Conv_A", "Conv_B"):
        data = npz_bytes({"kernel": np.full((2, 2), len(name), np.float32)})
        (layout.weights_dir / f"{name}.npz").write_bytes(data)
        layers.append({"name": name, "npz": f"{name}.npz", "npz_sha256": sha(data)})
    layers.append({"name": "input_1", "npz": None})
    layout.manifest.write_text(json.dumps({"layers": layers}))
    layout.models_dir.mkdir()
    (layout.models_dir / "facenet.onnx").write_bytes(b"model bytes")
    (layout.models_dir / "saved").mkdir()
    (layout.models_dir / "saved" / "saved_model.pb").write_bytes(b"pb")
    layout.reports_dir.mkdir()
    (layout.reports_dir / "parity.json").write_text("{}")
    layout.source_dir.mkdir()
    (layout.source_dir / "facenet_keras.h5").write_bytes(b"not pinned here")
    (root / "README.md").write_text("committed, not generated")
    return layout


def test_checksums_list_generated_files_only_and_sha256sum_agrees(tmp_path: Path) -> None:
    layout = small_tree(tmp_path / "artifacts")
    layout.gallery.write_bytes(b"user data, never listed")
    result = write_checksums(layout)
    listed = read_sums(layout)
    assert listed is not None and result.files == len(listed)
    assert sorted(listed) == [
        "models/facenet.onnx", "models/saved/saved_model.pb", "reports/parity.json",
        "weights/Conv_A.npz", "weights/Conv_B.npz", "weights/manifest.json",
    ]
    text = (layout.root / SUMS_NAME).read_text()
    assert text == format_sums(listed)
    assert [line.split("  ", 1)[1] for line in text.splitlines()] == sorted(listed)
    if shutil.which("sha256sum"):
        check = subprocess.run(["sha256sum", "--check", "--strict", SUMS_NAME], cwd=layout.root,
                               capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
    assert not [p for p in layout.root.rglob(".*")], "no temp or lock file may remain"


def test_awkward_names_round_trip(tmp_path: Path) -> None:
    entries = {"reports/a b.json": "1" * 64, "reports/zoë 名.png": "2" * 64,
               "reports/back\\slash": "3" * 64, "reports/new\nline": "4" * 64}
    parsed, problems = parse_sums(format_sums(entries), tmp_path / SUMS_NAME)
    assert parsed == entries and problems == []
    if shutil.which("sha256sum"):
        for rel in entries:
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_bytes(rel.encode())
        real = {rel: sha(rel.encode()) for rel in entries}
        (tmp_path / SUMS_NAME).write_text(format_sums(real))
        check = subprocess.run(["sha256sum", "--check", "--strict", SUMS_NAME], cwd=tmp_path,
                               capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stdout + check.stderr


def test_verify_names_every_problem_at_once(tmp_path: Path) -> None:
    layout = small_tree(tmp_path / "artifacts")
    write_checksums(layout)
    (layout.weights_dir / "Conv_A.npz").write_bytes(b"tampered")
    (layout.models_dir / "facenet.onnx").unlink()
    (layout.models_dir / "saved" / "saved_model.pb").write_bytes(b"PB")
    (layout.reports_dir / "new.md").write_text("written after the sums")
    (layout.reports_dir / ".parity.json.abc.tmp").write_text("debris")

    proc = facenet("model", "verify", "--artifacts", layout.root)

    assert proc.returncode == 4 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("facenet: error:")]
    assert len(errors) == 1
    for needle in (
        f"{layout.weights_dir / 'Conv_A.npz'}: sha256 does not match manifest.json (layer Conv_A)",
        f"{layout.weights_dir / 'Conv_A.npz'}: sha256 does not match {SUMS_NAME}",
        f"{layout.models_dir / 'facenet.onnx'}: missing (listed in {SUMS_NAME})",
        f"{layout.models_dir / 'saved' / 'saved_model.pb'}: sha256 does not match {SUMS_NAME}",
        f"{layout.reports_dir / 'new.md'}: not listed in {SUMS_NAME}",
        f"{layout.legacy_h5}: 15 bytes, pinned",
    ):
        assert needle in errors[0], needle
        assert f"[x] {needle}" in proc.stdout or needle.endswith("pinned")
    assert "leftover of an interrupted write" in proc.stderr


def test_verify_passes_on_a_consistent_tree(tmp_path: Path) -> None:
    layout = small_tree(tmp_path / "artifacts")
    write_checksums(layout)
    report = verify_artifacts(layout)
    assert [p for p in report.problems if "source" not in p] == []
    assert report.checked["weights"] == 2 and report.checked[SUMS_NAME] == 6


def test_checksums_refuse_to_bless_tampered_weights(tmp_path: Path) -> None:
    layout = small_tree(tmp_path / "artifacts")
    (layout.weights_dir / "Conv_B.npz").write_bytes(b"x")
    with pytest.raises(IntegrityError, match=r"Conv_B\.npz"):
        write_checksums(layout)
    assert not (layout.root / SUMS_NAME).exists()


def test_verify_file(tmp_path: Path) -> None:
    layout = small_tree(tmp_path / "artifacts")
    model = layout.models_dir / "facenet.onnx"
    assert verify_file(model, layout) == sha(b"model bytes"), "no SHA256SUMS yet: not checked"
    write_checksums(layout)
    assert verify_file(model, layout) == sha(b"model bytes")
    verify_file(layout.models_dir / "saved", layout)

    model.write_bytes(b"model bytez")
    with pytest.raises(IntegrityError, match=r"facenet\.onnx: sha256 does not match SHA256SUMS"):
        verify_file(model, layout)
    (layout.models_dir / "saved" / "variables.index").write_bytes(b"new")
    with pytest.raises(IntegrityError, match=r"variables\.index: not listed"):
        verify_file(layout.models_dir / "saved", layout)
    with pytest.raises(MissingArtifactError):
        verify_file(layout.models_dir / "absent.onnx", layout)

    outside = tmp_path / "my_model.onnx"
    outside.write_bytes(b"a user's own model")
    assert verify_file(outside, layout) == sha(b"a user's own model")


def test_record_files_keeps_sums_current(tmp_path: Path) -> None:
    layout = small_tree(tmp_path / "artifacts")
    write_checksums(layout)
    (layout.models_dir / "facenet.onnx").write_bytes(b"re-exported")
    (layout.reports_dir / "evaluate.json").write_text("{}")
    shutil.rmtree(layout.models_dir / "saved")
    (layout.models_dir / "saved").mkdir()
    (layout.models_dir / "saved" / "other.pb").write_bytes(b"pb2")
    record_files(layout, [layout.models_dir / "facenet.onnx", layout.reports_dir / "evaluate.json",
                          layout.models_dir / "saved"])
    listed = read_sums(layout)
    assert listed is not None
    assert listed["models/facenet.onnx"] == sha(b"re-exported")
    assert "models/saved/saved_model.pb" not in listed and "models/saved/other.pb" in listed
    assert [p for p in verify_artifacts(layout).problems if "source" not in p] == []
    with pytest.raises(IntegrityError, match="not a generated artifact"):
        record_files(layout, [layout.legacy_h5])


def test_verify_checks_the_gallery(tmp_path: Path) -> None:
    from toolchain.gallery import Entry

    layout = small_tree(tmp_path / "artifacts")
    write_checksums(layout)
    with open_gallery(layout.gallery, fingerprint="e" * 64, create=True) as gallery:
        gallery.add([Entry("Ada", np.ones(128, np.float32), "a.jpg", "a" * 64, (0, 0, 9, 9))])
    problems = verify_artifacts(layout).problems
    assert any("gallery.db: made with model sha256 eeeeeeeeeeeeeeee" in p for p in problems)

    layout.gallery.write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    problems = verify_artifacts(layout).problems
    assert any(f"{layout.gallery}: not a readable facenet gallery" in p for p in problems)


def test_verify_checks_recorded_cache_hashes(tmp_path: Path) -> None:
    layout = small_tree(tmp_path / "artifacts")
    write_checksums(layout)
    cache = layout.models_dir / "facenet.onnx.optimized"
    cache.write_bytes(b"optimized graph")
    (layout.models_dir / "facenet.onnx.optimized.json").write_text(
        json.dumps({"optimized_sha256": sha(b"optimized graph")}))
    assert [p for p in verify_artifacts(layout).problems if "source" not in p] == []
    cache.write_bytes(b"optimized grapH")
    assert any(f"{cache}: sha256 does not match" in p for p in verify_artifacts(layout).problems)


REAL_PARTS = ("source", "weights", "reference", "models")
"""The main job's folders the real-tree tests link into a private artifacts tree."""


def linked_real_tree(tmp_path: Path, copied_models: tuple[str, ...] = ()) -> Path:
    """A private ``artifacts`` tree of links to the real one's files (or skip, a failure under
    CI, when the main job has not run): ``weights`` file by file, so checksums may be written
    beside them; ``copied_models`` are real copies in a ``models`` folder of their own (a test
    may rewrite them), else ``models`` is linked whole."""
    real = artifacts_root()
    for part in REAL_PARTS:
        if not (real / part).is_dir():
            pytest.skip(f"{real / part} missing: run `nox` (fetch, recover, export) first")
    root = tmp_path / "artifacts"
    root.mkdir()
    for part in ("source", "reference") if copied_models else ("source", "reference", "models"):
        (root / part).symlink_to(real / part)
    (root / "weights").mkdir()
    for path in (real / "weights").iterdir():
        (root / "weights" / path.name).symlink_to(path)
    if copied_models:
        (root / "models").mkdir()
        for name in copied_models:
            shutil.copyfile(real / "models" / name, root / "models" / name)
    return root


@pytest.mark.real
def test_real_tree_checksums_and_verify(tmp_path: Path) -> None:
    """The real artifacts (linked into a private tree): checksums, verify OK, a flip is named."""
    root = linked_real_tree(tmp_path)
    weights = root / "weights"
    layout = Layout(root)

    written = facenet("model", "checksums", "--artifacts", root)
    assert written.returncode == 0, written.stderr
    listed = read_sums(layout)
    assert listed is not None and len(listed) == len(tracked_files(layout))
    assert sum(rel.startswith("weights/") for rel in listed) == len(list(weights.glob("*.npz"))) + 1
    assert not any(rel.startswith("source/") for rel in listed)
    ok = facenet("model", "verify", "--artifacts", root)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "source 120 ok" in ok.stdout

    victim = sorted(weights.glob("Block8_*.npz"))[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.unlink()
    victim.write_bytes(bytes(data))
    bad = facenet("model", "verify", "--artifacts", root)
    assert bad.returncode == 4
    assert f"{victim}: sha256 does not match manifest.json" in bad.stderr
    assert f"{victim}: sha256 does not match {SUMS_NAME}" in bad.stderr


@pytest.mark.real
def test_a_re_export_over_a_checksummed_tree_writes_its_pack(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``nox -s export`` again on a finished tree (SHA256SUMS written): a model the exporter
    rewrites with other bytes is recorded as soon as it is written, so the pack step that loads it
    next accepts it and ``verify`` is clean. Before, the pack refused the export's own model
    ("sha256 does not match SHA256SUMS") and the export failed."""
    import onnx

    from toolchain.convert.exporters import ExportContext, registry
    from toolchain.convert.formats import FORMATS

    root = linked_real_tree(tmp_path, copied_models=(
        "facenet.onnx", "mtcnn_pnet.onnx", "mtcnn_rnet.onnx", "mtcnn_onet.onnx"))
    layout = Layout(root)
    assert facenet("model", "checksums", "--artifacts", root).returncode == 0

    def rewrite_onet(context: ExportContext, spec: object) -> list[Path]:
        """A re-export whose bytes differ from the recorded ones (a new metadata entry)."""
        path = context.layout.models_dir / "mtcnn_onet.onnx"
        model = onnx.load(str(path))
        onnx.helper.set_model_props(model, {"re_exported": "yes"})
        onnx.save(model, str(path))
        return [path]

    monkeypatch.setattr(registry, "exporter", lambda spec: rewrite_onet)
    monkeypatch.setattr(registry, "stale_parents", lambda context, selected: [])
    assert "mtcnn" in FORMATS
    results = registry.run_exporters(ExportContext(layout), ["mtcnn"])
    assert [r.name for r in results] == ["mtcnn", registry.PACK_STEP]
    record_files(layout, results[-1].paths)
    ok = facenet("model", "verify", "--artifacts", root)
    assert ok.returncode == 0, ok.stdout + ok.stderr


@pytest.mark.real
def test_verify_stays_clean_after_the_export_writes_the_pack(tmp_path: Path) -> None:
    """The export's last step (``artifacts/pack``: hard links of ``models/``, recorded as
    ``facenet model export`` records what it wrote): ``verify`` is clean, also once the runtime has
    cached an optimized graph in the pack; a flipped pack byte is named by ``verify`` and refused
    by a command (exit 4)."""
    from helpers.real import shared_data

    from toolchain.convert.exporters import ExportContext
    from toolchain.convert.exporters.registry import write_models_pack
    from toolchain.runtime.recognizer import Recognizer

    root = linked_real_tree(tmp_path)
    layout = Layout(root)
    assert facenet("model", "checksums", "--artifacts", root).returncode == 0

    result = write_models_pack(ExportContext(layout), [layout.models_dir / "facenet.onnx"])
    assert result is not None and result.paths == [layout.pack_dir]
    record_files(layout, result.paths)
    manifest = json.loads((layout.pack_dir / "manifest.json").read_text())
    listed = read_sums(layout) or {}
    assert sorted(rel for rel in listed if rel.startswith("pack/")) == sorted(
        f"pack/{rel}" for rel in [*manifest["files"], "manifest.json"])
    with Recognizer.from_artifacts(root, gallery=None) as rec:
        assert rec.embedder.path == layout.pack_dir / "facenet.onnx"
    assert (layout.pack_dir / "facenet.onnx.optimized").is_file()
    ok = facenet("model", "verify", "--artifacts", root)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    victim = layout.pack_dir / "mtcnn_onet.onnx"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.unlink()  # a hard link of models/: replaced, never written in place
    victim.write_bytes(bytes(data))
    bad = facenet("model", "verify", "--artifacts", root)
    assert bad.returncode == 4
    assert (f"{victim}: sha256 does not match {SUMS_NAME}; regenerate it with `nox -s export`"
            in bad.stderr)
    photo = shared_data("photos") / "obama1.jpg"
    refused = facenet("compare", photo, photo, "--artifacts", root)
    assert refused.returncode == 4, refused.stderr
    assert "mtcnn_onet.onnx: sha256 does not match its manifest" in refused.stderr


@pytest.mark.real
def test_a_pack_written_into_the_artifacts_is_recorded(tmp_path: Path) -> None:
    """``facenet model pack --out artifacts/pack-onnxruntime`` (the deployment page's slim pack)
    records the pack in ``SHA256SUMS``: ``verify`` stays clean after it, and again after the pack
    is replaced by a narrower one (its old entries go with its old files)."""
    root = linked_real_tree(tmp_path)
    assert facenet("model", "checksums", "--artifacts", root).returncode == 0
    out = root / "pack-onnxruntime"
    for precision in ("int8", "fp32"):
        made = facenet("model", "pack", "--runtime", "onnxruntime", "--precision", precision,
                       "--out", out, "--artifacts", root)
        assert made.returncode == 0, made.stderr
        listed = sorted(rel for rel in read_sums(Layout(root)) or {}
                        if rel.startswith("pack-onnxruntime/"))
        assert listed == sorted(f"pack-onnxruntime/{p.name}" for p in out.iterdir()), listed
        ok = facenet("model", "verify", "--artifacts", root)
        assert ok.returncode == 0, ok.stdout + ok.stderr


@pytest.mark.real
def test_tampered_optimized_graph_cache_is_never_loaded(tmp_path: Path) -> None:
    """A same-size corruption of ``<model>.optimized`` is rebuilt, never run instead of the model.

    ``toolchain.runtime.ort_options`` records the cache's own sha256 next to the source model's;
    a cache whose bytes changed is rebuilt from the model, and the session gives the model's own
    outputs.
    """
    ort = pytest.importorskip("onnxruntime")
    from toolchain.runtime.ort_options import create_session, optimized_path

    source = artifacts_root() / "models" / "mtcnn_onet.onnx"
    if not source.is_file():
        pytest.skip(f"{source} missing: run `nox -s export` first")
    model = tmp_path / source.name
    shutil.copyfile(source, model)
    create_session(model)
    cache = optimized_path(model)
    data = bytearray(cache.read_bytes())
    for offset in range(len(data) // 2, len(data) // 2 + 64):
        data[offset] ^= 0x55
    cache.write_bytes(bytes(data))

    x = np.random.default_rng(0).random((2, 48, 48, 3), dtype=np.float32)
    plain = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o.name for o in plain.get_outputs()]
    expected = plain.run(names, {plain.get_inputs()[0].name: x})
    session = create_session(model)
    assert cache.read_bytes() != bytes(data), "the corrupt cache was kept"
    got = session.run(names, {session.get_inputs()[0].name: x})
    for want, have in zip(expected, got, strict=True):
        np.testing.assert_allclose(have, want, atol=1e-4)


def test_integrity_imports_no_heavy_modules() -> None:
    """The legacy env and `facenet model verify` use it: standard library only (plus toolchain)."""
    code = ("import sys, toolchain.core.integrity; "
            "print(sorted(m for m in ('numpy', 'onnxruntime', 'tensorflow', 'PIL') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


def test_gallery_sqlite_left_untouched_by_verify(tmp_path: Path) -> None:
    layout = small_tree(tmp_path / "artifacts")
    conn = sqlite3.connect(layout.gallery)
    conn.executescript("CREATE TABLE meta (key TEXT, value TEXT); CREATE TABLE embeddings "
                       "(model_fingerprint TEXT); INSERT INTO meta VALUES ('model_fingerprint', "
                       f"'{sha(b'model bytes')}');")
    conn.close()
    before = layout.gallery.read_bytes()
    write_checksums(layout)
    assert [p for p in verify_artifacts(layout).problems if "source" not in p] == []
    assert layout.gallery.read_bytes() == before


# ---- SHA256SUMS entries may only name files inside the tree; only regular files are read ----

def test_verify_refuses_entries_outside_the_tree(tmp_path: Path) -> None:
    """``<sha>  /abs/path`` was hashed outside the tree and counted as ok; ``..`` anywhere, ``.``
    and empty components are refused too."""
    layout = small_tree(tmp_path / "artifacts")
    write_checksums(layout)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"outside")
    (layout.reports_dir / "sub").mkdir()
    odd = [str(secret), "../secret.txt", "reports/sub/../../../secret.txt",
           "./reports/parity.json", "reports//parity.json"]
    sums = layout.root / SUMS_NAME
    sums.write_text(sums.read_text() + "".join(f"{sha(b'outside')}  {rel}\n" for rel in odd))

    report = verify_artifacts(layout)

    assert report.checked[SUMS_NAME] == 6
    for rel in odd:
        assert any(p.startswith(f"{sums}: lists {rel}, a path outside the artifacts tree")
                   for p in report.problems), rel


def test_special_files_in_the_tree_are_never_read(tmp_path: Path) -> None:
    """A socket where a report was: verify names it, checksums refuses (exit 4), no traceback."""
    layout = small_tree(tmp_path / "artifacts")
    write_checksums(layout)
    node = layout.reports_dir / "parity.json"
    node.unlink()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(node))
    assert f"{node}: a socket, not a regular file (listed in {SUMS_NAME})" in \
        verify_artifacts(layout).problems
    before = (layout.root / SUMS_NAME).read_bytes()
    proc = facenet("model", "checksums", "--artifacts", layout.root)
    assert proc.returncode == 4 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{node}: a socket, not a regular file" in proc.stderr
    assert (layout.root / SUMS_NAME).read_bytes() == before


# ---- `facenet model checksums` blesses nothing that fails its own validation ----

def test_checksums_refuse_to_bless_a_tampered_model(tmp_path: Path) -> None:
    layout = small_tree(tmp_path / "artifacts")
    write_checksums(layout)
    before = (layout.root / SUMS_NAME).read_bytes()
    model = layout.models_dir / "facenet.onnx"
    model.write_bytes(b"model bytez")
    (layout.reports_dir / "parity.json").write_text('{"rerun": true}')

    with pytest.raises(IntegrityError, match=re.escape(
            f"{model}: sha256 no longer matches {SUMS_NAME} (changed outside the toolchain); "
            "regenerate it with `nox -s export`")) as refused:
        write_checksums(layout)
    assert "parity.json" not in str(refused.value), "a report is not loaded: re-listing is fine"
    assert (layout.root / SUMS_NAME).read_bytes() == before

    record_files(layout, [model])  # what a toolchain step that rewrites a model does
    write_checksums(layout)
    listed = read_sums(layout)
    assert listed is not None and listed["models/facenet.onnx"] == sha(b"model bytez")
    assert listed["reports/parity.json"] == sha(b'{"rerun": true}')


def test_checksums_and_verify_refuse_a_stale_savedmodel(tmp_path: Path) -> None:
    layout = small_tree(tmp_path / "artifacts")
    stamp = layout.models_dir / "facenet_savedmodel" / "assets.extra" / "facenet_export.json"
    stamp.parent.mkdir(parents=True)
    stamp.write_text(json.dumps({"manifest_sha256": sha(layout.manifest.read_bytes())}))
    write_checksums(layout)
    assert verify_artifacts(layout).checked["models"] == 1

    stamp.write_text(json.dumps({"manifest_sha256": "0" * 64}))
    record_files(layout, [stamp])
    with pytest.raises(IntegrityError, match=r"facenet_savedmodel: built from weights manifest "
                                             r"sha256 0000000000000000…, .*\(stale\)"):
        write_checksums(layout)
    assert any("(stale); regenerate it with `nox -s export`" in p
               for p in verify_artifacts(layout).problems)


def test_refusing_a_tampered_model_points_at_regenerating_it(tmp_path: Path) -> None:
    layout = small_tree(tmp_path / "artifacts")
    write_checksums(layout)
    (layout.models_dir / "facenet.onnx").write_bytes(b"model bytez")
    with pytest.raises(IntegrityError) as refused:
        verify_file(layout.models_dir / "facenet.onnx", layout)
    assert str(refused.value).endswith("regenerate it with `nox -s export`")
    assert "checksums" not in str(refused.value), "re-blessing is not the remedy"
    fifo = layout.models_dir / "mtcnn_pnet.onnx"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="a FIFO, not a regular file"):
        verify_file(fifo, layout)


# ---- galleries: not in SHA256SUMS; checked read-only, in the tree and with --gallery ----

def make_gallery(path: Path, fingerprint: str, people: int = 2) -> None:
    from toolchain.gallery import Entry

    rng = np.random.default_rng(0)
    with open_gallery(path, fingerprint=fingerprint, create=True) as gallery:
        gallery.add([Entry(f"Person {i}", rng.normal(size=128).astype(np.float32), f"{i}.jpg",
                           f"{i:064x}", (0, 0, 9, 9)) for i in range(people)])


def test_galleries_are_not_listed_in_sums(tmp_path: Path) -> None:
    layout = small_tree(tmp_path / "artifacts")
    model_sha = sha(b"model bytes")
    make_gallery(layout.root / "demo_gallery.db", model_sha)
    make_gallery(layout.reports_dir / "mine.db", model_sha)
    (layout.root / "demo_gallery.db-wal").write_bytes(b"")
    write_checksums(layout)
    listed = read_sums(layout)
    assert listed is not None and not [rel for rel in listed if ".db" in rel]
    make_gallery(layout.root / "demo_gallery.db", model_sha, people=3)  # one more enrollment
    report = verify_artifacts(layout)
    assert [p for p in report.problems if "source" not in p] == []
    assert report.checked["galleries"] == 2


def test_verify_checks_every_gallery_of_the_tree(tmp_path: Path) -> None:
    layout = small_tree(tmp_path / "artifacts")
    make_gallery(layout.root / "demo_gallery.db", "e" * 64)
    write_checksums(layout)
    assert any(f"{layout.root / 'demo_gallery.db'}: made with model sha256 eeeeeeeeeeeeeeee…"
               in p for p in verify_artifacts(layout).problems)


def test_gallery_schema_known_to_verify_is_the_real_one(tmp_path: Path) -> None:
    from toolchain import gallery as gallery_module

    path = tmp_path / "g.db"
    make_gallery(path, "e" * 64)
    with closing(sqlite3.connect(path)) as conn:
        tables = {name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        columns = {table: frozenset(row[1] for row in conn.execute(f"PRAGMA table_info({table})"))
                   for table in tables}
    assert columns == GALLERY_COLUMNS
    assert str(gallery_module.SCHEMA_VERSION) == GALLERY_SCHEMA_VERSION
    assert check_gallery_file(path, "e" * 64) == []


def set_vector(path: Path, row: int, blob: bytes) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE embeddings SET vector = ? WHERE id = ?", (blob, row))


GALLERY_DAMAGE = {
    "near-zero": (lambda p: set_vector(p, 1, np.full(128, 1e-25, "<f4").tobytes()),
                  "embedding 1 ('Person 0'): norm 1.13137e-24, not a unit vector"),
    "nan": (lambda p: set_vector(p, 2, np.full(128, np.nan, "<f4").tobytes()),
            "embedding 2 ('Person 1'): non-finite values"),
    "short": (lambda p: set_vector(p, 1, b"\0" * 12), "a vector of 12 bytes, not 128 float32"),
    "threshold": (lambda p: sqlite_exec(p, "INSERT INTO meta VALUES ('threshold', '1e300')"),
                  "stored threshold '1e300' is not a distance in (0, 2]"),
    "crop": (lambda p: sqlite_exec(p, "UPDATE meta SET value = 'tilted' WHERE key = 'crop'"),
             "stored crop 'tilted' is not a crop spec"),
    "other-model-row": (lambda p: sqlite_exec(p, "UPDATE embeddings SET model_fingerprint = "
                                                 f"'{'1' * 64}' WHERE id = 1"),
                        "1 embedding(s) recorded with another model"),
    "orphan": (lambda p: sqlite_exec(p, "DELETE FROM people WHERE id = 1"),
               "1 embedding(s) belong to no person"),
    "schema": (lambda p: sqlite_exec(p, "ALTER TABLE people DROP COLUMN created"),
               "not a facenet gallery (table people has columns missing ['created']"),
    "version": (lambda p: sqlite_exec(p, "UPDATE meta SET value = '9' WHERE key = "
                                         "'schema_version'"), "schema version '9'"),
    "not-sqlite": (lambda p: p.write_bytes(b"just text " * 100),
                   "not a readable facenet gallery (file is not a database)"),
}


def sqlite_exec(path: Path, statement: str) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(statement)


@pytest.mark.parametrize("damage", sorted(GALLERY_DAMAGE))
def test_check_gallery_file_names_what_is_wrong(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "g.db"
    make_gallery(path, "e" * 64)
    apply, phrase = GALLERY_DAMAGE[damage]
    apply(path)
    before = path.read_bytes()
    problems = check_gallery_file(path, "e" * 64)
    assert len(problems) == 1 and problems[0].startswith(f"{path}: ") and phrase in problems[0]
    assert path.read_bytes() == before


def test_verify_gallery_on_the_command_line(tmp_path: Path) -> None:
    layout = small_tree(tmp_path / "artifacts")
    write_checksums(layout)
    gallery = tmp_path / "mine.db"
    make_gallery(gallery, sha(b"model bytes"))
    ok = facenet("model", "verify", "--gallery", gallery, "--artifacts", layout.root)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"verified {gallery}: gallery 1 ok"

    (layout.models_dir / "facenet.onnx").write_bytes(b"model bytez")
    tampered = facenet("model", "verify", "--gallery", gallery, "--artifacts", layout.root)
    assert tampered.returncode == 4
    assert "refusing to load" in tampered.stderr and "nox -s export" in tampered.stderr


def test_a_web_report_the_browser_tests_write_keeps_the_tree_verified(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The browser tests write screenshots and ``local.json`` into the user's artifacts after the
    main job listed them: each is listed as it is written, so the checksum check of ``facenet
    model verify`` passes (a file written around it is "not listed"), a second write too."""
    from helpers.real import write_web_report

    layout = small_tree(tmp_path / "artifacts")
    write_checksums(layout)
    monkeypatch.setenv("FACENET_ARTIFACTS", str(layout.root))
    write_web_report("enroll.png", b"first")
    write_web_report("local.json", b"{}\n")
    write_web_report("enroll.png", b"second")
    assert check_sums(layout)[1] == []
    assert (layout.reports_dir / "web" / "enroll.png").read_bytes() == b"second"
    (layout.reports_dir / "web" / "unlisted.png").write_bytes(b"written around it")
    assert check_sums(layout)[1] == [f"{layout.reports_dir / 'web' / 'unlisted.png'}: not listed "
                                     f"in {SUMS_NAME}"]
