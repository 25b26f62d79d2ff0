"""The MTCNN face detector: the three exported nets on ONNX Runtime and the detection pipeline.

:class:`MTCNNDetector` loads ``mtcnn_{pnet,rnet,onet}.onnx`` (checked against the interface of
the export), plans the pyramid of each photo (:mod:`~toolchain.runtime.mtcnn.pyramid`), runs the
three stages (:mod:`~toolchain.runtime.mtcnn.stages`) and reports each face as a
:class:`Detection`: box corners clipped to ``[0, side - 1]``, reported as
``round([x1, y1, x2 - x1, y2 - y1])`` with keypoints rounded (numpy's round-half-to-even), as the
package's JSON output.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from toolchain.core.contracts import MTCNN_FILES
from toolchain.core.errors import (
    EnvironmentToolError,
    InputError,
    IntegrityError,
    MissingArtifactError,
)
from toolchain.runtime.backends import RUNTIMES, open_session
from toolchain.runtime.mtcnn.pyramid import (
    DEFAULT_MAX_SIDE,
    MIN_MAX_SIDE,
    DetectionPlan,
    detection_plan,
    normalize_pixels,
    reduce_image,
)
from toolchain.runtime.mtcnn.stages import onet_stage, pnet_stage, rnet_stage
from toolchain.runtime.ort_options import OrtSettings

NET_OUTPUTS: dict[str, tuple[str, ...]] = {
    "pnet": ("bbox_reg", "prob"),
    "rnet": ("bbox_reg", "prob"),
    "onet": ("bbox_reg", "landmarks", "prob"),
}
"""Output names of each exported net, in the order the Keras net returns them."""

KEYPOINT_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

EXPORT_HINT = "run `nox -s export` (it runs `facenet model export --format mtcnn`)"


@dataclass(frozen=True)
class Detection:
    """One detected face, in pixels of the input image.

    Attributes:
        box: ``(x, y, width, height)``, rounded to whole pixels like the package's ``"box"``.
        confidence: O-Net face probability.
        keypoints: ``left_eye``, ``right_eye``, ``nose``, ``mouth_left``, ``mouth_right`` as
            ``(x, y)``, rounded like the package's ``"keypoints"``.
    """

    box: tuple[float, float, float, float]
    confidence: float
    keypoints: dict[str, tuple[float, float]]


MTCNN_SETTINGS = OrtSettings(allow_spinning=False, enable_mem_pattern=False, cache_optimized=False)
"""Session settings of the three nets: the nets are small and the numpy work between their calls is
large, so spinning intra-op threads only steal the core that numpy needs (``facenet bench runtimes``
measures detection). P-Net sees a new input shape at every pyramid level (no memory pattern); the
cached optimized graph gave no gain for nets this small."""


class _Net:
    """One MTCNN net on a runtime session, checked against the expected interface."""

    def __init__(self, name: str, path: Path, runtime: str = RUNTIMES[0],
                 settings: OrtSettings = MTCNN_SETTINGS) -> None:
        if not path.is_file():
            raise MissingArtifactError(f"MTCNN {name} model {path} is missing; {EXPORT_HINT}")
        try:
            self._session = open_session(path, runtime, settings)
        except (EnvironmentToolError, ValueError):
            raise
        except Exception as exc:  # the runtimes raise several pybind11 exception types
            raise IntegrityError(f"{path} is not a loadable ONNX model ({exc}); "
                                 f"{EXPORT_HINT}") from exc
        session = self._session
        outputs = set(session.output_names)
        shape = session.input_shapes[0] if len(session.input_names) == 1 else []
        if len(shape) != 4 or shape[3] != 3 or not set(NET_OUTPUTS[name]) <= outputs:
            raise IntegrityError(f"{path} is not the MTCNN {name} export (inputs "
                                 f"{session.input_names} {session.input_shapes}, "
                                 f"outputs {sorted(outputs)}); {EXPORT_HINT}")
        self.input_name = session.input_names[0]
        self.input_shape = tuple(shape)
        self.output_names = list(NET_OUTPUTS[name])

    @property
    def patch_size(self) -> int:
        """Fixed square input side of R-Net/O-Net, read from the model."""
        side = self.input_shape[1]
        if not isinstance(side, int) or side != self.input_shape[2]:
            raise IntegrityError(f"expected a fixed square input, got {self.input_shape}")
        return side

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run the net on an NHWC float32 batch; outputs in :data:`NET_OUTPUTS` order."""
        return self._session.run(self.output_names, {self.input_name: batch})


class MTCNNDetector:
    """The ``mtcnn`` 1.0.0 face detector on the exported ONNX nets.

    Args:
        models_dir: directory holding ``mtcnn_{pnet,rnet,onet}.onnx``.
        min_face_size: smallest face side in pixels the pyramid looks for.
        scale_factor: ratio between successive pyramid levels.
        thresholds: minimum face probability after P-Net, R-Net and O-Net.
        max_side: longest side of the largest pyramid level built; larger photos lose their finer
            levels (see :func:`detection_plan`). ``None``: always at full resolution, like the
            package.
        runtime: ``onnxruntime`` or ``openvino`` (which reads the ``.onnx`` nets directly).
        threads: intra-op threads of each net's session; 0: one per core this process may run
            on. A process that shares its node's cores with others (a Ray worker) takes its share.

    Raises:
        MissingArtifactError: a model file is missing (names ``nox -s export``).
        IntegrityError: a model file is not the expected export.
    """

    def __init__(self, models_dir: Path, min_face_size: float = 20, scale_factor: float = 0.709,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8),
                 max_side: int | None = DEFAULT_MAX_SIDE, runtime: str = RUNTIMES[0],
                 threads: int = 0) -> None:
        if (not min_face_size > 0 or not 0 < scale_factor < 1 or len(thresholds) != 3
                or (max_side is not None and max_side < MIN_MAX_SIDE)):
            raise InputError(f"MTCNN needs min_face_size > 0, 0 < scale_factor < 1, three "
                             f"thresholds and a max side of at least {MIN_MAX_SIDE} pixels")
        self.min_face_size = min_face_size
        self.max_side = max_side
        self.scale_factor = scale_factor
        self.thresholds = tuple(float(t) for t in thresholds)
        models_dir = Path(models_dir)
        self.runtime = runtime
        settings = replace(MTCNN_SETTINGS, intra_op_threads=threads)
        self._pnet = _Net("pnet", models_dir / MTCNN_FILES["pnet"], runtime, settings)
        self._rnet = _Net("rnet", models_dir / MTCNN_FILES["rnet"], runtime, settings)
        self._onet = _Net("onet", models_dir / MTCNN_FILES["onet"], runtime, settings)
        self._rnet_size = self._rnet.patch_size
        self._onet_size = self._onet.patch_size

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Detect faces in one RGB uint8 ``(H, W, 3)`` image, highest confidence first.

        Raises:
            InputError: ``image`` is not an RGB uint8 array.
        """
        if (not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3
                or image.shape[2] != 3 or min(image.shape[:2]) < 1):
            shape = getattr(image, "shape", None)
            dtype = getattr(image, "dtype", type(image).__name__)
            raise InputError(f"expected an RGB uint8 (H, W, 3) image, got {shape} {dtype}")
        height, width = image.shape[:2]
        plan = self.plan(width, height)
        pnet_threshold, rnet_threshold, onet_threshold = self.thresholds
        if plan.reduced:
            boxes = pnet_stage(self._pnet, reduce_image(image, plan.size), None, plan.scales,
                               (height, width), pnet_threshold)
            patches = image
        else:
            patches = normalize_pixels(image)
            boxes = pnet_stage(self._pnet, image, patches, plan.scales, (height, width),
                               pnet_threshold)
        if len(boxes):
            boxes = rnet_stage(self._rnet, self._rnet_size, patches, boxes, plan.reduced,
                               rnet_threshold)
        if len(boxes):
            boxes = onet_stage(self._onet, self._onet_size, patches, boxes, plan.reduced,
                               onet_threshold)
        return self._detections(boxes, width, height)

    def plan(self, width: int, height: int) -> DetectionPlan:
        """This detector's :func:`detection_plan` for a ``width`` x ``height`` photo."""
        return detection_plan(width, height, self.min_face_size, self.scale_factor,
                              self.max_side)

    @staticmethod
    def _detections(boxes: np.ndarray, width: int, height: int) -> list[Detection]:
        if not len(boxes):
            return []
        x1 = np.clip(boxes[:, 0], 0, width - 1)
        y1 = np.clip(boxes[:, 1], 0, height - 1)
        x2 = np.clip(boxes[:, 2], 0, width - 1)
        y2 = np.clip(boxes[:, 3], 0, height - 1)
        xywh = np.round(np.stack([x1, y1, x2 - x1, y2 - y1], axis=1))
        marks = np.round(boxes[:, 5:15])
        result = []
        for row, box, mark in zip(boxes, xywh, marks, strict=True):
            keypoints = {name: (float(mark[k]), float(mark[k + 5]))
                         for k, name in enumerate(KEYPOINT_NAMES)}
            result.append(Detection(box=(float(box[0]), float(box[1]), float(box[2]),
                                         float(box[3])),
                                    confidence=float(row[4]), keypoints=keypoints))
        return result
