"""Annotated photos drawn with Pillow: boxes and ``name distance`` labels, marked as ours.

The pictures of the evaluation (ROC, distance histograms) are drawn with the same font and writer
in :mod:`toolchain.evaluation.charts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from toolchain.core.atomic import atomic_file

KNOWN_COLOR = (0, 200, 70)
UNKNOWN_COLOR = (235, 40, 40)
TEXT_ON_BOX = (255, 255, 255)

ANNOTATION_MARK = "facenet-toolchain annotated photo"
"""Written into every annotated picture (JPEG comment, PNG ``Software`` text): a rerun may
replace a file that carries it, never one that does not (a user's own photo)."""


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` pixels (the bitmap default if FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError):
        return ImageFont.load_default()


@dataclass(frozen=True)
class Label:
    """A box and its caption on an annotated photo."""

    box: tuple[float, float, float, float]
    text: str
    known: bool


def annotate(image: np.ndarray, labels: Sequence[Label]) -> Image.Image:
    """Draw each label's box and caption on a copy of an RGB uint8 image.

    Captions sit on a filled band above the box (below its top edge if the box touches the top of
    the image); line width and text size scale with the image.
    """
    canvas = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    width, height = canvas.size
    line = max(2, round(min(width, height) / 200))
    text_font = font(max(12, round(min(width, height) / 28)))
    for label in labels:
        x, y, w, h = label.box
        color = KNOWN_COLOR if label.known else UNKNOWN_COLOR
        draw.rectangle([x, y, x + w, y + h], outline=color, width=line)
        left, top, right, bottom = draw.textbbox((0, 0), label.text, font=text_font)
        pad = max(2, line)
        band_h = bottom - top + 2 * pad
        band_w = right - left + 2 * pad
        band_y = y - band_h if y - band_h >= 0 else y
        band_x = min(max(0.0, x), max(0.0, width - band_w))
        draw.rectangle([band_x, band_y, band_x + band_w, band_y + band_h], fill=color)
        draw.text((band_x + pad - left, band_y + pad - top), label.text, fill=TEXT_ON_BOX,
                  font=text_font)
    return canvas


def save_image(image: Image.Image, path: Path, mark: str | None = None) -> None:
    """Write ``image`` to ``path`` atomically (format from the suffix), tagged with ``mark``."""
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    options: dict[str, object] = {"quality": 92} if fmt == "JPEG" else {}
    if mark is not None and fmt == "JPEG":
        options["comment"] = mark
    elif mark is not None:
        info = PngImagePlugin.PngInfo()
        info.add_text("Software", mark)
        options["pnginfo"] = info
    with atomic_file(path) as tmp:
        image.save(tmp, format=fmt, **options)


def has_mark(path: Path, mark: str) -> bool:
    """Whether the picture at ``path`` is a regular file tagged with ``mark`` by
    :func:`save_image` (only its header is read)."""
    try:
        if not path.is_file():
            return False
        with Image.open(path) as image:
            found = image.info.get("comment", image.info.get("Software"))
    except Exception:  # anything Pillow cannot open is not an earlier annotation
        return False
    if isinstance(found, bytes):
        found = found.decode("utf-8", "replace")
    return found == mark
