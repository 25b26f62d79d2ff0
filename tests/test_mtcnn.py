"""MTCNN on ONNX Runtime: pipeline pieces on synthetic data, export, parity on the real photos."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from toolchain.core.boxes import iou
from toolchain.core.contracts import MTCNN_FILES
from toolchain.core.errors import InputError, IntegrityError, MissingArtifactError
from toolchain.runtime.mtcnn import (
    DEFAULT_MAX_SIDE,
    KEYPOINT_NAMES,
    MIN_MAX_SIDE,
    MTCNNDetector,
    area_resize,
    crop_and_resize,
    detection_plan,
    nms,
    proposals,
    pyramid_scales,
    reduce_image,
    regress,
    square,
    stages,
    summed_area_table,
)
from toolchain.runtime.mtcnn.pyramid import normalize_pixels

ROOT = Path(__file__).resolve().parents[1]
MIN_IOU = 0.95
MAX_LANDMARK_PX = 2.0


def _artifacts() -> Path:
    return Path(os.environ.get("FACENET_ARTIFACTS", ROOT / "artifacts"))


# --- pyramid ---------------------------------------------------------------------------------


def test_pyramid_of_a_300px_image_has_eight_levels_from_0_6() -> None:
    scales = pyramid_scales(300, 300)
    assert len(scales) == 8
    assert scales[0] == pytest.approx(12 / 20)
    np.testing.assert_allclose(scales[1:] / scales[:-1], 0.709)
    assert int(300 * scales[-1]) == 16


def test_pyramid_depends_on_the_short_side_and_min_face_size() -> None:
    assert len(pyramid_scales(300, 120)) == len(pyramid_scales(120, 900))
    assert pyramid_scales(300, 300, min_face_size=40)[0] == pytest.approx(0.3)
    assert len(pyramid_scales(12, 12)) == 0


# --- real-size photos: the detection plan -----------------------------------------------------


def test_a_photo_up_to_the_max_side_keeps_the_package_pyramid() -> None:
    side = DEFAULT_MAX_SIDE
    for width, height in ((side, 300), (380, 250), (side, side)):
        plan = detection_plan(width, height)
        assert not plan.reduced and plan.size == (width, height)
        np.testing.assert_allclose(plan.scales, pyramid_scales(width, height))
        assert plan.smallest_face == pytest.approx(20)


@given(st.integers(DEFAULT_MAX_SIDE + 1, 12000), st.integers(16, 12000),
       st.sampled_from([12, 20, 40, 200]))
def test_a_larger_photo_drops_only_the_levels_above_the_max_side(
        width: int, height: int, min_face: int) -> None:
    plan = detection_plan(width, height, min_face_size=min_face)
    full = pyramid_scales(width, height, min_face_size=min_face)
    ratio = DEFAULT_MAX_SIDE / max(width, height)
    assert plan.reduced and max(plan.size) == DEFAULT_MAX_SIDE
    assert abs(plan.size[0] / width - plan.size[1] / height) <= 1 / min(plan.size)
    assert all(s <= ratio for s in plan.scales)
    np.testing.assert_allclose(plan.scales, full[len(full) - len(plan.scales):])
    assert len(plan.scales) == len(full) or full[len(full) - len(plan.scales) - 1] > ratio
    assert plan.smallest_face >= max(min_face, 12 / ratio) - 1e-6
    assert detection_plan(width, height, min_face_size=min_face, max_side=None).scales == \
        tuple(full)


def test_the_max_side_has_a_floor(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="max side"):
        MTCNNDetector(tmp_path, max_side=MIN_MAX_SIDE - 1)
    with pytest.raises(MissingArtifactError):
        MTCNNDetector(tmp_path, max_side=MIN_MAX_SIDE)


def test_reduce_image_averages_areas() -> None:
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, 30:] = 200
    reduced = reduce_image(image, (6, 4))
    assert reduced.shape == (4, 6, 3) and reduced.dtype == np.uint8
    assert (reduced[:, :3] == 0).all() and (reduced[:, 3:] == 200).all()


@given(st.integers(0, 2**31 - 1))
@settings(max_examples=25, deadline=None)
def test_patches_of_raw_pixels_normalize_like_the_normalized_image(seed: int) -> None:
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    corners = rng.uniform(-20, 70, (6, 2))
    sides = rng.uniform(2, 40, (6, 1))
    boxes = np.hstack([corners, corners + sides])
    for size in (24, 48):
        expected = crop_and_resize(normalize_pixels(raw), boxes, size)
        got = crop_and_resize(raw, boxes, size, normalize=True)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=2e-6)


# --- area resize -----------------------------------------------------------------------------


def _brute_area(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Each output pixel as the coverage-weighted mean of the input (slow, obvious oracle)."""

    def weights(n_in: int, n_out: int) -> np.ndarray:
        s = n_in / n_out
        w = np.zeros((n_out, n_in))
        for k in range(n_out):
            for i in range(n_in):
                w[k, i] = max(0.0, min(i + 1, (k + 1) * s) - max(i, k * s))
        return w / s

    wy, wx = weights(image.shape[0], height), weights(image.shape[1], width)
    return np.einsum("ki,ijc,lj->klc", wy, image.astype(np.float64), wx)


@pytest.mark.parametrize(("height", "width"), [(3, 5), (7, 7), (4, 9), (1, 1)])
def test_area_resize_is_the_coverage_weighted_mean(height: int, width: int) -> None:
    rng = np.random.default_rng(height * 10 + width)
    image = rng.uniform(-1, 1, size=(7, 11, 3)).astype(np.float32)
    got = area_resize(summed_area_table(image), height, width)
    assert got.shape == (height, width, 3)
    np.testing.assert_allclose(got, _brute_area(image, height, width), atol=1e-5)


def test_area_resize_of_uint8_uses_an_exact_integer_table() -> None:
    image = np.random.default_rng(5).integers(0, 256, size=(13, 9, 3), dtype=np.uint8)
    table = summed_area_table(image)
    assert table.dtype == np.int32
    assert table[-1, -1].tolist() == image.sum(axis=(0, 1)).tolist()
    np.testing.assert_allclose(area_resize(table, 5, 4), _brute_area(image, 5, 4), atol=1e-4)


def test_area_resize_by_two_is_the_block_mean() -> None:
    image = np.arange(4 * 6 * 3, dtype=np.float32).reshape(4, 6, 3)
    expected = image.reshape(2, 2, 3, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(area_resize(summed_area_table(image), 2, 3), expected, atol=1e-5)


# --- crop_and_resize -------------------------------------------------------------------------


def test_crop_of_the_whole_image_at_its_own_size_is_the_image() -> None:
    image = np.random.default_rng(0).uniform(-1, 1, size=(24, 24, 3)).astype(np.float32)
    patch = crop_and_resize(image, np.array([[0.0, 0.0, 24.0, 24.0]]), 24)
    np.testing.assert_allclose(patch[0], image, atol=1e-6)


def test_crop_samples_outside_the_image_are_zero_and_inside_bilinear() -> None:
    image = np.tile(np.arange(10, dtype=np.float32)[None, :, None], (10, 1, 3))
    patches = crop_and_resize(image, np.array([[-40.0, -40.0, -20.0, -20.0],
                                               [0.0, 0.0, 5.0, 10.0]]), 6)
    np.testing.assert_array_equal(patches[0], 0.0)
    # x runs over [0, 5/10 * 9] in 6 steps of 0.9: a linear ramp, so bilinear is exact
    np.testing.assert_allclose(patches[1][0, :, 0], np.arange(6) * 0.9, atol=1e-5)


# --- boxes -----------------------------------------------------------------------------------


def test_square_grows_the_short_side_around_the_centre() -> None:
    out = square(np.array([[0.0, 0.0, 10.0, 4.0, 0.9]]))
    np.testing.assert_allclose(out, [[0.0, -3.0, 10.0, 7.0, 0.9]])


def test_regress_scales_offsets_by_side_plus_one() -> None:
    boxes = np.array([[10.0, 10.0, 20.0, 20.0, 0.8]])
    out = regress(boxes, np.array([[0.1, -0.1, 0.2, 0.0]], dtype=np.float32))
    np.testing.assert_allclose(out, [[11.1, 8.9, 22.2, 20.0, 0.8]], atol=1e-6)
    assert boxes[0, 0] == 10.0


def test_proposals_map_cells_to_12px_windows_and_sort_by_score() -> None:
    prob = np.zeros((6, 8), dtype=np.float32)
    prob[3, 5] = 0.7
    prob[1, 2] = 0.95
    prob[4, 4] = 0.5
    reg = np.zeros((6, 8, 4), dtype=np.float32)
    reg[3, 5] = [0.1, 0.0, 0.0, -0.1]
    out = proposals(reg, prob, scale=0.5, threshold=0.6)
    np.testing.assert_allclose(out[:, 4], [0.95, 0.7], atol=1e-7)
    np.testing.assert_allclose(out[0, :4], np.array([5, 3, 16, 14]) / 0.5)
    np.testing.assert_allclose(out[1, :4], np.array([11 + 1.1, 7, 22, 18 - 1.1]) / 0.5)


def test_nms_drops_boxes_overlapping_any_earlier_box_even_a_dropped_one() -> None:
    # A overlaps B, B overlaps C, A does not overlap C: greedy NMS keeps A and C, the package's
    # rule (which decides the reported faces) keeps only A.
    boxes = np.array([[0, 0, 10, 10, 0.9], [2, 0, 12, 10, 0.8], [4, 0, 14, 10, 0.7]], float)
    assert list(nms(boxes, 0.5)) == [0]
    assert list(nms(boxes[[0, 2]], 0.5)) == [0, 1]


def test_nms_min_method_removes_a_box_inside_another() -> None:
    boxes = np.array([[0, 0, 20, 20, 0.9], [5, 5, 10, 10, 0.8]], float)
    assert list(nms(boxes, 0.7, method="union")) == [0, 1]
    assert list(nms(boxes, 0.7, method="min")) == [0]
    with pytest.raises(ValueError):
        nms(boxes, 0.7, method="max")


def _nms_oracle(boxes: np.ndarray, threshold: float) -> list[int]:
    keep = []
    for j in range(len(boxes)):
        dropped = False
        for i in range(j):
            a, b = boxes[i], boxes[j]
            iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
            if union > 0 and iw * ih / union > threshold:
                dropped = True
        if not dropped:
            keep.append(j)
    return keep


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 50), st.floats(0, 50), st.floats(1, 30), st.floats(1, 30)),
                min_size=0, max_size=40),
       st.sampled_from([0.3, 0.5, 0.7]))
def test_nms_matches_the_pairwise_rule_across_chunks(
        raw: list[tuple[float, float, float, float]], threshold: float) -> None:
    boxes = np.array([[x, y, x + w, y + h, 0.0] for x, y, w, h in raw]).reshape(-1, 5)
    original = stages._NMS_CHUNK
    stages._NMS_CHUNK = 7
    try:
        assert list(nms(boxes, threshold)) == _nms_oracle(boxes, threshold)
    finally:
        stages._NMS_CHUNK = original


# --- detector errors -------------------------------------------------------------------------


def test_missing_model_names_the_nox_session(tmp_path: Path) -> None:
    with pytest.raises(MissingArtifactError, match="nox -s export"):
        MTCNNDetector(tmp_path)


def test_a_file_that_is_not_onnx_is_an_integrity_error(tmp_path: Path) -> None:
    for name in MTCNN_FILES.values():
        (tmp_path / name).write_bytes(b"not an onnx model")
    with pytest.raises(IntegrityError, match="nox -s export"):
        MTCNNDetector(tmp_path)


# --- real: export, parity with the package, no TensorFlow at run time -------------------------


def _photos() -> list[Path]:
    dataset = _artifacts() / "source" / "5-celebrity-faces-dataset"
    paths = sorted([*dataset.glob("train/*/*.jpg"), *dataset.glob("val/*/*.jpg")])
    if not paths:
        pytest.skip(f"no photos under {dataset}: run `nox -s fetch` first")
    return paths


def _load(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


@pytest.fixture(scope="session")
def mtcnn_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three nets exported by this toolchain into a fresh directory."""
    from toolchain.convert.mtcnn_export import export_mtcnn

    models = tmp_path_factory.mktemp("mtcnn_models")
    written = export_mtcnn(models)
    assert [p.name for p in written] == list(MTCNN_FILES.values())
    return models


@pytest.fixture(scope="session")
def package_results() -> dict[Path, list[dict[str, Any]]]:
    """The ``mtcnn`` package's own detections on every photo (computed once per session)."""
    from toolchain.convert.mtcnn_weights import package_detector

    detector = package_detector()
    return {path: detector.detect_faces(_load(path)) for path in _photos()}


@pytest.mark.real
@pytest.mark.slow
def test_export_writes_valid_models_with_dynamic_shapes(mtcnn_models: Path) -> None:
    import onnx

    dims = {}
    for net, name in MTCNN_FILES.items():
        proto = onnx.load(str(mtcnn_models / name))
        onnx.checker.check_model(proto, full_check=True)
        shape = proto.graph.input[0].type.tensor_type.shape.dim
        dims[net] = [d.dim_value if d.HasField("dim_value") else None for d in shape]
        assert "sha256" in proto.doc_string
    assert dims == {"pnet": [None, None, None, 3], "rnet": [None, 24, 24, 3],
                    "onet": [None, 48, 48, 3]}


@pytest.mark.real
def test_tampered_weights_are_refused_before_unpickling(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import joblib

    from toolchain.convert.mtcnn_weights import installed_weight_files, load_verified_weights

    source = installed_weight_files()["rnet"]
    tampered = tmp_path / "rnet.lz4"
    data = bytearray(source.read_bytes())
    data[-1] ^= 0xFF
    tampered.write_bytes(bytes(data))

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("joblib.load was called on an unverified file")

    monkeypatch.setattr(joblib, "load", refuse)
    with pytest.raises(IntegrityError, match="refusing to unpickle"):
        load_verified_weights("rnet", tampered)


@pytest.mark.real
@pytest.mark.slow
def test_detections_match_the_mtcnn_package_on_all_photos(
        mtcnn_models: Path, package_results: dict[Path, list[dict[str, Any]]]) -> None:
    detector = MTCNNDetector(mtcnn_models)
    problems: list[str] = []
    faces = 0
    worst_iou, worst_landmark = 1.0, 0.0
    for path, expected in package_results.items():
        got = detector.detect(_load(path))
        if len(got) != len(expected):
            problems.append(f"{path.name}: {len(got)} faces, package {len(expected)}")
            continue
        for ours, theirs in zip(got, expected, strict=True):
            faces += 1
            overlap = iou(ours.box, theirs["box"])
            landmark = max(abs(ours.keypoints[k][i] - theirs["keypoints"][k][i])
                           for k in KEYPOINT_NAMES for i in (0, 1))
            worst_iou, worst_landmark = min(worst_iou, overlap), max(worst_landmark, landmark)
            if overlap < MIN_IOU or landmark > MAX_LANDMARK_PX:
                problems.append(f"{path.name}: box {ours.box} vs {theirs['box']} (IoU "
                                f"{overlap:.3f}), landmarks off by {landmark:.1f} px")
            assert ours.confidence == pytest.approx(theirs["confidence"], abs=1e-3)
    assert not problems, "\n".join(problems)
    assert len(package_results) == 118
    assert faces == 124, "the README's count: 124 faces on the 118 photos"
    assert worst_iou >= 1 - 1e-6 and worst_landmark <= 1e-3, "README: IoU 1.0, landmarks 0 px"
    print(f"{faces} faces on {len(package_results)} photos; min IoU {worst_iou:.4f}, "
          f"max landmark error {worst_landmark:.1f} px")


@pytest.mark.real
def test_detector_rejects_non_rgb_uint8_and_finds_nothing_in_blank_images(
        mtcnn_models: Path) -> None:
    detector = MTCNNDetector(mtcnn_models)
    bad: Any
    for bad in (np.zeros((50, 50), np.uint8), np.zeros((50, 50, 3), np.float32),
                np.zeros((50, 50, 4), np.uint8), [[0, 0, 0]]):
        with pytest.raises(InputError):
            detector.detect(bad)
    assert detector.detect(np.full((200, 160, 3), 128, np.uint8)) == []
    assert detector.detect(np.full((8, 8, 3), 128, np.uint8)) == []


@pytest.mark.real
def test_runtime_detects_without_importing_tensorflow(mtcnn_models: Path) -> None:
    photo = _photos()[0]
    script = (
        "import json, sys\n"
        "import numpy as np\n"
        "from PIL import Image, ImageOps\n"
        "from toolchain.runtime.mtcnn import MTCNNDetector\n"
        f"image = np.asarray(ImageOps.exif_transpose(Image.open({str(photo)!r})).convert('RGB'))\n"
        f"faces = MTCNNDetector({str(mtcnn_models)!r}).detect(image)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'tf2onnx', 'cv2', 'mtcnn'))\n"
        "print(json.dumps({'faces': len(faces), 'heavy': heavy}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert report["faces"] >= 1
