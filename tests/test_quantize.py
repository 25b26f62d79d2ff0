"""The ``onnx-int8`` exporter: calibration on train crops only, accuracy bound, atomic output."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers.real import artifacts_root

from toolchain.convert.exporters.onnx_int8 import export_onnx_int8
from toolchain.convert.formats import FORMATS, tolerance
from toolchain.convert.int8_sweep import VariantRecord, best_variant
from toolchain.convert.parity import Reference, load_reference
from toolchain.convert.quantize import (
    CHOSEN,
    MIN_COSINE,
    Int8Check,
    Int8Variant,
    calibration_batches,
    check_int8,
    embed,
    export_int8,
    run_model,
)
from toolchain.core.contracts import ONNX_INT8_FILE
from toolchain.core.errors import MissingArtifactError, ParityError
from toolchain.core.paths import Layout
from toolchain.core.preprocess import prewhiten


def _synthetic_reference(splits: list[str]) -> Reference:
    rng = np.random.default_rng(1)
    n = len(splits)
    return Reference(
        crops=rng.integers(0, 256, (n, 160, 160, 3), dtype=np.uint8),
        embeddings=rng.standard_normal((n, 128)).astype(np.float32),
        splits=tuple(splits),
        persons=tuple(f"p{i % 2}" for i in range(n)),
        paths=tuple(f"{s}/p{i % 2}/{i}.jpg" for i, s in enumerate(splits)),
    )


def test_calibration_uses_train_crops_only() -> None:
    reference = _synthetic_reference(["train", "val", "train", "val", "val", "train"])
    batches = calibration_batches(reference)
    got = np.concatenate(batches)
    train = [i for i, s in enumerate(reference.splits) if s == "train"]
    np.testing.assert_array_equal(got, prewhiten(reference.crops[train]))
    assert len({len(b) for b in batches}) == 1, "histogram calibrators need equal batches"


def test_no_train_crops_is_refused() -> None:
    with pytest.raises(MissingArtifactError, match="nox -s recover"):
        calibration_batches(_synthetic_reference(["val", "val"]))


def test_missing_fp32_model_names_the_session(tmp_path: Path) -> None:
    with pytest.raises(MissingArtifactError, match="nox -s export"):
        export_int8(Layout(tmp_path))
    assert not (tmp_path / "models" / ONNX_INT8_FILE).exists()


def test_exporter_is_registered() -> None:
    from toolchain.convert.exporters.registry import exporter

    spec = FORMATS["onnx-int8"]
    assert spec.parent == "onnx" and spec.in_all
    assert exporter(spec) is export_onnx_int8
    assert tolerance("onnx-int8").min_cos == MIN_COSINE


def test_check_rejects_a_wrong_l2_output() -> None:
    reference = _synthetic_reference(["train", "train", "val", "val"])
    raw = reference.embeddings.copy()
    good = check_int8({"embedding": raw}, raw, reference)
    assert good.min_cos_original == pytest.approx(1.0)
    bad_l2 = np.ones_like(raw)
    bad = check_int8({"embedding": raw, "embedding_l2": bad_l2}, raw, reference)
    assert bad.l2_max_abs is not None and bad.l2_max_abs > 0.1
    assert not bad.ok


def _record(name: str, speedup: float, val_cos: float, ok: bool = True) -> VariantRecord:
    check = Int8Check(0.999 if ok else 0.9, val_cos, val_cos, 0.999, 25, 25)
    return VariantRecord(Int8Variant(name), check, 100.0 * speedup, 100.0, speedup)


def test_best_variant_breaks_speed_ties_by_val_accuracy() -> None:
    records = [
        _record("fast-inaccurate", 3.0, 0.9960),
        _record("tied-accurate", 2.8, 0.9990),
        _record("slow-most-accurate", 2.0, 0.9999),
        _record("fastest-but-rejected", 5.0, 0.9999, ok=False),
    ]
    best = best_variant(records)
    assert best is not None and best.variant.name == "tied-accurate"
    assert best_variant([records[-1]]) is None


def _real_layout(tmp_path: Path) -> Layout:
    """A layout whose fp32 ONNX and reference are the real ones (links), written to tmp."""
    real = Layout(artifacts_root())
    onnx_path = real.models_dir / "facenet.onnx"
    for needed, session in ((onnx_path, "export"), (real.reference_dir / "reference.npz",
                                                    "recover")):
        if not needed.is_file():
            pytest.skip(f"{needed} missing: run `nox -s {session}` first")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "facenet.onnx").symlink_to(onnx_path.resolve())
    (tmp_path / "reference").symlink_to(real.reference_dir.resolve())
    return Layout(tmp_path)


@pytest.mark.real
@pytest.mark.slow
def test_int8_export_meets_the_bound_on_real_crops(tmp_path: Path) -> None:
    import onnx

    layout = _real_layout(tmp_path)
    result = export_int8(layout)
    assert result.path == layout.models_dir / ONNX_INT8_FILE and result.path.is_file()
    onnx.checker.check_model(str(result.path))
    reference = load_reference(layout)
    assert result.calibration_crops == reference.splits.count("train")
    # Recomputed from the written file, independently of the exporter's own check.
    x = prewhiten(reference.crops)
    outputs = run_model(result.path, x)
    check = check_int8(outputs, embed(layout.models_dir / "facenet.onnx", x), reference)
    assert check.min_cos_original >= MIN_COSINE
    assert check.min_cos_original_val >= MIN_COSINE
    assert (check.identified, check.total) == (25, 25)
    assert check.l2_max_abs is not None and check.l2_max_abs <= 1e-5
    props = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert "TRAIN" in props["quantization"] and CHOSEN.name in props["quantization"]
    assert props["default_threshold"]  # the fp32 model's contract metadata is kept


@pytest.mark.real
@pytest.mark.slow
def test_a_variant_off_the_bound_writes_nothing(tmp_path: Path) -> None:
    layout = _real_layout(tmp_path)
    coarse = replace(Int8Variant("too-coarse"), per_channel=False, reduce_range=True,
                     exclude=())
    with pytest.raises(ParityError, match="misses the bound"):
        export_int8(layout, coarse)
    assert not (layout.models_dir / ONNX_INT8_FILE).exists()
    assert [p.name for p in layout.models_dir.iterdir()] == ["facenet.onnx"]


@pytest.mark.real
def test_exported_int8_artifact_meets_the_bound() -> None:
    layout = Layout(artifacts_root())
    path = layout.models_dir / ONNX_INT8_FILE
    if not path.is_file():
        pytest.skip(f"{path} missing: run `nox -s export` first")
    reference = load_reference(layout)
    x = prewhiten(reference.crops)
    check = check_int8(run_model(path, x), embed(layout.models_dir / "facenet.onnx", x), reference)
    assert check.ok, check.describe()
    assert (check.identified, check.total) == (25, 25)


@pytest.mark.real
def test_exported_int8_keeps_first_conv_and_head_in_float() -> None:
    """What the README says of the chosen variant, read from the exported QDQ graph itself.

    A Conv or MatMul runs in int8 when its weight (input 1) comes from a ``DequantizeLinear``
    node (an activation may be dequantized into a float node; ORT fuses only when both are). The
    stem's first convolution and the dense head must keep float weights, while every convolution
    in between is quantized.
    """
    import onnx

    path = Layout(artifacts_root()).models_dir / ONNX_INT8_FILE
    if not path.is_file():
        pytest.skip(f"{path} missing: run `nox -s export` first")
    nodes = list(onnx.load(str(path)).graph.node)
    dequantized = {out for n in nodes if n.op_type == "DequantizeLinear" for out in n.output}

    def int8_weight(node: onnx.NodeProto) -> bool:
        return node.input[1] in dequantized

    convs = [n for n in nodes if n.op_type == "Conv"]
    dense = [n for n in nodes if n.op_type in ("MatMul", "Gemm")]
    assert convs and dense
    assert not int8_weight(convs[0]), f"first conv {convs[0].name} is quantized"
    assert not int8_weight(dense[-1]), f"head {dense[-1].name} is quantized"
    assert all(int8_weight(n) for n in convs[1:]), "a convolution after the first is in float"


@pytest.mark.real
@pytest.mark.slow
def test_bench_int8_command_reports_two_variants(tmp_path: Path) -> None:
    """``facenet bench int8 --variant A --variant B --repeats 1`` on the real fp32 model and crops
    (linked into tmp_path; the report is written there): one row per variant named, each with its
    parity numbers and verdict. The two differ only by the stem's first convolution: kept in float
    it meets the cosine bound (accepted, the best); quantized it does not (rejected), though every
    val crop is still identified."""
    import json

    from helpers.cli import facenet

    from toolchain.convert.int8_sweep import VARIANTS_REPORT

    layout = _real_layout(tmp_path)
    wanted = ["qdq-pc-u8s8-first-float", "qdq-pc-u8s8"]
    run = facenet("bench", "int8", "--artifacts", layout.root, "--repeats", "1",
                  *(a for name in wanted for a in ("--variant", name)))
    assert run.returncode == 0, run.stderr
    report = json.loads((layout.reports_dir / VARIANTS_REPORT).read_text())
    rows = {row["variant"]["name"]: row for row in report["variants"]}
    assert list(rows) == wanted
    good, stem = rows["qdq-pc-u8s8-first-float"], rows["qdq-pc-u8s8"]
    assert good["variant"]["exclude"] == ["first_conv", "head"]
    assert stem["variant"]["exclude"] == ["head"]
    for row in (good, stem):
        assert row["error"] is None and len(row["timings_b16_s"]) == 1
        assert row["speedup_vs_fp32"] > 0 and row["quantize_seconds"] > 0
        assert (row["check"]["identified"], row["check"]["total"]) == (25, 25)
        assert row["check"]["l2_max_abs"] <= 1e-5
        assert row["size_bytes"] < (layout.models_dir / "facenet.onnx").stat().st_size / 2
    assert good["accepted"] and good["check"]["min_cos_original"] >= MIN_COSINE
    assert good["check"]["min_cos_original_val"] >= MIN_COSINE
    assert not stem["accepted"] and stem["check"]["min_cos_original"] < 0.9
    assert report["best"] == "qdq-pc-u8s8-first-float"
    assert report["min_cosine_bound"] == MIN_COSINE and report["chosen_in_code"] == CHOSEN.name
    lines = run.stdout.splitlines()
    assert lines[0].startswith("qdq-pc-u8s8-first-float ") and " ok " in lines[0]
    assert lines[1].startswith("qdq-pc-u8s8 ") and " off " in lines[1]
    assert ": qdq-pc-u8s8-first-float;" in lines[2]


def test_bench_int8_refuses_an_unknown_variant(tmp_path: Path) -> None:
    from helpers.cli import facenet

    run = facenet("bench", "int8", "--artifacts", tmp_path, "--variant", "qdq-bogus")
    assert run.returncode == 2 and "unknown variant 'qdq-bogus'" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "reports").exists()
