"""The MTCNN detection plan and the pyramid levels P-Net runs on.

The pyramid's scales are the ``mtcnn`` package's (``mtcnn.utils.images.build_scale_pyramid``).
Each level is ``int(side * scale)`` pixels (truncated, as TensorFlow casts the float size) and
resized with exact area averaging, the arithmetic of TensorFlow's ``ResizeArea`` kernel
(``tf.image.resize(method="area")``), read off one integer summed-area table of the uint8 image
and then normalized (the package normalizes first; the two orders agree to ~1e-7, float32
rounding).

Real-size photos (a longer side ``L`` above ``max_side``, default :data:`DEFAULT_MAX_SIDE`) keep
the full-resolution pyramid's scales, but its levels larger than ``max_side`` are not built: each
kept level is area-resized from a copy of the photo reduced to ``max_side`` (Pillow's ``BOX``
filter on the uint8 pixels), so the smallest face looked for is ``12 / s`` photo pixels for the
first kept scale ``s <= max_side / L``, between ``12 * L / max_side`` and ``17 * L / max_side``
(and never below ``min_face_size``); see :func:`detection_plan`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

MIN_SIZE = 12
"""P-Net's window, in pixels of a pyramid level: the smallest face it finds there."""

DEFAULT_MAX_SIDE = 480
"""Longest side, in pixels, of the largest pyramid level built (larger photos are reduced).

At 480 the smallest face looked for in a photo of longer side ``L`` is 0.025-0.035 ``L`` (48-68
pixels in a 1920-pixel photo), about the face_recognition CLI's own limit (it thumbnails photos to
1600 pixels and its HOG window finds faces down to 40 pixels there); on the shared real photos
(0.1-3.4 MP) it finds the same faces as full resolution, several times faster (``facenet bench
runtimes`` measures it)."""

MIN_MAX_SIDE = 64
"""Smallest ``max_side`` accepted (a smaller one would leave hardly any pyramid level)."""


def pyramid_scales(width: int, height: int, min_face_size: float = 20,
                   scale_factor: float = 0.709, min_size: int = MIN_SIZE) -> np.ndarray:
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
        return MIN_SIZE / self.scales[0] if self.scales else float("inf")


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


def normalize_pixels(pixels: np.ndarray) -> np.ndarray:
    """The package's input scaling ``(x - 127.5) / 128``, as float32."""
    return ((pixels - 127.5) / 128.0).astype(np.float32)
