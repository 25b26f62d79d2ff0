"""Crop specs, margins, alignment, labelled sets and the FAR calibration, on hand-made cases."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toolchain.core.crop import (
    ALIGN_TEMPLATE,
    BOX,
    DEFAULT_CROP,
    LANDMARKS,
    CropSpec,
    similarity_transform,
)
from toolchain.core.errors import InputError
from toolchain.evaluation.calibration import far_threshold
from toolchain.evaluation.labelled import (
    LabelledFaces,
    all_pairs,
    assign_names,
    labelled_set,
    parse_set,
)
from toolchain.evaluation.peer import PeerFace


@pytest.mark.parametrize(("text", "spec"), [
    ("box", CropSpec()),
    ("margin=32px", CropSpec(32.0)),
    ("margin=20%", CropSpec(20.0, relative=True)),
    ("align", CropSpec(align=True)),
    ("align,margin=10%", CropSpec(10.0, relative=True, align=True)),
])
def test_crop_spec_text_round_trips(text: str, spec: CropSpec) -> None:
    assert CropSpec.parse(text) == spec
    assert spec.text == text


@pytest.mark.parametrize("text", ["", "margin", "margin=-3px", "margin=5", "align,box",
                                  "margin=10%,align", "margin=900%"])
def test_bad_crop_specs_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        CropSpec.parse(text)


def test_margin_options() -> None:
    assert CropSpec.from_options("32", False) == CropSpec(32.0)
    assert CropSpec.from_options("32px", True) == CropSpec(32.0, align=True)
    assert CropSpec.from_options("15%", False) == CropSpec(15.0, relative=True)
    assert CropSpec.from_options(None, True) == DEFAULT_CROP
    with pytest.raises(ValueError, match="neither pixels"):
        CropSpec.from_options("wide", False)


def test_margin_is_split_between_the_sides_and_clipped() -> None:
    image = np.zeros((100, 100, 3), np.uint8)
    image[40:60, 40:60] = 255
    # A 20 px box with 20 px of margin: 10 px each side, so the white square fills the middle half.
    crop = CropSpec(20.0).crop(image, (40, 40, 20, 20), size=40)
    assert crop[:8].max() == 0 and crop[12:28, 12:28].min() == 255
    # 50 % of a 20 px box: 5 px each side, same result as 10 px.
    assert np.array_equal(CropSpec(50.0, relative=True).crop(image, (40, 40, 20, 20), size=40),
                          CropSpec(10.0).crop(image, (40, 40, 20, 20), size=40))
    # At the border the margin is clipped: the crop is the box's part of the image.
    corner = CropSpec(40.0).crop(image, (0, 0, 20, 20), size=40)
    assert corner.shape == (40, 40, 3)


def test_similarity_transform_recovers_a_known_one() -> None:
    angle, scale, shift = math.radians(30), 2.5, np.array([7.0, -3.0])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    source = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 1.0], [-1.0, 1.5]])
    target = scale * source @ rotation.T + shift
    matrix = similarity_transform(source, target)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-12)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-12)
    with pytest.raises(ValueError):
        similarity_transform(np.ones((5, 2)), target)


def _dots(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    image = np.zeros((size[1], size[0], 3), np.uint8)
    for x, y in points:
        image[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3] = 255
    return image


def test_alignment_puts_rotated_landmarks_on_the_template() -> None:
    # Landmarks of a face 80 px wide, rotated by 20 degrees, drawn as white dots.
    angle = math.radians(20)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    points = (np.array(ALIGN_TEMPLATE) - 0.5) * 80 @ rotation.T + [150, 120]
    image = _dots(points, (300, 240))
    keypoints = {name: (float(x), float(y)) for name, (x, y) in zip(LANDMARKS, points,
                                                                   strict=True)}
    crop = CropSpec(align=True).crop(image, (110, 80, 80, 80), keypoints, size=160)
    for x, y in np.array(ALIGN_TEMPLATE) * 160:
        assert crop[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2].mean() > 120, (x, y)
    with pytest.raises(ValueError, match="five MTCNN landmarks"):
        CropSpec(align=True).crop(image, (110, 80, 80, 80), {}, size=160)


def test_alignment_margin_shrinks_the_template_about_the_centre() -> None:
    points = np.array(ALIGN_TEMPLATE) * 100 + [50, 50]
    image = _dots(points, (200, 200))
    keypoints = dict(zip(LANDMARKS, map(tuple, points), strict=True))
    crop = CropSpec(100.0, relative=True, align=True).crop(image, (50, 50, 100, 100),
                                                            keypoints, size=160)
    for x, y in ((np.array(ALIGN_TEMPLATE) - 0.5) * 0.5 + 0.5) * 160:
        assert crop[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2].mean() > 120, (x, y)


def _faces(rows: list[list[float]], names: list[str]) -> LabelledFaces:
    return LabelledFaces(np.array(rows, np.float32), names, ["s"] * len(names),
                         [Path(f"{i}.jpg") for i in range(len(names))])


def test_all_pairs_are_euclidean_even_for_vectors_that_are_not_unit() -> None:
    distances, same = all_pairs(_faces([[3.0, 0.0], [0.0, 4.0], [3.0, 0.5]], ["a", "b", "a"]))
    np.testing.assert_allclose(distances, [5.0, 0.5, math.hypot(3.0, 3.5)], atol=1e-6)
    assert same.tolist() == [False, True, False]


def test_far_threshold_by_hand() -> None:
    # On a line: a at 0.0 and 0.3, b at 1.0 and 1.2, c at 2.5. Genuine pairs: 0.3 (a), 0.2 (b).
    # Impostor distances sorted: 0.7, 0.9, 1.0, 1.2, 1.3, 1.5, 2.2, 2.5 (8 pairs).
    faces = _faces([[0.0], [0.3], [1.0], [1.2], [2.5]], ["a", "a", "b", "b", "c"])
    strict = far_threshold(faces, [], BOX, far=0.1)
    # floor(0.1 * 8) = 0 impostors allowed: halfway between 0.3 (largest below 0.7) and 0.7.
    assert strict.value == pytest.approx(0.5)
    assert (strict.false_accepts, strict.impostor_pairs, strict.genuine_pairs) == (0, 8, 2)
    assert strict.tar == 1.0 and "0 of 8 impostor pairs" in strict.policy
    loose = far_threshold(faces, [], BOX, far=0.25)
    # Two impostors allowed (0.7, 0.9): the threshold sits between 0.9 and 1.0.
    assert loose.value == pytest.approx(0.95) and loose.false_accepts == 2


def test_names_go_to_the_largest_faces_left_to_right() -> None:
    faces = [PeerFace((300, 10, 50, 50)), PeerFace((10, 10, 60, 60)), PeerFace((150, 10, 8, 8))]
    assert assign_names(faces, ["left", "right"]) == [1, 0]
    assert assign_names(faces, ["one"]) == [1]
    assert assign_names(faces[:1], ["a", "b"]) == []


def test_labelled_sets_from_folders_and_labels(tmp_path: Path) -> None:
    for person in ("ann", "bob"):
        (tmp_path / "people" / person).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "people" / person / "1.jpg")
    (tmp_path / "train" / "cy").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "train" / "cy" / "2.png")
    folders = labelled_set(tmp_path)
    assert sorted(p.names for p in folders.photos) == [("ann",), ("bob",), ("cy",)]
    people = parse_set(str(tmp_path / "people"))
    assert people.people == ["ann", "bob"] and people.name == "people"
    labels = tmp_path / "labels.csv"
    labels.write_text("photo,names\npeople/ann/1.jpg,ann;bob\n\n", encoding="utf-8")
    listed = parse_set(f"{labels}@{tmp_path}")
    assert [p.names for p in listed.photos] == [("ann", "bob")]


@pytest.mark.parametrize(("content", "message"), [
    ("file,who\nx.jpg,a\n", "header"),
    ("photo,names\n../outside.jpg,a\n", "outside"),
    ("photo,names\nmissing.jpg,a\n", "no photo"),
    ("photo,names\npeople/ann/1.jpg,a;;b\n", "names"),
])
def test_bad_labels_files_are_refused(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "people" / "ann").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "people" / "ann" / "1.jpg")
    labels = tmp_path / "labels.csv"
    labels.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        parse_set(f"{labels}@{tmp_path}")
    with pytest.raises(InputError, match="not a folder"):
        parse_set(str(tmp_path / "nowhere"))


def test_parsing_crop_specs_needs_no_numpy() -> None:
    code = ("import sys; from toolchain.core.crop import CropSpec; CropSpec.parse('align'); "
            "sys.exit('numpy' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
