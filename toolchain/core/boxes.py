"""Face boxes: one shape in memory, one in every JSON document, and their overlap.

In memory a box is ``(x, y, width, height)`` in pixels of the upright image (:data:`Box`), as the
detector gives it. In every JSON document the toolchain writes (``recognize --json``, batch JSON
Lines and Parquet, the HTTP API, the video timeline) it is the object :func:`box_dict` makes,
``{"x", "y", "width", "height"}``: self-describing where a bare list invites reading it as
``(top, right, bottom, left)`` (face_recognition's order) or ``(x1, y1, x2, y2)``. CSV spreads the
same four fields over four columns. No numpy: the CLI's option parsing imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

Box: TypeAlias = tuple[float, float, float, float]
"""``(x, y, width, height)`` in pixels of the upright image."""

BOX_DIGITS = 2
"""Decimals of a box's coordinates in JSON (a hundredth of a pixel)."""

VALUE_DIGITS = 6
"""Decimals of distances, margins and confidences in JSON (thresholds are set to 1e-4)."""


def as_box(values: Sequence[float]) -> Box:
    """Four numbers as a :data:`Box` of Python floats."""
    x, y, w, h = (float(v) for v in values)
    return x, y, w, h


BOX_KEYS = ("x", "y", "width", "height")
"""The fields of a box in JSON, in :data:`Box` order."""


def box_dict(box: Sequence[float]) -> dict[str, float]:
    """The JSON form of a box: ``{"x", "y", "width", "height"}``, rounded to :data:`BOX_DIGITS`."""
    return {key: round(float(v), BOX_DIGITS) for key, v in zip(BOX_KEYS, box, strict=True)}


def box_from_dict(data: Mapping[str, float]) -> Box:
    """The :data:`Box` of a box's JSON form (:func:`box_dict`)."""
    return as_box([data[key] for key in BOX_KEYS])


def rounded(value: float | None, digits: int = VALUE_DIGITS) -> float | None:
    """``value`` rounded for JSON (``None`` stays ``None``)."""
    return None if value is None else round(float(value), digits)


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes (0 when they do not overlap)."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return float(inter / (a[2] * a[3] + b[2] * b[3] - inter))
