"""A small synthetic world for the runtime tests that need no exported model.

"Faces" are solid colored squares on a gray background; :class:`SquareDetector` finds them the way
MTCNN finds faces (a box per square). :func:`write_tiny_facenet` writes an ONNX model with
FaceNet's signature (``[N, 160, 160, 3]`` float32 in, ``[N, 128]`` out) whose embedding is a fixed
random projection of the crop's mean color after prewhitening, plus a small fixed offset (a gray
face has all channel means 0 after prewhitening: without it, it would embed as the zero vector,
which the gallery refuses): crops of one color ("person") embed identically, different colors
far apart. Everything else (decoding, cropping, prewhitening, ONNX Runtime, the gallery, the
CLI) is the real code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BACKGROUND = (128, 128, 128)
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (40, 40, 210),
    "yellow": (230, 220, 20),
    "magenta": (210, 40, 200),
}
"""One color per synthetic person."""

THRESHOLD = 0.5
"""The default threshold written into the tiny model's metadata."""


@dataclass(frozen=True)
class FakeDetection:
    """Same fields as ``toolchain.runtime.mtcnn.Detection``."""

    box: tuple[float, float, float, float]
    confidence: float
    keypoints: dict[str, tuple[float, float]] = field(default_factory=dict)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.r_[0, flags.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


class SquareDetector:
    """Finds squares that differ from the background (side by side, at least 20 px)."""

    calls = 0

    def detect(self, image: np.ndarray) -> list[FakeDetection]:
        """One detection per square, in pixels of ``image``."""
        SquareDetector.calls += 1
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        diff = np.abs(image.astype(np.int16) - np.array(BACKGROUND, np.int16)).max(axis=2)
        mask = diff > 40
        found = []
        for x0, x1 in _runs(mask.any(axis=0)):
            for y0, y1 in _runs(mask[:, x0:x1].any(axis=1)):
                if x1 - x0 >= 20 and y1 - y0 >= 20:
                    box = (float(x0), float(y0), float(x1 - x0), float(y1 - y0))
                    found.append(FakeDetection(box, 0.99, {"nose": ((x0 + x1) / 2, (y0 + y1) / 2)}))
        return found


def write_tiny_facenet(path: Path, batch: int | str = "N", threshold: str | None = str(THRESHOLD),
                       height: int = 160) -> Path:
    """Write the tiny FaceNet-signature ONNX model to ``path``."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    weights = rng.standard_normal((3, 128)).astype(np.float32)
    bias = (rng.standard_normal(128) * 0.1).astype(np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["face"], ["mean"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["mean", "w"], ["projected"]),
        helper.make_node("Add", ["projected", "b"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_facenet",
        [helper.make_tensor_value_info("face", TensorProto.FLOAT, [batch, height, 160, 3])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, 128])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    props = {"preprocessing": "prewhiten"}
    if threshold is not None:
        props["default_threshold"] = threshold
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def photo(path: Path, squares: list[tuple[str, int]], size: tuple[int, int] = (320, 200),
          mode: str = "RGB", fmt: str | None = None) -> Path:
    """Save a photo with one square per ``(color name, side)``, left to right, in ``mode``."""
    image = Image.new("RGB", size, BACKGROUND)
    x = 10
    for name, side in squares:
        image.paste(COLORS[name], (x, 20, x + side, 20 + side))
        x += side + 20
    path.parent.mkdir(parents=True, exist_ok=True)
    image.convert(mode).save(path, format=fmt)
    return path


def install(artifacts: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put the tiny model in ``artifacts/models``; make the runtime use the square detector."""
    from toolchain.runtime import loading

    write_tiny_facenet(artifacts / "models" / "facenet.onnx")
    monkeypatch.setattr(loading, "load_detector", lambda models_dir, **options: SquareDetector())
    return artifacts



FAKE_MTCNN = b"MTCNN stand-in: the square detector never loads these bytes"
"""What the fake pack holds for each MTCNN net (hashed and checked like any pack file)."""


def install_pack(artifacts: Path) -> Path:
    """Three MTCNN stand-in files next to the tiny model of :func:`install`, and a model pack of
    them at ``artifacts/pack`` written by the export's writer; returns the pack."""
    from toolchain.core.contracts import MTCNN_FILES
    from toolchain.core.paths import Layout
    from toolchain.runtime.pack import ArtifactModels
    from toolchain.runtime.pack_writer import write_pack

    for name in MTCNN_FILES.values():
        (artifacts / "models" / name).write_bytes(FAKE_MTCNN)
    layout = Layout(artifacts)
    return write_pack(ArtifactModels(layout), layout.pack_dir, made_by="tests").path


SUBPROCESS_PRELUDE = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parents[1])!r})
from helpers import runtime_fakes
from toolchain.runtime import loading
loading.load_detector = lambda models_dir, **options: runtime_fakes.SquareDetector()
"""
"""Python source that makes a fresh interpreter use the square detector (for subprocess tests)."""

