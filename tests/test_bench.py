"""``facenet bench runtimes``: runs on the tiny setting and writes valid JSON / Markdown / PNG.

Not a timed test: nothing here depends on how fast anything is.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers.cli import facenet
from helpers.real import artifacts_root
from PIL import Image

from toolchain.bench.config import BenchConfig
from toolchain.bench.inputs import (
    bench_formats,
    bench_label,
    check_artifacts,
    model_files,
    real_photos,
)
from toolchain.bench.machine import ISA_FLAGS
from toolchain.bench.report import REPORT_NAMES, markdown, write_reports
from toolchain.bench.rows import (
    DLIB_REAL,
    FULL_REAL,
    LARGE_ROW,
    OURS_REAL,
    UPSCALED_SIZE,
    VIDEO_CLIP_RATE,
    BenchReport,
    Row,
    Section,
    video_row,
)
from toolchain.bench.specs import (
    DetectSpec,
    PairedSpec,
    RecognizeSpec,
    VideoSpec,
    decode,
    encode,
)
from toolchain.bench.targets import add_ratios, evaluate_targets
from toolchain.bench.video import CLIP
from toolchain.bench.worker import ORT_SETTINGS
from toolchain.core.errors import MissingArtifactError
from toolchain.core.paths import Layout

BENCH_LABELS = [bench_label(spec.name) for spec in bench_formats()]

TARGET_NAMES = {
    "ORT fp32 batch 16 vs the sgemm rate",
    "ORT int8 vs ORT fp32, batch 16",
    "ORT fp32 vs TF SavedModel, batch 1",
    "detection: onnx mtcnn vs mtcnn package",
    "end to end: recognize vs seed-style",
    "cold start of `facenet recognize one.jpg`",
    "real-size photos: recognize images/s",
    "real-size photos: recognize vs face_recognition CLI",
    "peak RSS of `facenet recognize` on a 24 MP photo (MB)",
    "video: recognize --every 3 with tracking vs real time",
    "video at 1920x1080: recognize --every 3 vs real time, same tracks",
}


def expected_rows() -> set[tuple[str, str]]:
    """``(section, name)`` of every row a bench run must report."""
    rows = {("sgemm", f"numpy float32 matmul 256^3 ({w})") for w in ("start", "end")}
    rows |= {("embedding", f"{rt} {b}") for rt in BENCH_LABELS for b in ("b1", "b16")}
    rows |= {("paired", f"{rt} {b} (alternated)")
             for rt in ("ort-fp32", "ort-int8", "ov-fp32", "ov-int8") for b in ("b1", "b16")}
    rows |= {("ort_options", f"{label} {b}") for label in ORT_SETTINGS for b in ("b1", "b16")}
    rows |= {("ort_options", f"fresh process: import + session, {w}")
             for w in ("cached optimized graph", "optimized at load")}
    rows |= {("detection", "mtcnn package"), ("detection", "onnx mtcnn")}
    rows |= {("end_to_end", "seed-style (mtcnn package + Keras predict per face)"),
             ("end_to_end", "facenet recognize pipeline (onnx mtcnn + ort)")}
    rows |= {("cold_start", "TF pipeline (mtcnn package + Keras) recognize one.jpg"),
             ("cold_start", "facenet recognize one.jpg")}
    if real_photos(BenchConfig().real_photos) is not None:
        rows |= {("real_size", OURS_REAL), ("real_size", FULL_REAL), ("real_size", LARGE_ROW)}
        if (BenchConfig().real_photos / CLIP).is_file():
            rows |= {("video", video_row(1)), ("video", video_row(3)), ("video", VIDEO_CLIP_RATE),
                     ("video", video_row(3, UPSCALED_SIZE))}
    return rows


def test_missing_artifacts_fail_with_the_nox_session(tmp_path: Path) -> None:
    proc = facenet("bench", "runtimes", "--quick", "--artifacts", str(tmp_path))
    assert proc.returncode == 6
    assert proc.stderr.startswith("facenet: error: the bench needs")
    assert "`nox -s fetch`" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "reports").exists()


def test_missing_model_names_export(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    layout.dataset_dir.mkdir(parents=True)
    layout.reference_dir.mkdir(parents=True)
    for name in ("reference.npz", "index.json"):
        (layout.reference_dir / name).write_bytes(b"x")
    with pytest.raises(MissingArtifactError, match=r"facenet_int8\.onnx.*`nox -s export`"):
        check_artifacts(layout)


def _synthetic_rows() -> list[Row]:
    rows = [Row("sgemm", "numpy float32 matmul 256^3 (start)", "GFLOP/s", [100.0, 110.0, 90.0])]
    speeds = {"keras": 10.0, "savedmodel": 20.0, "ort-fp32": 30.0, "ort-int8": 60.0,
              "litert-fp32": 15.0, "litert-fp16": 14.0, "litert-int8": 25.0}
    for runtime, speed in speeds.items():
        for batch, factor in (("b1", 1.0), ("b16", 1.5)):
            rows.append(Row("embedding", f"{runtime} {batch}", "faces/s",
                            [speed * factor * 0.9, speed * factor, speed * factor * 1.2],
                            peak_rss_mb=100.0))
    rows += [
        Row("detection", "mtcnn package", "ms/image", [100.0, 120.0], False, "mtcnn package"),
        Row("detection", "onnx mtcnn", "ms/image", [20.0, 30.0], False, "mtcnn package"),
        Row("end_to_end", "seed-style (mtcnn package + Keras predict per face)", "images/s",
            [1.0], baseline="seed-style (mtcnn package + Keras predict per face)"),
        Row("end_to_end", "facenet recognize pipeline (onnx mtcnn + ort)", "images/s", [5.0],
            baseline="seed-style (mtcnn package + Keras predict per face)"),
        Row("cold_start", "TF pipeline (mtcnn package + Keras) recognize one.jpg", "s", [9.0],
            False, "TF pipeline (mtcnn package + Keras) recognize one.jpg", peak_rss_mb=900.0),
        Row("cold_start", "facenet recognize one.jpg", "s", [2.0], False,
            "TF pipeline (mtcnn package + Keras) recognize one.jpg", peak_rss_mb=200.0,
            detail={"bytecode": "compiled at every start"}),
        Row(Section.REAL_SIZE, OURS_REAL, "images/s", [12.0, 11.0], baseline=DLIB_REAL,
            detail={"photos": 15, "megapixels": {"median": 0.75}}),
        Row(Section.REAL_SIZE, FULL_REAL, "images/s", [3.0], baseline=DLIB_REAL),
        Row(Section.REAL_SIZE, DLIB_REAL, "images/s", [2.0], baseline=DLIB_REAL),
        Row(Section.REAL_SIZE, LARGE_ROW, "s", [1.5], False, peak_rss_mb=1100.0),
        Row(Section.VIDEO, video_row(1), "frames/s", [6.0], baseline=VIDEO_CLIP_RATE),
        Row(Section.VIDEO, video_row(3), "frames/s", [33.0, 30.0], baseline=VIDEO_CLIP_RATE),
        Row(Section.VIDEO, video_row(3, UPSCALED_SIZE), "frames/s", [31.0],
            baseline=VIDEO_CLIP_RATE, detail={"same_tracks_as_clip": False}),
        Row(Section.VIDEO, VIDEO_CLIP_RATE, "frames/s", [29.97]),
    ]
    return rows


def test_ratios_and_targets_from_medians() -> None:
    rows = _synthetic_rows()
    add_ratios(rows)
    by_name = {(r.section, r.name): r for r in rows}
    fp32 = by_name[("embedding", "ort-fp32 b16")]
    assert fp32.baseline == "savedmodel b16"
    assert fp32.ratio == pytest.approx(45.0 / 30.0)
    assert fp32.gflops == pytest.approx(45.0 * 2.83)
    assert fp32.sgemm_fraction == pytest.approx(45.0 * 2.83 / 100.0)
    assert by_name[("detection", "onnx mtcnn")].ratio == pytest.approx(110.0 / 25.0)
    assert by_name[("cold_start", "facenet recognize one.jpg")].ratio == pytest.approx(4.5)
    targets = {t.name: t for t in evaluate_targets(rows)}
    assert set(targets) == TARGET_NAMES
    assert targets["ORT int8 vs ORT fp32, batch 16"].value == pytest.approx(2.0)
    assert targets["ORT int8 vs ORT fp32, batch 16"].met
    assert targets["ORT fp32 vs TF SavedModel, batch 1"].value == pytest.approx(1.5)
    assert not targets["ORT fp32 vs TF SavedModel, batch 1"].met
    assert targets["detection: onnx mtcnn vs mtcnn package"].met
    assert targets["end to end: recognize vs seed-style"].met
    cold = targets["cold start of `facenet recognize one.jpg`"]
    assert not cold.met and cold.goal == "<= 0.5 s"
    assert cold.detail == "median of 1 fresh processes; bytecode compiled at every start"
    assert targets["ORT fp32 batch 16 vs the sgemm rate"].met
    assert targets["real-size photos: recognize images/s"].value == pytest.approx(11.5)
    assert targets["real-size photos: recognize images/s"].met
    assert targets["real-size photos: recognize vs face_recognition CLI"].value == \
        pytest.approx(5.75)
    assert not targets["real-size photos: recognize vs face_recognition CLI"].met
    assert not targets["peak RSS of `facenet recognize` on a 24 MP photo (MB)"].met
    assert by_name[(Section.REAL_SIZE, FULL_REAL)].ratio == pytest.approx(1.5)
    video = targets["video: recognize --every 3 with tracking vs real time"]
    assert video.value == pytest.approx(31.5 / 29.97) and video.met
    assert by_name[(Section.VIDEO, video_row(1))].ratio == pytest.approx(6.0 / 29.97)
    upscaled = targets["video at 1920x1080: recognize --every 3 vs real time, same tracks"]
    assert upscaled.value == pytest.approx(31.0 / 29.97)
    assert not upscaled.met and "DIFFER" in upscaled.detail


def test_real_size_targets_are_not_measured_without_their_rows() -> None:
    rows = [r for r in _synthetic_rows() if r.section != Section.REAL_SIZE]
    targets = {t.name: t for t in evaluate_targets(rows)}
    for name in ("real-size photos: recognize images/s",
                 "real-size photos: recognize vs face_recognition CLI",
                 "peak RSS of `facenet recognize` on a 24 MP photo (MB)"):
        assert targets[name].value is None and not targets[name].met
        assert targets[name].detail == "not measured"


def test_real_photos_need_photos_and_people(tmp_path: Path) -> None:
    assert real_photos(tmp_path) is None
    (tmp_path / "photos").mkdir()
    (tmp_path / "people" / "ada").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "photos" / "q.jpg")
    assert real_photos(tmp_path) is None
    Image.new("RGB", (8, 8)).save(tmp_path / "people" / "ada" / "a.png")
    assert real_photos(tmp_path) == ([tmp_path / "photos" / "q.jpg"],
                                     [("ada", tmp_path / "people" / "ada" / "a.png")])


def test_reports_are_written(tmp_path: Path) -> None:
    rows = _synthetic_rows()
    add_ratios(rows)
    meta = {"started": "now", "duration_s": 1.0, "quick": True, "repeats": 1, "e2e_repeats": 1,
            "cold_runs": 1, "cpu": "test cpu", "isa": ["avx2"], "cores": 2,
            "loadavg_before": [0.1, 0.1, 0.1], "loadavg_after": [0.2, 0.1, 0.1]}
    report = BenchReport(rows, evaluate_targets(rows), meta)
    paths = write_reports(Layout(tmp_path), report)
    assert [p.name for p in paths] == list(REPORT_NAMES)
    _check_outputs(Layout(tmp_path), {(r.section, r.name) for r in rows})
    assert markdown(report).count("| NO |") == 5


def _check_outputs(layout: Layout, rows: set[tuple[str, str]]) -> dict:
    doc = json.loads((layout.reports_dir / "bench.json").read_text())
    got = {(r["section"], r["name"]) for r in doc["rows"]}
    assert rows <= got, f"missing rows: {sorted(rows - got)}"
    for row in doc["rows"]:
        assert row["samples"], row["name"]
        assert all(math.isfinite(v) and v > 0 for v in row["samples"]), row["name"]
        assert row["min"] <= row["median"] <= row["max"]
    assert {t["name"] for t in doc["targets"]} == TARGET_NAMES
    md = (layout.reports_dir / "bench.md").read_text()
    for _, name in rows:
        assert f"| {name} |" in md
    for target in TARGET_NAMES:
        assert target in md
    with Image.open(layout.reports_dir / "bench.png") as png:
        assert png.format == "PNG" and png.width >= 800 and png.height >= 400
        pixels = np.asarray(png.convert("L"))
    assert pixels.std() > 10, "the chart is blank"
    assert not list(layout.reports_dir.glob(".*.tmp"))
    return doc


def _linked_layout(tmp_path: Path) -> Layout:
    """The real artifacts, linked file by file so the run's own writes stay in tmp."""
    real = Layout(artifacts_root())
    try:
        check_artifacts(real)
    except MissingArtifactError as exc:
        pytest.skip(str(exc))
    layout = Layout(tmp_path)
    layout.models_dir.mkdir(parents=True)
    for name in model_files():
        (layout.models_dir / name).symlink_to((real.models_dir / name).resolve())
    layout.source_dir.mkdir()
    layout.dataset_dir.symlink_to(real.dataset_dir.resolve())
    layout.reference_dir.symlink_to(real.reference_dir.resolve())
    return layout


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_quick_bench_writes_every_row(tmp_path: Path) -> None:
    layout = _linked_layout(tmp_path)
    proc = facenet("-q", "bench", "runtimes", "--quick", "--artifacts", str(layout.root))
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = _check_outputs(layout, expected_rows())
    assert doc["meta"]["quick"] is True
    assert {"onnxruntime", "openvino"} <= set(doc["meta"]["versions"])
    assert set(doc["meta"]["isa"]) <= set(ISA_FLAGS)
    by_name = {(r["section"], r["name"]): r for r in doc["rows"]}
    for runtime in BENCH_LABELS:
        row = by_name[("embedding", f"{runtime} b16")]
        assert row["peak_rss_mb"] > 50 and row["gflops"] > 0 and row["ratio"] > 0
    ours = by_name[("end_to_end", "facenet recognize pipeline (onnx mtcnn + ort)")]
    assert ours["detail"]["faces"] >= ours["detail"]["photos"] >= 1
    detect = by_name[("detection", "onnx mtcnn")]["detail"]["faces"]
    assert detect == by_name[("detection", "mtcnn package")]["detail"]["faces"]
    assert "facenet bench runtimes" in proc.stdout or "measurement" in proc.stdout


def test_embedding_rows_follow_the_format_table_grouped_by_runtime() -> None:
    assert BENCH_LABELS == ["keras", "savedmodel", "ort-fp32", "ort-int8", "litert-fp32",
                            "litert-fp16", "litert-int8", "ov-fp32", "ov-int8"]
    assert model_files()[2:4] == ["facenet.onnx", "facenet_int8.onnx"]
    assert model_files()[-3:] == ["mtcnn_pnet.onnx", "mtcnn_rnet.onnx", "mtcnn_onet.onnx"]


def test_task_specs_travel_as_json() -> None:
    specs = [
        RecognizeSpec(["a.jpg"], "/art", "/g.db", 2, full_resolution=True),
        DetectSpec("package", ["a.jpg"], "/models", 1),
        PairedSpec({"onnx": "/m.onnx", "openvino": "/facenet_openvino"}, "/art", 1, 2, 1),
        VideoSpec("/clip.mp4", "/art", "/g.db", 3, 2, frames=30),
    ]
    for spec in specs:
        assert decode(encode(spec)) == spec
    with pytest.raises(ValueError, match="unknown bench task"):
        decode('{"task": "os.system", "fields": {}}')


def test_the_cold_start_says_how_its_interpreter_gets_bytecode(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A start that compiles every module it imports is slower by a good part of the cold-start
    goal: the bench names the case in the cold-start row (issue 25)."""
    import subprocess
    import sys

    from toolchain.bench.processes import bytecode_state

    monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(tmp_path / "pyc"))  # holds nothing yet
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    assert bytecode_state(sys.executable) == "compiled at every start"
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE")
    assert bytecode_state(sys.executable) == "written by the first run"
    subprocess.run([sys.executable, "-c", "import typer"], check=True)  # writes it
    assert bytecode_state(sys.executable) == "held by the environment"
