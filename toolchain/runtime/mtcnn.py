"""MTCNN face detection on ONNX Runtime: numpy and onnxruntime only, no TensorFlow, no OpenCV.

Reproduces the pipeline of the ``mtcnn`` 1.0.0 package (``mtcnn/stages``, ``mtcnn/utils``) on its
three nets exported by ``toolchain.convert.mtcnn_export`` (``facenet export --format mtcnn``):

1. Normalize the RGB image once: ``(rgb - 127.5) / 128``.
2. Pyramid: ``round(-(log(min_side / 12) / log(factor) + 1))`` scales ``12 / min_face_size *
   factor**k``; each level is ``int(side * scale)`` pixels (truncated, as TensorFlow casts the
   float size) and resized with exact area averaging, the arithmetic of TensorFlow's
   ``ResizeArea`` kernel (``tf.image.resize(method="area")``), read off one integer summed-area
   table of the uint8 image and then normalized (the package normalizes first; the two orders
   agree to ~1e-7, float32 rounding).
3. P-Net on each level; cells with face probability > threshold become boxes
   ``(2*x + 1 + dx1*11, 2*y + 1 + dy1*11, 2*x + 12 + dx2*11, 2*y + 12 + dy2*11) / scale``;
   NMS 0.5 per level, NMS 0.7 over all levels, boxes made square.
4. R-Net on 24x24 patches cut with the bilinear sampling of ``tf.image.crop_and_resize``
   (normalized box corners, ``(side - 1)`` scaling, zero outside the image); offsets scaled by
   ``x2 - x1 + 1``; probability > threshold; NMS 0.7; square.
5. O-Net on 48x48 patches; landmarks ``(x2 - x1 + 1) * l + x1 - 1`` from the O-Net input box;
   offsets as in R-Net; probability > threshold; NMS 0.7 over the smaller area.
6. Box corners clipped to ``[0, side - 1]``, reported as ``round([x1, y1, x2 - x1, y2 - y1])``
   with keypoints rounded (numpy's round-half-to-even), as the package's JSON output.

The package's NMS is not the greedy one: box ``j`` is dropped when ANY higher-scored box, kept or
not, overlaps it by more than the threshold. That rule is kept, since it decides which faces come
out. Score ordering uses the same ``np.argsort`` call, so ties break the same way.

Real-size photos (a longer side ``L`` above ``max_side``, default :data:`DEFAULT_MAX_SIDE`) keep
the full-resolution pyramid's scales, but its levels larger than ``max_side`` are not built: each
kept level is area-resized from a copy of the photo reduced to ``max_side`` (Pillow's ``BOX``
filter on the uint8 pixels), so the smallest face looked for is ``12 / s`` photo pixels for the
first kept scale ``s <= max_side / L``, between ``12 * L / max_side`` and ``17 * L / max_side``
(and never below ``min_face_size``); see :func:`detection_plan`. R-Net and O-Net cut their
patches from the full-resolution uint8 photo (normalized patch by patch), as at full resolution,
so the faces still found get the same boxes and landmarks. No float copy of the full-resolution
photo is made: memory is bounded by ``max_side``, whatever the photo's size. Photos no larger than
``max_side`` take exactly the package's path above.

Known difference: when a pyramid level is too small for P-Net to produce any output (side <= 10
pixels; only with a ``min_face_size`` above the default), the package's TensorFlow call fails and
it returns no faces for the whole image; here that level is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from toolchain.core.errors import InputError, IntegrityError, MissingArtifactError
from toolchain.runtime.ort_options import OrtSettings, create_session

MODEL_FILES: dict[str, str] = {
    "pnet": "mtcnn_pnet.onnx",
    "rnet": "mtcnn_rnet.onnx",
    "onet": "mtcnn_onet.onnx",
}
"""ONNX file of each net inside the models directory."""

NET_OUTPUTS: dict[str, tuple[str, ...]] = {
    "pnet": ("bbox_reg", "prob"),
    "rnet": ("bbox_reg", "prob"),
    "onet": ("bbox_reg", "landmarks", "prob"),
}
"""Output names of each exported net, in the order the Keras net returns them."""

KEYPOINT_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

EXPORT_HINT = "run `nox -s export` (it runs `facenet export --format mtcnn`)"

_MIN_SIZE = 12
_STRIDE = 2
_CELL = 12
_PNET_NMS_SCALE = 0.5
_PNET_NMS_ALL = 0.7
_RNET_NMS = 0.7
_ONET_NMS = 0.7
_NMS_CHUNK = 1024

DEFAULT_MAX_SIDE = 480
"""Longest side, in pixels, of the largest pyramid level built (larger photos are reduced).

At 480 the smallest face looked for in a photo of longer side ``L`` is 0.025-0.035 ``L`` (48-68
pixels in a 1920-pixel photo), about the face_recognition CLI's own limit (it thumbnails photos to
1600 pixels and its HOG window finds faces down to 40 pixels there); on the shared real photos
(0.1-3.4 MP) it finds the same faces as full resolution, in 33 ms per photo against 46 ms at
640 and 186 ms at full resolution (2 cores, AVX-512)."""

MIN_MAX_SIDE = 64
"""Smallest ``max_side`` accepted (a smaller one would leave hardly any pyramid level)."""


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


def pyramid_scales(width: int, height: int, min_face_size: float = 20,
                   scale_factor: float = 0.709, min_size: int = _MIN_SIZE) -> np.ndarray:
    """The package's image pyramid scales (``mtcnn.utils.images.build_scale_pyramid``)."""
    min_dim = min(width, height)
    count = round(-((np.log(min_dim / min_size) / np.log(scale_factor)) + 1))
    return (min_size / min_face_size) * scale_factor ** np.arange(count)


@dataclass(frozen=True)
class DetectionPlan:
    """How one photo is searched for faces (see :func:`detection_plan`).

    Attributes:
        size: ``(width, height)`` of the image the pyramid levels are resized from.
        scales: the pyramid's scales, relative to the photo.
        reduced: whether that image is a reduced copy of the photo.
    """

    size: tuple[int, int]
    scales: tuple[float, ...]
    reduced: bool

    @property
    def smallest_face(self) -> float:
        """Side, in photo pixels, of the smallest face the pyramid looks for (P-Net's 12-pixel
        window at the finest level); ``inf`` when no level is built."""
        return _MIN_SIZE / self.scales[0] if self.scales else float("inf")


def detection_plan(width: int, height: int, min_face_size: float = 20,
                   scale_factor: float = 0.709,
                   max_side: int | None = DEFAULT_MAX_SIDE) -> DetectionPlan:
    """The detection policy for a ``width`` x ``height`` photo.

    The scales are the package's (:func:`pyramid_scales`). When the photo's longer side ``L``
    exceeds ``max_side``, the scales above ``r = max_side / L`` are dropped and the levels are
    resized from the photo reduced by ``r`` (each side rounded). ``max_side=None`` always detects
    at full resolution, like the package.
    """
    scales = pyramid_scales(width, height, min_face_size, scale_factor)
    longer = max(width, height)
    if max_side is None or longer <= max_side:
        return DetectionPlan((width, height), tuple(float(s) for s in scales), False)
    ratio = max_side / longer
    size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    return DetectionPlan(size, tuple(float(s) for s in scales if s <= ratio), True)


def reduce_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` reduced to ``size`` = ``(width, height)`` by area averaging, uint8 RGB."""
    with Image.fromarray(image) as full:
        reduced = full.resize(size, Image.Resampling.BOX)
    return np.asarray(reduced, dtype=np.uint8)


def _footprint_edges(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.float32]:
    """Footprint edges ``k * s`` (float32, as the kernel computes them): whole part, fraction."""
    scale = np.float32(n_in) / np.float32(n_out)
    edges = np.minimum((np.arange(n_out + 1, dtype=np.float32) * scale).astype(np.float64), n_in)
    whole = np.minimum(np.floor(edges).astype(np.intp), n_in - 1)
    return whole, edges - whole, scale


def summed_area_table(image: np.ndarray) -> np.ndarray:
    """``S[i, j] = sum(image[:i, :j])`` per channel, shape ``(H + 1, W + 1, C)``.

    Integer images get an exact integer table (int32 while it cannot overflow, which numpy also
    accumulates several times faster than float64); float images a float64 table.
    """
    height, width, channels = image.shape
    if np.issubdtype(image.dtype, np.integer):
        peak = int(np.iinfo(image.dtype).max) * height * width
        dtype: type = np.int32 if peak < np.iinfo(np.int32).max else np.int64
    else:
        dtype = np.float64
    table = np.zeros((height + 1, width + 1, channels), dtype=dtype)
    np.cumsum(image, axis=0, dtype=dtype, out=table[1:, 1:])
    np.cumsum(table[1:, 1:], axis=1, out=table[1:, 1:])
    return table


def area_resize(table: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize by exact area averaging, like TensorFlow's ``ResizeArea`` (``method="area"``).

    Each output pixel is the mean of the input over its footprint ``[k * s, (k + 1) * s)`` with
    ``s = in / out`` per axis, partially covered pixels weighted by their covered fraction. The
    integral of the piecewise-constant image up to a fractional corner is the bilinear
    interpolation of its summed-area table there, so every pyramid level is read off one table.

    Args:
        table: :func:`summed_area_table` of the ``(H, W, C)`` image.
        height: output height.
        width: output width.

    Returns:
        ``(height, width, C)`` float64 image.
    """
    rows, row_frac, row_scale = _footprint_edges(table.shape[0] - 1, height)
    cols, col_frac, col_scale = _footprint_edges(table.shape[1] - 1, width)
    upper = np.take(table, rows, axis=0)
    edge_rows = (np.take(table, rows + 1, axis=0) - upper) * row_frac[:, None, None]
    edge_rows += upper
    strips = edge_rows[1:] - edge_rows[:-1]
    left = np.take(strips, cols, axis=1)
    right = np.take(strips, cols + 1, axis=1)
    right -= left
    right *= col_frac[None, :, None]
    left += right
    sums = left[:, 1:] - left[:, :-1]
    sums *= 1.0 / (np.float64(row_scale) * np.float64(col_scale))
    return sums


def crop_and_resize(image: np.ndarray, boxes: np.ndarray, size: int,
                    normalize: bool = False) -> np.ndarray:
    """Cut ``size`` x ``size`` patches like ``tf.image.crop_and_resize`` with the package's boxes.

    Args:
        image: ``(H, W, C)`` float32 normalized image, or (``normalize``) the raw pixels.
        boxes: ``(N, 4)`` pixel corners ``x1, y1, x2, y2``; the package divides them by ``W``/``H``
            and the kernel multiplies by ``W - 1``/``H - 1``, which is reproduced here.
        size: patch side.
        normalize: apply the package's input scaling to the sampled patches (interpolation is
            linear, so this equals sampling the normalized image up to float32 rounding, without
            a float copy of the whole image).

    Returns:
        ``(N, size, size, C)`` float32 patches; samples outside the image are 0.
    """
    height, width = image.shape[:2]
    norm = (boxes[:, [1, 0, 3, 2]] / np.array([height, width, height, width])).astype(np.float32)
    steps = np.arange(size, dtype=np.float32)

    def axis_samples(lo: np.ndarray, hi: np.ndarray, side: int) -> tuple[np.ndarray, ...]:
        extent = np.float32(side - 1)
        step = (hi - lo) * extent / np.float32(size - 1)
        pos = lo[:, None] * extent + steps[None, :] * step[:, None]
        inside = (pos >= 0) & (pos <= extent)
        low = np.clip(np.floor(pos), 0, side - 1).astype(np.intp)
        high = np.clip(np.ceil(pos), 0, side - 1).astype(np.intp)
        return low, high, (pos - np.floor(pos)).astype(np.float32), inside

    top, bottom, y_lerp, y_in = axis_samples(norm[:, 0], norm[:, 2], height)
    left, right, x_lerp, x_in = axis_samples(norm[:, 1], norm[:, 3], width)
    pixels = image.reshape(height * width, -1)

    def gather(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return np.take(pixels, rows[:, :, None] * width + cols[:, None, :],
                       axis=0).astype(np.float32, copy=False)

    xl = x_lerp[:, None, :, None]
    upper = gather(top, left)
    upper += (gather(top, right) - upper) * xl
    lower = gather(bottom, left)
    lower += (gather(bottom, right) - lower) * xl
    patches = upper
    patches += (lower - upper) * y_lerp[:, :, None, None]
    if normalize:
        patches = _normalize(patches)
    patches *= (y_in[:, :, None] & x_in[:, None, :])[..., None]
    return patches.astype(np.float32, copy=False)


def sort_by_score(boxes: np.ndarray, column: int = 4) -> np.ndarray:
    """Rows of ``boxes`` by descending score, with the package's ``np.argsort`` tie order."""
    return boxes[np.argsort(boxes[:, column])[::-1]]


def nms(boxes: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Indices kept by the package's NMS (``mtcnn.utils.bboxes.nms``) on score-ordered boxes.

    Box ``j`` is dropped when any earlier box ``i < j`` (suppressed or not) has an overlap with it
    above ``threshold``; overlap is intersection over union (``"union"``) or over the smaller area
    (``"min"``), with areas ``(x2 - x1) * (y2 - y1)``.
    """
    if method not in ("union", "min"):
        raise ValueError(f"NMS method must be 'union' or 'min', not {method!r}")
    n = len(boxes)
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    area = (x2 - x1) * (y2 - y1)
    suppressed = np.zeros(n, dtype=bool)
    columns = np.arange(n)
    for start in range(0, n, _NMS_CHUNK):
        rows = slice(start, min(n, start + _NMS_CHUNK))
        inter = (np.maximum(0, np.minimum(x2[rows, None], x2) - np.maximum(x1[rows, None], x1))
                 * np.maximum(0, np.minimum(y2[rows, None], y2) - np.maximum(y1[rows, None], y1)))
        if method == "union":
            denominator = area[rows, None] + area[None, :] - inter
        else:
            denominator = np.minimum(area[rows, None], area[None, :])
        with np.errstate(divide="ignore", invalid="ignore"):
            overlap = inter / denominator
        later = columns[None, :] > columns[rows, None]
        suppressed |= ((overlap > threshold) & later).any(axis=0)
    return np.flatnonzero(~suppressed)


def square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square of its longer side around its centre (``resize_to_square``)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply R-Net/O-Net offsets scaled by ``x2 - x1 + 1``, ``y2 - y1 + 1`` (``adjust_bboxes``)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, :4] += offsets * np.stack([w, h, w, h], axis=-1)
    return out


def proposals(reg: np.ndarray, prob: np.ndarray, scale: float, threshold: float) -> np.ndarray:
    """P-Net cells above ``threshold`` as ``(N, 5)`` boxes ``x1, y1, x2, y2, score``.

    Args:
        reg: ``(h, w, 4)`` P-Net offsets of one image.
        prob: ``(h, w)`` face probability of one image.
        scale: pyramid scale of this level (coordinates are divided by it).
        threshold: minimum probability, exclusive.

    Returns:
        Boxes in input-image pixels, sorted by descending score.
    """
    ys, xs = np.nonzero(prob > threshold)
    dx1, dy1, dx2, dy2 = reg[ys, xs].astype(np.float64).T
    span = _CELL - 1
    left, top = xs * _STRIDE + 1, ys * _STRIDE + 1
    right, bottom = xs * _STRIDE + _CELL, ys * _STRIDE + _CELL
    boxes = np.stack([left + dx1 * span, top + dy1 * span, right + dx2 * span,
                      bottom + dy2 * span, prob[ys, xs]], axis=1).astype(np.float64)
    boxes = sort_by_score(boxes)
    boxes[:, :4] /= scale
    return boxes


def _normalize(pixels: np.ndarray) -> np.ndarray:
    """The package's input scaling ``(x - 127.5) / 128``, as float32."""
    return ((pixels - 127.5) / 128.0).astype(np.float32)


MTCNN_SETTINGS = OrtSettings(allow_spinning=False, enable_mem_pattern=False, cache_optimized=False)
"""Session settings of the three nets, from measurements on the 118 photos (2 cores): the nets are
small and the numpy work between their calls is large, so spinning intra-op threads only steal the
core that numpy needs (9.1 ms/image without spinning vs 20 ms with it; 1 thread: 9.2 ms). P-Net
sees a new input shape at every pyramid level (no memory pattern); the cached optimized graph
gave no gain for nets this small."""


class _Net:
    """One MTCNN net on an ONNX Runtime session, checked against the expected interface."""

    def __init__(self, name: str, path: Path) -> None:
        if not path.is_file():
            raise MissingArtifactError(f"MTCNN {name} model {path} is missing; {EXPORT_HINT}")
        try:
            self._session = create_session(path, MTCNN_SETTINGS)
        except Exception as exc:  # ONNX Runtime raises several pybind11 exception types
            raise IntegrityError(f"{path} is not a loadable ONNX model ({exc}); "
                                 f"{EXPORT_HINT}") from exc
        inputs = self._session.get_inputs()
        outputs = {o.name for o in self._session.get_outputs()}
        shape = inputs[0].shape if len(inputs) == 1 else []
        if len(shape) != 4 or shape[3] != 3 or not set(NET_OUTPUTS[name]) <= outputs:
            raise IntegrityError(f"{path} is not the MTCNN {name} export (inputs "
                                 f"{[(i.name, i.shape) for i in inputs]}, outputs "
                                 f"{sorted(outputs)}); {EXPORT_HINT}")
        self.input_name = inputs[0].name
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

    Raises:
        MissingArtifactError: a model file is missing (names ``nox -s export``).
        IntegrityError: a model file is not the expected export.
    """

    def __init__(self, models_dir: Path, min_face_size: float = 20, scale_factor: float = 0.709,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8),
                 max_side: int | None = DEFAULT_MAX_SIDE) -> None:
        if (not min_face_size > 0 or not 0 < scale_factor < 1 or len(thresholds) != 3
                or (max_side is not None and max_side < MIN_MAX_SIDE)):
            raise InputError(f"MTCNN needs min_face_size > 0, 0 < scale_factor < 1, three "
                             f"thresholds and a max side of at least {MIN_MAX_SIDE} pixels")
        self.min_face_size = min_face_size
        self.max_side = max_side
        self.scale_factor = scale_factor
        self.thresholds = tuple(float(t) for t in thresholds)
        models_dir = Path(models_dir)
        self._pnet = _Net("pnet", models_dir / MODEL_FILES["pnet"])
        self._rnet = _Net("rnet", models_dir / MODEL_FILES["rnet"])
        self._onet = _Net("onet", models_dir / MODEL_FILES["onet"])
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
        if plan.reduced:
            boxes = self._stage_pnet(reduce_image(image, plan.size), None, plan.scales,
                                     (height, width))
            patches = image
        else:
            patches = _normalize(image)
            boxes = self._stage_pnet(image, patches, plan.scales, (height, width))
        if len(boxes):
            boxes = self._stage_rnet(patches, boxes, plan.reduced)
        if len(boxes):
            boxes = self._stage_onet(patches, boxes, plan.reduced)
        return self._detections(boxes, width, height)

    def plan(self, width: int, height: int) -> DetectionPlan:
        """This detector's :func:`detection_plan` for a ``width`` x ``height`` photo."""
        return detection_plan(width, height, self.min_face_size, self.scale_factor,
                              self.max_side)

    def _stage_pnet(self, source: np.ndarray, normalized: np.ndarray | None,
                    scales: tuple[float, ...], photo_size: tuple[int, int]) -> np.ndarray:
        """P-Net proposals in photo pixels; levels are resized from ``source`` (uint8)."""
        height, width = photo_size
        threshold = self.thresholds[0]
        table = summed_area_table(source)
        per_level = []
        for scale in scales:
            level_h, level_w = int(height * scale), int(width * scale)
            if min(level_h, level_w) <= 10:
                continue
            if (level_h, level_w) == source.shape[:2]:
                level = normalized if normalized is not None else _normalize(source)
            else:
                level = _normalize(area_resize(table, level_h, level_w))
            reg, prob = self._pnet(level[None])
            boxes = proposals(reg[0], prob[0, :, :, 1], float(scale), threshold)
            per_level.append(boxes[nms(boxes, _PNET_NMS_SCALE)])
        if not per_level:
            return np.empty((0, 5))
        boxes = sort_by_score(np.concatenate(per_level, axis=0))
        return square(boxes[nms(boxes, _PNET_NMS_ALL)])

    def _stage_rnet(self, image: np.ndarray, boxes: np.ndarray, raw: bool) -> np.ndarray:
        reg, prob = self._rnet(crop_and_resize(image, boxes, self._rnet_size, normalize=raw))
        boxes = boxes.copy()
        boxes[:, 4] = prob[:, 1]
        boxes = regress(boxes, reg)
        boxes = sort_by_score(boxes[boxes[:, 4] > self.thresholds[1]])
        return square(boxes[nms(boxes, _RNET_NMS)])

    def _stage_onet(self, image: np.ndarray, boxes: np.ndarray, raw: bool) -> np.ndarray:
        reg, marks, prob = self._onet(crop_and_resize(image, boxes, self._onet_size,
                                                      normalize=raw))
        w = boxes[:, 2:3] - boxes[:, 0:1] + 1
        h = boxes[:, 3:4] - boxes[:, 1:2] + 1
        xs = (w * marks[:, 0:5] + boxes[:, 0:1] - 1).astype(np.float32)
        ys = (h * marks[:, 5:10] + boxes[:, 1:2] - 1).astype(np.float32)
        boxes = boxes.copy()
        boxes[:, 4] = prob[:, 1]
        boxes = np.concatenate([regress(boxes, reg), xs, ys], axis=1)
        boxes = sort_by_score(boxes[boxes[:, 4] > self.thresholds[2]])
        return boxes[nms(boxes, _ONET_NMS, method="min")]

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
