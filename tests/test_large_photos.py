"""Real-size photos: the reduced-pyramid detection against full-resolution detection.

The detector builds no pyramid level larger than ``max_side`` (:data:`DEFAULT_MAX_SIDE`) and cuts
R-Net/O-Net patches from the full-resolution photo (``toolchain.runtime.mtcnn``). These tests
run it and the package's full-resolution path (``max_side=None``) on every real photo set there
is: the shared photos and people of ``../shared/data/face_recognition_examples`` (0.1-3.4 MP) and
the 5-celebrity photos (all below the max side: their detections must be exactly the reference's
path). On the shared photos and people the default must find the same faces (IoU >= 0.7), and
name the photos' faces the same. ``pytest -s`` prints the comparison table.
Nothing here is timed.
"""

from __future__ import annotations

import json
import subprocess
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers.cli import facenet, facenet_argv, python_env
from helpers.real import artifacts_root, shared_data
from PIL import Image

from toolchain.core.boxes import iou
from toolchain.runtime.images import find_images, read_image
from toolchain.runtime.mtcnn import (
    DEFAULT_MAX_SIDE,
    Detection,
    MTCNNDetector,
    detection_plan,
)

MIN_IOU = 0.7


def _models() -> Path:
    models = artifacts_root() / "models"
    if not (models / "mtcnn_pnet.onnx").is_file():
        pytest.skip(f"no MTCNN models in {models}: run `nox -s export` first")
    return models


def _shared(sub: str) -> list[Path]:
    return find_images(shared_data(sub))


def _celebrity() -> list[Path]:
    dataset = artifacts_root() / "source" / "5-celebrity-faces-dataset"
    photos = find_images(dataset) if dataset.is_dir() else []
    if not photos:
        pytest.skip(f"no photos under {dataset}: run `nox -s fetch` first")
    return photos


@dataclass
class Comparison:
    """Faces of one photo set found by the default detector vs full resolution."""

    name: str
    photos: int
    reduced: int
    faces_full: int
    lost: list[str]
    gained: list[str]
    matched_ious: list[float]
    pairs: list[tuple[Path, tuple[float, ...], tuple[float, ...]]]
    """``(photo, full-resolution box, default box)`` of every matched face."""

    def row(self) -> str:
        worst = f"{min(self.matched_ious):.3f}" if self.matched_ious else "-"
        return (f"| {self.name} | {self.photos} | {self.reduced} | {self.faces_full} | "
                f"{len(self.lost)} | {len(self.gained)} | {worst} |")


def match_faces(full: list[Detection], ours: list[Detection]) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching by IoU (best pairs first), pairs with IoU > 0."""
    pairs = sorted(((iou(f.box, o.box), i, j) for i, f in enumerate(full)
                    for j, o in enumerate(ours)), reverse=True)
    used_full: set[int] = set()
    used_ours: set[int] = set()
    matched = []
    for overlap, i, j in pairs:
        if overlap <= 0 or i in used_full or j in used_ours:
            continue
        used_full.add(i)
        used_ours.add(j)
        matched.append((i, j, overlap))
    return matched


def compare(name: str, photos: list[Path], default: MTCNNDetector,
            full: MTCNNDetector) -> Comparison:
    """Detect every photo both ways; faces without an IoU >= 0.7 partner are lost or gained."""
    result = Comparison(name, len(photos), 0, 0, [], [], [], [])
    for path in photos:
        pixels = read_image(path).pixels
        result.reduced += default.plan(pixels.shape[1], pixels.shape[0]).reduced
        want, got = full.detect(pixels), default.detect(pixels)
        result.faces_full += len(want)
        good = [(i, j, o) for i, j, o in match_faces(want, got) if o >= MIN_IOU]
        result.matched_ious += [o for _, _, o in good]
        result.pairs += [(path, want[i].box, got[j].box) for i, j, _ in good]
        result.lost += [f"{path.name} {want[i].box}" for i in range(len(want))
                        if i not in {i for i, _, _ in good}]
        result.gained += [f"{path.name} {got[j].box}" for j in range(len(got))
                          if j not in {j for _, j, _ in good}]
    return result


@pytest.fixture(scope="module")
def detectors() -> tuple[MTCNNDetector, MTCNNDetector]:
    """The default detector and the full-resolution (package) one."""
    models = _models()
    return MTCNNDetector(models), MTCNNDetector(models, max_side=None)


TABLE_HEAD = ("| photo set | photos | reduced | faces at full res | lost | gained | worst IoU |\n"
              "|---|---|---|---|---|---|---|")


@pytest.mark.real
@pytest.mark.slow
def test_shared_photos_keep_every_face_and_identity(
        detectors: tuple[MTCNNDetector, MTCNNDetector], tmp_path: Path) -> None:
    from toolchain.runtime.embedder import Embedder
    from toolchain.runtime.recognizer import Recognizer

    default, full = detectors
    photos, people = _shared("photos"), _shared("people")
    rows = [compare("shared photos/", photos, default, full),
            compare("shared people/", people, default, full)]
    print("\n" + TABLE_HEAD + "\n" + "\n".join(r.row() for r in rows))
    for row in rows:
        assert not row.lost and not row.gained, (row.lost, row.gained)
    # The comparison's table as measured (faces at full resolution, worst IoU of a kept face).
    assert [(r.photos, r.reduced, r.faces_full) for r in rows] == [(15, 13, 20), (11, 10, 11)]
    assert [round(min(r.matched_ious), 3) for r in rows] == [0.943, 0.885]

    embedder = Embedder(_models() / "facenet.onnx")
    items = [(p.parent.name, p) for p in people]
    named = {}
    for label, detector in (("full", full), ("default", default)):
        with Recognizer(detector, embedder, tmp_path / f"{label}.db") as rec:
            rec.enroll_many(items, largest=True)
            named[label] = {(photo.path, m.box): m.label for photo in rec.recognize_many(photos)
                            for m in photo.matches}
    assert len(named["default"]) == len(named["full"]) == len(rows[0].pairs) == 20
    assert sum(label != "unknown" for label in named["default"].values()) == 18
    for path, want, got in rows[0].pairs:
        assert named["full"][path, want] == named["default"][path, got], (path.name, want, got)


@pytest.mark.real
@pytest.mark.slow
def test_celebrity_photos_take_the_full_resolution_path(
        detectors: tuple[MTCNNDetector, MTCNNDetector]) -> None:
    default, full = detectors
    photos = _celebrity()
    for path in photos:
        with Image.open(path) as image:
            assert not default.plan(*image.size).reduced, path
    row = compare("5-celebrity (train + val)", photos, default, full)
    print("\n" + TABLE_HEAD + "\n" + row.row())
    assert not row.lost and not row.gained
    assert (row.photos, row.faces_full) == (118, 124)
    assert min(row.matched_ious) == 1.0


def _upscaled(path: Path, size: tuple[int, int]) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize(size, Image.Resampling.BICUBIC))


@pytest.mark.real
def test_a_24_megapixel_photo_is_detected_in_bounded_memory() -> None:
    photo = _shared("photos")[0].parent / "obama-1080p.jpg"
    small = read_image(photo).pixels
    large = _upscaled(photo, (6000, 4000))
    detector = MTCNNDetector(_models())
    tracemalloc.start()
    try:
        got = detector.detect(large)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the full-resolution pipeline allocated 2.4 GB here (float64 tables of the whole photo)
    assert peak < 150 * 2**20, f"detection allocated {peak / 2**20:.0f} MB"
    want = MTCNNDetector(_models(), max_side=None).detect(small)
    assert len(got) == len(want) == 1
    scale = 6000 / small.shape[1]
    # boxes are in the photo's pixels (an upscaled photo shifts MTCNN's box a little)
    assert iou(got[0].box, [v * scale for v in want[0].box]) >= 0.6
    x, y, w, h = got[0].box
    assert all(x < kx < x + w and y < ky < y + h for kx, ky in got[0].keypoints.values())


PEAK_RSS_24MP_MB = 750
"""Bound on the peak RSS of ``facenet recognize`` on a 24 MP photo: 1.5 x the 502 MB measured by
this test (runtime environment, ONNX Runtime 1.32, a 2-core AMD EPYC with AVX2, 2026-12-08; the
bench's fresh-process row says 501 MB), the margin for other CPUs' thread scratch and allocators.
The full-resolution pipeline of before needed 2.4 GB of numpy alone; ``nox -s bench`` reports the
value with its CPU."""


PEAK_RSS_OF_CHILD = """
import resource, subprocess, sys
with open(sys.argv[1], "w") as out:
    code = subprocess.call(sys.argv[3:], stdout=out)
with open(sys.argv[2], "w") as peak:
    peak.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code)
"""
"""``python -I -c`` program: run a command (stdout to ``argv[1]``), write its peak RSS in kB to
``argv[2]``. A small fresh process starts the command because Linux counts the RSS a child had
as a fork of its parent, before ``exec``, in its ``ru_maxrss``: forked from pytest directly, the
test process's own memory would be measured."""


@pytest.mark.real
@pytest.mark.slow
def test_a_24_megapixel_photo_is_recognized_in_bounded_peak_rss(
        tmp_path: Path, runtime_python: Path) -> None:
    """The whole command's peak resident memory, ONNX Runtime's included (``tracemalloc`` above
    sees only Python's allocations), read from the kernel's accounting of the child
    (``ru_maxrss``, see :data:`PEAK_RSS_OF_CHILD`): a shared photo upscaled to 6000x4000 in
    ``tmp_path``, one face, named."""
    photo = _shared("photos")[0].parent / "obama-1080p.jpg"
    large = tmp_path / "large_6000x4000.jpg"
    with Image.open(photo) as image:
        image.convert("RGB").resize((6000, 4000), Image.Resampling.BICUBIC).save(large,
                                                                                 quality=92)
    gallery = tmp_path / "gallery.db"
    enrolled = facenet("-q", "enroll", shared_data("people") / "obama" / "obama.jpg", "--name",
                       "obama", "--gallery", gallery, "--artifacts", artifacts_root())
    assert enrolled.returncode == 0, enrolled.stderr
    out, peak = tmp_path / "recognized.json", tmp_path / "peak_kb"
    proc = subprocess.run(
        [str(runtime_python), "-I", "-c", PEAK_RSS_OF_CHILD, str(out), str(peak),
         *facenet_argv("-q", "recognize", large, "--gallery", gallery, "--json",
                       "--artifacts", artifacts_root(), python=runtime_python)],
        capture_output=True, text=True, check=False, timeout=900, cwd=tmp_path,
        env=python_env())
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(out.read_text())["results"]
    assert [face["name"] for face in result["faces"]] == ["obama"]
    peak_mb = int(peak.read_text()) / 1024  # kilobytes on Linux
    print(f"\npeak RSS of facenet recognize on 24 MP: {peak_mb:.0f} MB")
    assert peak_mb < PEAK_RSS_24MP_MB, f"peak RSS {peak_mb:.0f} MB"


@pytest.mark.real
def test_a_reduced_photo_gets_the_full_resolution_boxes_and_landmarks(
        detectors: tuple[MTCNNDetector, MTCNNDetector]) -> None:
    default, full = detectors
    pixels = _upscaled(_shared("photos")[0].parent / "two_people.jpg", (2252, 1322))
    assert default.plan(2252, 1322).reduced
    want, got = full.detect(pixels), default.detect(pixels)
    assert len(got) == len(want) == 2
    for (i, j, overlap) in match_faces(want, got):
        assert overlap >= 0.9
        side = want[i].box[2]
        for name, (x, y) in want[i].keypoints.items():
            gx, gy = got[j].keypoints[name]
            assert abs(gx - x) <= 0.05 * side and abs(gy - y) <= 0.05 * side, name


def test_the_smallest_face_follows_the_policy() -> None:
    plan = detection_plan(6000, 4000)
    ratio = DEFAULT_MAX_SIDE / 6000
    assert plan.reduced and max(plan.size) == DEFAULT_MAX_SIDE
    assert 12 / ratio <= plan.smallest_face < 12 / ratio / 0.709
    assert detection_plan(6000, 4000, min_face_size=400).smallest_face == pytest.approx(400)
    assert detection_plan(6000, 4000, max_side=None).smallest_face == pytest.approx(20)


@pytest.mark.real
def test_the_detection_options_reach_the_detector(tmp_path: Path) -> None:
    photos = _shared("photos")[0].parent
    art = ("--artifacts", str(artifacts_root()), "--gallery", str(tmp_path / "g.db"))
    enrolled = facenet("-q", "enroll", str(photos / "obama_small.jpg"), "--name", "obama",
                       "--max-detect-side", "0", *art)
    assert enrolled.returncode == 0, enrolled.stderr

    def faces(*options: str) -> int:
        done = facenet("-q", "recognize", photos / "obama_and_biden.jpg", "--json", *options,
                       *art)
        assert done.returncode == 0, done.stderr
        return len(json.loads(done.stdout)["results"][0]["faces"])

    assert faces() == faces("--max-detect-side", "0") == 3
    assert faces("--min-face", "400") < 3
    refused = facenet("-q", "recognize", photos / "obama_and_biden.jpg",
                      "--max-detect-side", "10", *art)
    assert refused.returncode == 2 and "--max-detect-side" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.real
def test_from_artifacts_passes_the_detection_policy() -> None:
    from toolchain.runtime.recognizer import Recognizer

    _models()
    rec = Recognizer.from_artifacts(artifacts_root(), detection={"max_side": None,
                                                                 "min_face_size": 40})
    assert isinstance(rec.detector, MTCNNDetector)
    assert rec.detector.max_side is None and rec.detector.min_face_size == 40
    default = Recognizer.from_artifacts(artifacts_root())
    assert isinstance(default.detector, MTCNNDetector)
    assert default.detector.max_side == DEFAULT_MAX_SIDE
