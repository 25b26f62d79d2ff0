"""The three MTCNN stages on numpy: P-Net proposals, R-Net and O-Net refinement, and their box math.

Reproduces ``mtcnn/stages`` and ``mtcnn/utils`` of the ``mtcnn`` 1.0.0 package:

- P-Net on each pyramid level; cells with face probability > threshold become boxes
  ``(2*x + 1 + dx1*11, 2*y + 1 + dy1*11, 2*x + 12 + dx2*11, 2*y + 12 + dy2*11) / scale``;
  NMS 0.5 per level, NMS 0.7 over all levels, boxes made square.
- R-Net on 24x24 patches cut with the bilinear sampling of ``tf.image.crop_and_resize``
  (normalized box corners, ``(side - 1)`` scaling, zero outside the image); offsets scaled by
  ``x2 - x1 + 1``; probability > threshold; NMS 0.7; square.
- O-Net on 48x48 patches; landmarks ``(x2 - x1 + 1) * l + x1 - 1`` from the O-Net input box;
  offsets as in R-Net; probability > threshold; NMS 0.7 over the smaller area.

The package's NMS is not the greedy one: box ``j`` is dropped when ANY higher-scored box, kept or
not, overlaps it by more than the threshold. That rule is kept, since it decides which faces come
out. Score ordering uses the same ``np.argsort`` call, so ties break the same way.

R-Net and O-Net cut their patches from the full-resolution photo, normalized or (``raw``) the
uint8 pixels normalized patch by patch, so no float copy of a large photo is made.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from toolchain.runtime.mtcnn.pyramid import area_resize, normalize_pixels, summed_area_table

Net = Callable[[np.ndarray], list[np.ndarray]]
"""One MTCNN net: an NHWC float32 batch in, its outputs in ``NET_OUTPUTS`` order out."""

_STRIDE = 2
_CELL = 12
_PNET_NMS_SCALE = 0.5
_PNET_NMS_ALL = 0.7
_RNET_NMS = 0.7
_ONET_NMS = 0.7
_NMS_CHUNK = 1024


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
        patches = normalize_pixels(patches)
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


def pnet_stage(pnet: Net, source: np.ndarray, normalized: np.ndarray | None,
               scales: tuple[float, ...], photo_size: tuple[int, int],
               threshold: float) -> np.ndarray:
    """P-Net proposals in photo pixels, square, as ``(N, 5)`` boxes ``x1, y1, x2, y2, score``.

    Args:
        pnet: the P-Net.
        source: uint8 image the levels are resized from (the photo, or its reduced copy).
        normalized: ``source`` already normalized, when the caller has it (else ``None``).
        scales: pyramid scales, relative to the photo.
        photo_size: ``(height, width)`` of the photo.
        threshold: minimum face probability, exclusive.
    """
    height, width = photo_size
    table = summed_area_table(source)
    per_level = []
    for scale in scales:
        level_h, level_w = int(height * scale), int(width * scale)
        if min(level_h, level_w) <= 10:
            continue
        if (level_h, level_w) == source.shape[:2]:
            level = normalized if normalized is not None else normalize_pixels(source)
        else:
            level = normalize_pixels(area_resize(table, level_h, level_w))
        reg, prob = pnet(level[None])
        boxes = proposals(reg[0], prob[0, :, :, 1], float(scale), threshold)
        per_level.append(boxes[nms(boxes, _PNET_NMS_SCALE)])
    if not per_level:
        return np.empty((0, 5))
    boxes = sort_by_score(np.concatenate(per_level, axis=0))
    return square(boxes[nms(boxes, _PNET_NMS_ALL)])


def rnet_stage(rnet: Net, patch_size: int, image: np.ndarray, boxes: np.ndarray, raw: bool,
               threshold: float) -> np.ndarray:
    """R-Net refinement of P-Net's boxes: rescored, regressed, filtered, NMS, square.

    Args:
        rnet: the R-Net.
        patch_size: its input side.
        image: the photo, normalized, or (``raw``) its uint8 pixels.
        boxes: ``(N, 5)`` P-Net boxes.
        raw: ``image`` is the uint8 photo (patches are normalized after sampling).
        threshold: minimum face probability, exclusive.
    """
    reg, prob = rnet(crop_and_resize(image, boxes, patch_size, normalize=raw))
    boxes = boxes.copy()
    boxes[:, 4] = prob[:, 1]
    boxes = regress(boxes, reg)
    boxes = sort_by_score(boxes[boxes[:, 4] > threshold])
    return square(boxes[nms(boxes, _RNET_NMS)])


def onet_stage(onet: Net, patch_size: int, image: np.ndarray, boxes: np.ndarray, raw: bool,
               threshold: float) -> np.ndarray:
    """O-Net's final boxes with landmarks: ``(N, 15)`` rows ``x1, y1, x2, y2, score``, then the
    five landmark ``x`` and the five ``y``.

    Args:
        onet: the O-Net.
        patch_size: its input side.
        image: the photo, normalized, or (``raw``) its uint8 pixels.
        boxes: ``(N, 5)`` R-Net boxes.
        raw: ``image`` is the uint8 photo (patches are normalized after sampling).
        threshold: minimum face probability, exclusive.
    """
    reg, marks, prob = onet(crop_and_resize(image, boxes, patch_size, normalize=raw))
    w = boxes[:, 2:3] - boxes[:, 0:1] + 1
    h = boxes[:, 3:4] - boxes[:, 1:2] + 1
    xs = (w * marks[:, 0:5] + boxes[:, 0:1] - 1).astype(np.float32)
    ys = (h * marks[:, 5:10] + boxes[:, 1:2] - 1).astype(np.float32)
    boxes = boxes.copy()
    boxes[:, 4] = prob[:, 1]
    boxes = np.concatenate([regress(boxes, reg), xs, ys], axis=1)
    boxes = sort_by_score(boxes[boxes[:, 4] > threshold])
    return boxes[nms(boxes, _ONET_NMS, method="min")]
