"""Exporter registry, a cheap real export into tmp_path, and the real exported files."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from helpers.cli import facenet
from helpers.real import shared_data

import toolchain
from toolchain.convert.exporters import (
    INPUT_NAME,
    OUTPUT_NAMES,
    STAMP_FILE,
    ExportContext,
    resolve,
    run_exporters,
)
from toolchain.convert.exporters import savedmodel as savedmodel_exporter
from toolchain.convert.exporters.onnx import ONNX_OPSET
from toolchain.convert.exporters.registry import exporter
from toolchain.convert.formats import FACENET_FORMATS, FORMATS
from toolchain.convert.parity import load_reference
from toolchain.convert.weights import WeightsRejectedError
from toolchain.core.crop import DEFAULT_CROP
from toolchain.core.errors import InputError, MissingArtifactError, ParityError
from toolchain.core.paths import Layout
from toolchain.core.preprocess import prewhiten

REAL = Layout(Path(os.environ.get("FACENET_ARTIFACTS", "artifacts")))


def test_all_runs_in_dependency_order() -> None:
    order = [e.name for e in resolve(["all"])]
    for fmt in FACENET_FORMATS:
        assert fmt in order
    assert order.index("keras") < order.index("savedmodel")
    for child in ("onnx", "tflite", "tflite-fp16", "tflite-int8"):
        assert order.index("savedmodel") < order.index(child)
    assert [e.name for e in resolve(["tflite", "keras", "savedmodel"])] == [
        "keras",
        "savedmodel",
        "tflite",
    ]


def test_unknown_format_and_every_format_has_its_exporter() -> None:
    with pytest.raises(InputError, match="unknown export format 'bogus'"):
        resolve(["bogus"])
    for spec in FORMATS.values():
        assert callable(exporter(spec)), spec.exporter
        assert spec.parent is None or spec.parent in FORMATS


def test_cli_errors_are_one_line_with_exit_codes(tmp_path: Path) -> None:
    bogus = facenet("model", "export", "--format", "bogus", "--artifacts", str(tmp_path))
    assert bogus.returncode == 2 and "unknown export format" in bogus.stderr
    empty = facenet("model", "export", "--format", "keras", "--artifacts", str(tmp_path))
    assert empty.returncode == 6 and "nox -s recover" in empty.stderr
    assert "Traceback" not in empty.stderr
    parity = facenet("model", "parity", "--artifacts", str(tmp_path))
    assert parity.returncode == 6 and "nox -s export" in parity.stderr
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def _tmp_layout(tmp_path: Path) -> Layout:
    if not (REAL.manifest.is_file() and (REAL.reference_dir / "reference.npz").is_file()):
        pytest.skip(f"{REAL.weights_dir} or {REAL.reference_dir} missing: run `nox -s recover`")
    layout = Layout(tmp_path / "artifacts")
    layout.root.mkdir()
    (layout.root / "reference").symlink_to(REAL.reference_dir.resolve())
    layout.weights_dir.mkdir()
    for path in REAL.weights_dir.iterdir():
        (layout.weights_dir / path.name).symlink_to(path.resolve())
    layout.source_dir.mkdir()
    layout.dataset_dir.symlink_to(REAL.dataset_dir.resolve())
    return layout


@pytest.mark.real
def test_tampered_weights_write_no_model(tmp_path: Path) -> None:
    layout = _tmp_layout(tmp_path)
    victim = layout.weights_dir / "Conv2d_4a_3x3_BatchNorm.npz"
    data = bytearray(victim.read_bytes())
    victim.unlink()
    data[200] ^= 0x10
    victim.write_bytes(bytes(data))
    with pytest.raises(WeightsRejectedError, match="layer Conv2d_4a_3x3_BatchNorm"):
        run_exporters(ExportContext(layout), ["all"])
    assert not layout.models_dir.exists() or not any(layout.models_dir.iterdir())


@pytest.mark.real
@pytest.mark.slow
def test_export_into_tmp_validates_before_writing(tmp_path: Path) -> None:
    layout = _tmp_layout(tmp_path)
    context = ExportContext(layout)
    good = context.expected
    context.expected = {k: v[::-1].copy() for k, v in good.items()}  # rows in the wrong order
    with pytest.raises(ParityError, match="keras export rejected"):
        run_exporters(context, ["keras"])
    assert sorted(p.name for p in layout.models_dir.iterdir()) == []

    context.expected = good
    # The ONNX default threshold is calibrated on faces the exported MTCNN finds.
    # The SavedModel the converters read is exported first.
    with pytest.raises(MissingArtifactError, match="export it first"):
        run_exporters(context, ["onnx"])
    assert sorted(p.name for p in layout.models_dir.iterdir()) == ["facenet_savedmodel"]
    formats = ["keras", "mtcnn", "onnx", "tflite", "tflite-fp16", "tflite-int8"]
    results = run_exporters(context, formats)
    # That SavedModel is current (its stamp matches): the converters reuse it. The run wrote
    # models the runtime loads: it ends with the model pack of them.
    assert [r.name for r in results] == [*formats, "pack"]
    names = sorted(p.name for p in layout.models_dir.iterdir())
    assert names == ["facenet.keras", "facenet.onnx", "facenet.tflite", "facenet_fp16.tflite",
                     "facenet_int8.tflite", "facenet_savedmodel", "mtcnn_onet.onnx",
                     "mtcnn_pnet.onnx", "mtcnn_rnet.onnx"]
    assert results[-1].paths == [layout.pack_dir]
    pack = json.loads((layout.pack_dir / "manifest.json").read_text())
    assert pack["runs"] == [{"runtime": "onnxruntime", "precision": "fp32",
                             "embedder": "facenet.onnx"}]
    assert sorted(pack["files"]) == ["facenet.onnx", "mtcnn_onet.onnx", "mtcnn_pnet.onnx",
                                     "mtcnn_rnet.onnx"]
    assert pack["made"]["by"] == "facenet model export"
    assert pack["model"]["weights_fingerprint"] == context.stamp["manifest_sha256"]
    for rel in pack["files"]:
        assert (layout.pack_dir / rel).stat().st_ino == (layout.models_dir / rel).stat().st_ino
    stamp = json.loads((layout.models_dir / "facenet_savedmodel" / STAMP_FILE).read_text())
    assert stamp["toolchain_version"] == toolchain.__version__

    mtime = (layout.models_dir / "facenet_savedmodel" / "saved_model.pb").stat().st_mtime_ns
    again = ExportContext(layout)
    assert savedmodel_exporter.is_current(again)  # reused: the stamp matches
    assert [r.name for r in run_exporters(again, ["tflite"])] == ["tflite"]
    assert (layout.models_dir / "facenet_savedmodel" / "saved_model.pb").stat().st_mtime_ns == mtime


@pytest.fixture(scope="module")
def real_onnx() -> Path:
    path = FORMATS["onnx"].path(REAL.models_dir)
    if not path.is_file():
        pytest.skip(f"{path} missing: run `nox -s export`")
    return path


@pytest.mark.real
def test_real_onnx_contract(real_onnx: Path) -> None:
    import onnx

    onnx.checker.check_model(str(real_onnx), full_check=True)
    model = onnx.load(str(real_onnx))
    assert model.opset_import[0].version == ONNX_OPSET
    assert [i.name for i in model.graph.input] == [INPUT_NAME]
    assert [o.name for o in model.graph.output] == list(OUTPUT_NAMES)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 160, 160, 3]
    meta = {p.key: p.value for p in model.metadata_props}
    manifest = json.loads(REAL.manifest.read_text())
    assert meta["source_sha256"] == manifest["source"]["sha256"]
    assert meta["toolchain_version"] == toolchain.__version__
    assert meta["input_layout"] == "NHWC" and meta["input_size"] == "160x160x3"
    assert meta["input_color"] == "RGB"
    assert "max(std(x), 1/sqrt(N))" in meta["preprocessing"]
    assert "L2-normalize before comparing" in meta["output"]
    assert meta["distance_metric"].startswith("euclidean distance between L2-normalized")
    # The FAR policy (re-measured on the photos by tests/test_crop_study.py): at most FAR of
    # the impostor pairs accepted, over the labelled sets named in the metadata.
    assert 0.5 < float(meta["default_threshold"]) < 1.5
    assert meta["default_crop"] == DEFAULT_CROP.text
    assert meta["threshold_far"] == "0.001"
    impostors = int(meta["threshold_impostor_pairs"])
    accepted = int(re.search(r": (\d+) of (\d+) impostor pairs", meta["threshold_policy"])[1])
    assert accepted <= 0.001 * impostors
    assert "5-celebrity-faces-dataset: 117 of 118 photos" in meta["threshold_data"]
    assert json.loads(meta["contract"])["default_threshold"] == meta["default_threshold"]


@pytest.mark.real
def test_real_threshold_is_calibrated_on_the_shared_photos_too(real_onnx: Path) -> None:
    import onnx

    shared_data("people")
    meta = {p.key: p.value
            for p in onnx.load(str(real_onnx), load_external_data=False).metadata_props}
    assert "face_recognition_examples: 26 of 26 photos, 29 faces" in meta["threshold_data"]
    assert meta["threshold_impostor_pairs"] == "9143"


@pytest.mark.real
def test_real_onnx_dynamic_batch(real_onnx: Path) -> None:
    import onnxruntime as ort

    reference = load_reference(REAL)
    session = ort.InferenceSession(str(real_onnx), providers=["CPUExecutionProvider"])
    x = prewhiten(reference.crops[:3])
    three = session.run(None, {INPUT_NAME: x})
    one = session.run(None, {INPUT_NAME: x[:1]})
    assert three[0].shape == (3, 128) and one[0].shape == (1, 128)
    np.testing.assert_allclose(one[0][0], three[0][0], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(three[1], axis=1), 1.0, atol=1e-6)


@pytest.mark.real
def test_real_savedmodel_signature() -> None:
    path = FORMATS["savedmodel"].path(REAL.models_dir)
    if not path.is_dir():
        pytest.skip(f"{path} missing: run `nox -s export`")
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    spec = signature.structured_input_signature[1][INPUT_NAME]
    assert spec.shape.as_list() == [None, 160, 160, 3] and spec.dtype == tf.float32
    assert sorted(signature.structured_outputs) == sorted(OUTPUT_NAMES)


def _calibration_layout(tmp_path: Path) -> Layout:
    """A tmp artifacts tree (:func:`_tmp_layout`) with the current SavedModel and the MTCNN
    models linked in: what ``export --format onnx`` reads."""
    layout = _tmp_layout(tmp_path)
    layout.models_dir.mkdir()
    for name in ("facenet_savedmodel", "mtcnn_pnet.onnx", "mtcnn_rnet.onnx", "mtcnn_onet.onnx"):
        if not (REAL.models_dir / name).exists():
            pytest.skip(f"{REAL.models_dir / name} missing: run `nox -s export` first")
        (layout.models_dir / name).symlink_to((REAL.models_dir / name).resolve())
    return layout


@pytest.mark.real
def test_a_bad_calibration_set_fails_before_any_work(tmp_path: Path) -> None:
    """One line and exit 3 at once (before: after the whole conversion), nothing written."""
    layout = _calibration_layout(tmp_path)
    before = sorted(p.name for p in layout.models_dir.iterdir())
    empty = tmp_path / "no-people"
    empty.mkdir()
    for bad, phrase in ((empty, "no labelled photos"), (tmp_path / "absent", "not a folder")):
        done = facenet("model", "export", "--format", "onnx", "--calibration-set",
                       shared_data("people"), "--calibration-set", bad,
                       "--artifacts", layout.root, env={"TF_CPP_MIN_LOG_LEVEL": "3"})
        assert done.returncode == 3, done.stderr
        lines = [line for line in done.stderr.splitlines() if line.startswith("facenet:")]
        assert lines == [f"facenet: error: {bad}: {lines[0].split(': ', 3)[-1]}"], done.stderr
        assert phrase in lines[0] and "Traceback" not in done.stderr
        assert "export keras" not in done.stderr and "export savedmodel" not in done.stderr
    assert sorted(p.name for p in layout.models_dir.iterdir()) == before
    assert not layout.reports_dir.exists() and not layout.pack_dir.exists()


@pytest.mark.real
def test_the_onnx_threshold_is_calibrated_on_the_set_named(tmp_path: Path) -> None:
    """What ``--calibration-set people/`` gives the ONNX exporter (the command hands the option to
    :class:`ExportContext`, as the test above shows): the default threshold and the metadata
    written into the model are calibrated on that set alone (its 11 faces, 5 genuine and 50
    impostor pairs), not on the 5-celebrity photos (the default, as the exported model's
    metadata says). Run on the exported fp32 model, as the
    exporter runs it on its staged file (the conversion before it costs minutes)."""
    from toolchain.convert.exporters.onnx import onnx_metadata

    layout = _calibration_layout(tmp_path)
    real_onnx = REAL.models_dir / "facenet.onnx"
    if not real_onnx.is_file():
        pytest.skip(f"{real_onnx} missing: run `nox -s export` first")
    context = ExportContext(layout, calibration_sets=(str(shared_data("people")),))
    threshold = context.calibrate(real_onnx)
    assert threshold.data == ("people: 11 of 11 photos, 11 faces, 6 people",)
    assert (threshold.genuine_pairs, threshold.impostor_pairs) == (5, 50)
    assert threshold.false_accepts == 0 and threshold.crop == DEFAULT_CROP.text
    meta = onnx_metadata(context, threshold)
    assert meta["threshold_data"] == "people: 11 of 11 photos, 11 faces, 6 people"
    assert meta["threshold_impostor_pairs"] == "50" and meta["threshold_far"] == "0.001"
    assert meta["default_threshold"] == f"{threshold.value:.6f}"
    import onnx

    shipped = {p.key: p.value
               for p in onnx.load(str(real_onnx), load_external_data=False).metadata_props}
    assert "5-celebrity-faces-dataset" in shipped["threshold_data"]  # calibrated by default
    assert shipped["default_threshold"] != meta["default_threshold"]
    assert sorted(p.name for p in layout.models_dir.iterdir()) == [
        "facenet_savedmodel", "mtcnn_onet.onnx", "mtcnn_pnet.onnx", "mtcnn_rnet.onnx"]
