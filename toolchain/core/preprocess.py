"""The face crop rule and the model's input standardization, shared by every stage.

Pure numpy + Pillow: the legacy environment uses this module to make the reference crops, and the
runtime uses it to make the crops it embeds, so both follow one rule.

Crop rule: take the MTCNN box ``(x, y, width, height)`` in pixels of the EXIF-transposed RGB image,
clip it to the image (the seed used ``abs()`` on negative corners, which shifts the box; clipping
keeps it), crop without margin, and resize to 160x160 with Pillow's bilinear filter.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from toolchain.core.contracts import INPUT_SIZE


def clip_box(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """Clip an ``(x, y, w, h)`` box to the image; return integer ``(x1, y1, x2, y2)`` corners.

    Raises:
        ValueError: the box does not overlap the image.
    """
    x, y, w, h = (float(v) for v in box)
    x1, y1 = max(0, round(x)), max(0, round(y))
    x2, y2 = min(width, round(x + w)), min(height, round(y + h))
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"face box {tuple(box)} does not overlap the {width}x{height} image")
    return x1, y1, x2, y2


def crop_face(image: np.ndarray, box: Sequence[float], size: int = INPUT_SIZE) -> np.ndarray:
    """Crop one face from an RGB uint8 ``(H, W, 3)`` image by the rule above.

    Returns:
        A ``(size, size, 3)`` uint8 RGB array.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image, got shape {image.shape} {image.dtype}")
    x1, y1, x2, y2 = clip_box(box, image.shape[1], image.shape[0])
    face = Image.fromarray(image[y1:y2, x1:x2])
    return np.asarray(face.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def largest_face(boxes: Sequence[Sequence[float]]) -> int:
    """Index of the box with the largest area (the dataset convention: one subject per photo)."""
    if not boxes:
        raise ValueError("no face boxes")
    return int(np.argmax([float(b[2]) * float(b[3]) for b in boxes]))


def prewhiten(faces: np.ndarray) -> np.ndarray:
    """Per-image standardization: ``(x - mean) / max(std, 1/sqrt(N))`` over each HxWxC image.

    Accepts one ``(H, W, C)`` image or a ``(B, H, W, C)`` batch of uint8 or float pixels; always
    computes and returns float32 (numpy 2 would otherwise promote the ``max`` to float64).
    """
    x = np.asarray(faces, dtype=np.float32)
    single = x.ndim == 3
    if single:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"expected (H, W, C) or (B, H, W, C), got shape {x.shape}")
    n = np.float32(np.prod(x.shape[1:]))
    mean = x.mean(axis=(1, 2, 3), keepdims=True, dtype=np.float32)
    std = x.std(axis=(1, 2, 3), keepdims=True, dtype=np.float32)
    std_adj = np.maximum(std, np.float32(1.0) / np.sqrt(n)).astype(np.float32)
    out = ((x - mean) / std_adj).astype(np.float32)
    return out[0] if single else out


def l2_normalize(embeddings: np.ndarray, eps: float = 1e-10) -> np.ndarray:
    """L2-normalize along the last axis, in float32."""
    e = np.asarray(embeddings, dtype=np.float32)
    norm = np.sqrt(np.maximum(np.sum(e * e, axis=-1, keepdims=True), np.float32(eps)))
    return (e / norm).astype(np.float32)
