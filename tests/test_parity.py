"""The parity helper on synthetic arrays (it must be able to fail) and on every real export."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from toolchain.convert import parity
from toolchain.convert.formats import FACENET_FORMATS, FP32, Tolerance, model_paths, tolerance
from toolchain.convert.parity import ORIGINAL, Reference, compare, identify, run_parity
from toolchain.convert.parity import checks as parity_checks
from toolchain.convert.parity.report import check_line
from toolchain.core.contracts import REFERENCE_INDEX_FORMAT
from toolchain.core.crop import DEFAULT_CROP
from toolchain.core.errors import MissingArtifactError, ParityError
from toolchain.core.paths import Layout
from toolchain.core.preprocess import l2_normalize

REAL = Layout(Path(os.environ.get("FACENET_ARTIFACTS", "artifacts")))


def _embeddings(n: int = 12, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 128)).astype(np.float32)


def _by_check(checks: list[parity.Check]) -> dict[str, parity.Check]:
    return {c.check: c for c in checks}


def test_identical_arrays_pass_with_zero_difference() -> None:
    e = _embeddings()
    checks = _by_check(compare("onnx", ORIGINAL, e.copy(), e, FP32))
    assert all(c.ok for c in checks.values())
    assert checks["values"].max_abs == 0.0
    assert checks["values"].min_cos == pytest.approx(1.0, abs=1e-15)


def test_shape_dtype_and_values_fail_separately() -> None:
    e = _embeddings()
    wrong_shape = _by_check(compare("onnx", ORIGINAL, e[:, :64], e, FP32))
    assert not wrong_shape["shape"].ok and wrong_shape["dtype"].ok and not wrong_shape["values"].ok
    wrong_dtype = _by_check(compare("onnx", ORIGINAL, e.astype(np.float64), e, FP32))
    assert wrong_dtype["shape"].ok and not wrong_dtype["dtype"].ok and wrong_dtype["values"].ok
    nudged = e.copy()
    nudged[3, 5] += 0.05 * np.linalg.norm(e[3])
    values = _by_check(compare("onnx", ORIGINAL, nudged, e, FP32))["values"]
    assert not values.ok and values.max_abs is not None and values.max_abs > 1e-5
    nan = e.copy()
    nan[0, 0] = np.nan
    assert not _by_check(compare("onnx", ORIGINAL, nan, e, FP32))["values"].ok


def test_scale_does_not_matter_but_direction_does() -> None:
    e = _embeddings()
    assert _by_check(compare("tflite", ORIGINAL, 3.0 * e, e, FP32))["values"].ok
    noisy = e + 0.02 * _embeddings(seed=1)
    loose = _by_check(compare("tflite-int8", ORIGINAL, noisy, e, tolerance("tflite-int8")))
    strict = _by_check(compare("tflite", ORIGINAL, noisy, e, tolerance("tflite")))
    assert loose["values"].ok and not strict["values"].ok


def test_cosine_limit_alone() -> None:
    e = _embeddings()
    tol = Tolerance(max_abs=None, min_cos=0.9999)
    noisy = e + 0.1 * _embeddings(seed=2)
    check = _by_check(compare("x", ORIGINAL, noisy, e, tol))["values"]
    assert not check.ok and check.min_cos is not None and check.min_cos < 0.9999


def _reference(persons: list[str], splits: list[str], emb: np.ndarray) -> Reference:
    n = len(persons)
    return Reference(
        crops=np.zeros((n, 160, 160, 3), np.uint8),
        embeddings=emb,
        splits=tuple(splits),
        persons=tuple(persons),
        paths=tuple(
            f"{s}/{p}/{i}.jpg" for i, (s, p) in enumerate(zip(splits, persons, strict=True))
        ),
    )


def _clustered(people: int, per_person: int, spread: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((people, 128))
    rows = [c + spread * rng.standard_normal(128) for c in centers for _ in range(per_person)]
    return np.asarray(rows, np.float32)


def test_identification_and_its_failure() -> None:
    emb = _clustered(3, 4, 0.1)
    persons = [p for p in "abc" for _ in range(4)]
    splits = ["train", "train", "train", "val"] * 3
    ref = _reference(persons, splits, emb)
    assert identify(emb, ref).correct_closed == 3
    swapped = emb.copy()
    swapped[3], swapped[7] = emb[7], emb[3]  # the val rows of a and b trade places
    got = identify(swapped, ref)
    assert (got.correct_closed, got.total) == (1, 3) and len(got.mistakes) == 2


def _fake_layout(tmp_path: Path, n_per: int = 3) -> tuple[Layout, np.ndarray]:
    layout = Layout(tmp_path)
    layout.reference_dir.mkdir(parents=True)
    emb = _clustered(2, n_per, 0.1)
    photos = []
    for row in range(len(emb)):
        split = "val" if row % n_per == n_per - 1 else "train"
        person = "ab"[row // n_per]
        photos.append(
            {
                "split": split,
                "person": person,
                "path": f"{split}/{person}/{row}.jpg",
                "status": "ok",
                "row": row,
            }
        )
    photos.append({"split": "train", "person": "a", "path": "train/a/x.jpg", "status": "no_face"})
    np.savez(
        layout.reference_dir / "reference.npz",
        crops=np.full((len(emb), 160, 160, 3), 7, np.uint8),
        embeddings=emb,
    )
    (layout.reference_dir / "index.json").write_text(
        json.dumps({"format": REFERENCE_INDEX_FORMAT, "photos": photos})
    )
    return layout, emb


def test_run_parity_reports_every_format_then_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout, emb = _fake_layout(tmp_path)
    paths = {}
    for fmt in ("keras", "onnx", "tflite-int8"):
        paths[fmt] = tmp_path / f"{fmt}.bin"
        paths[fmt].write_bytes(b"x")

    def good(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
        return {"embedding": emb.copy(), "embedding_l2": l2_normalize(emb)}

    def bad(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
        off = emb + 0.5 * _embeddings(len(emb), seed=3)
        return {"embedding": off, "embedding_l2": l2_normalize(off)}

    runs = {"keras": good, "onnx": bad, "tflite-int8": good}
    monkeypatch.setattr(parity_checks, "run_format", lambda fmt, path, x: runs[fmt](path, x))
    emitted: list[str] = []
    with pytest.raises(ParityError) as err:
        run_parity(layout, paths, emit=emitted.append)
    table = emitted[0]
    assert "[ok] keras" in table and "[ok] tflite-int8" in table
    assert "[x]  onnx         vs original    values" in table
    assert err.value.exit_code == 7 and "onnx vs original values" in str(err.value)
    report = json.loads((layout.reports_dir / "parity.json").read_text())
    assert report["ok"] is False and report["no_face"] == ["train/a/x.jpg"]
    assert set(report["formats"]) == {"keras", "onnx", "tflite-int8"}
    assert (layout.reports_dir / "parity.png").stat().st_size > 10_000
    assert "| onnx | original |" in (layout.reports_dir / "parity.md").read_text()


def test_run_parity_missing_inputs(tmp_path: Path) -> None:
    layout, _ = _fake_layout(tmp_path)
    with pytest.raises(MissingArtifactError, match="nox -s export"):
        run_parity(layout, {"onnx": tmp_path / "absent.onnx"})
    (layout.reference_dir / "reference.npz").unlink()
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(MissingArtifactError, match="nox -s recover"):
        run_parity(layout, {"onnx": tmp_path / "m.onnx"})


@pytest.fixture(scope="module")
def real_report(tmp_path_factory: pytest.TempPathFactory) -> parity.ParityReport:
    models = model_paths(REAL.models_dir)
    missing = [str(p) for p in models.values() if not p.exists()]
    if missing or not (REAL.reference_dir / "reference.npz").is_file():
        pytest.skip(f"exported models or reference missing ({missing}): run `nox -s export`")
    root = tmp_path_factory.mktemp("parity")
    (root / "reference").symlink_to(REAL.reference_dir.resolve())
    return run_parity(Layout(root), models)


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.parametrize("fmt", list(FACENET_FORMATS))
def test_real_format_matches_the_original(real_report: parity.ParityReport, fmt: str) -> None:
    checks = {(c.against, c.check): c for c in real_report.checks if c.fmt == fmt}
    for key in (
        (ORIGINAL, "shape"),
        (ORIGINAL, "dtype"),
        (ORIGINAL, "values"),
        ("self", "l2-output"),
        ("labels", "identification"),
    ):
        assert checks[key].ok, check_line(checks[key])
    assert checks[("labels", "identification")].detail.startswith("25/25")
    values = checks[(ORIGINAL, "values")]
    assert values.min_cos is not None and values.min_cos >= tolerance(fmt).min_cos
    parent = FACENET_FORMATS[fmt].parent
    if parent is not None:
        assert checks[(parent, "values")].ok


@pytest.mark.real
@pytest.mark.slow
def test_real_original_identifies_everyone(real_report: parity.ParityReport) -> None:
    (check,) = [c for c in real_report.checks if c.fmt == ORIGINAL]
    assert check.ok and check.detail.startswith("25/25")
    defaults = real_report.model_defaults
    assert 0.5 < float(defaults["default_threshold"]) < 1.5
    assert defaults["default_crop"] == DEFAULT_CROP.text
    assert "FAR 0.001" in defaults["threshold_policy"]
