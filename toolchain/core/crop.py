"""How a detected face becomes the 160x160 crop FaceNet embeds: the box, a margin, an alignment.

Three ingredients, combined by a :class:`CropSpec`:

- **box**: the MTCNN box clipped to the image (:func:`toolchain.core.preprocess.crop_face`): the
  seed's rule and the reference of the parity checks against the original graph.
- **margin**: pixels (``32``) or a share of the box (``20%``) added around the box before the
  resize, half on each side, clipped to the image. Sandberg evaluated the original weights on
  MTCNN crops of LFW with ``--margin 32 --image_size 160`` (``src/align/align_dataset_mtcnn.py``;
  "otherwise the accuracy is bad", davidsandberg/facenet#594). A pixel margin means less context
  on a large face than on a small one; a share of the box does not depend on the photo's size.
- **align**: a similarity transform (rotation, uniform scale, translation; least squares over the
  five MTCNN landmarks, Umeyama 1991) that maps the landmarks onto :data:`ALIGN_TEMPLATE`, then
  a bilinear warp to 160x160. A margin shrinks the template about the crop's centre, so that the
  aligned face keeps the same share of context as the margin gives the box crop.

A crop spec is written as text (``box``, ``margin=32px``, ``margin=20%``, ``align``,
``align,margin=20%``): that text is what a gallery stores and what reports name. Only the standard
library is imported until a crop is made (the gallery check and the command line parse crop specs
without numpy).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from toolchain.core.contracts import INPUT_SIZE

if TYPE_CHECKING:
    import numpy as np

LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
"""The five MTCNN landmarks, in the order of :data:`ALIGN_TEMPLATE`."""

ALIGN_TEMPLATE = (
    (0.2752, 0.3842),
    (0.7248, 0.3842),
    (0.5000, 0.5898),
    (0.2972, 0.7451),
    (0.7028, 0.7451),
)
"""Where the five landmarks go, as shares of the crop's width and height: the mean landmark
positions inside the bare MTCNN box over the 117 faces of the 5-celebrity photos (train + val,
the largest face of each photo, as the runtime's ONNX MTCNN finds them; the two sides averaged
into a symmetric template). Aligning to it keeps the framing of the box crop the network was
evaluated on, upright and at a fixed scale."""

_TEXT = re.compile(
    r"^(?:(?P<align>align)(?:,|$))?(?:margin=(?P<value>\d+(?:\.\d+)?)(?P<unit>px|%))?$")


@dataclass(frozen=True)
class CropSpec:
    """A crop recipe: a margin (pixels or a share of the box) and whether to align.

    Attributes:
        margin: the margin's size: pixels, or percent of the box side when ``relative``.
        relative: ``margin`` is a percentage of the box's width (x) and height (y).
        align: warp the landmarks onto :data:`ALIGN_TEMPLATE` instead of cropping the box.
    """

    margin: float = 0.0
    relative: bool = False
    align: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.margin <= (200.0 if self.relative else 10_000.0):
            unit = "% of the box" if self.relative else " px"
            raise ValueError(f"margin {self.margin:g}{unit} is out of range")

    @classmethod
    def parse(cls, text: str) -> CropSpec:
        """The spec written as :attr:`text` (``box``, ``margin=32px``, ``align,margin=20%``).

        Raises:
            ValueError: not a crop spec.
        """
        cleaned = text.strip().lower()
        if cleaned == "box":
            return cls()
        found = _TEXT.match(cleaned)
        if not cleaned or found is None:
            raise ValueError(f"not a crop spec: {text!r} (box, margin=32px, margin=20%, align, "
                             "align,margin=20%)")
        value = found.group("value")
        return cls(margin=float(value) if value else 0.0, relative=found.group("unit") == "%",
                   align=found.group("align") is not None)

    @classmethod
    def from_options(cls, margin: str | None, align: bool) -> CropSpec:
        """The spec of the command-line options ``--margin 32`` / ``--margin 20%`` and ``--align``.

        Raises:
            ValueError: the margin is neither a number of pixels nor a percentage.
        """
        if margin is None or not margin.strip():
            return cls(align=align)
        raw = margin.strip()
        relative = raw.endswith("%")
        number = raw[:-1] if relative else raw.removesuffix("px")
        try:
            value = float(number)
        except ValueError:
            raise ValueError(f"margin {margin!r} is neither pixels (32) nor a share of the box "
                             "(20%)") from None
        return cls(margin=value, relative=relative, align=align)

    @property
    def text(self) -> str:
        """The canonical text form (what galleries store and reports name)."""
        parts = ["align"] if self.align else []
        if self.margin:
            parts.append(f"margin={self.margin:g}{'%' if self.relative else 'px'}")
        return ",".join(parts) or "box"

    def __str__(self) -> str:
        return self.text

    def margins(self, box: Sequence[float]) -> tuple[float, float]:
        """The total margin in pixels ``(x, y)`` this spec adds to ``box`` ``(x, y, w, h)``."""
        if self.relative:
            return self.margin / 100.0 * float(box[2]), self.margin / 100.0 * float(box[3])
        return self.margin, self.margin

    def crop(self, image: np.ndarray, box: Sequence[float],
             keypoints: Mapping[str, Sequence[float]] | None = None,
             size: int = INPUT_SIZE) -> np.ndarray:
        """The ``(size, size, 3)`` uint8 crop of one face of an RGB uint8 image.

        Raises:
            ValueError: the box does not overlap the image, or alignment lacks landmarks.
        """
        from toolchain.core.preprocess import crop_face

        if self.align:
            return align_face(image, box, keypoints, self.margins(box), size)
        mx, my = self.margins(box)
        x, y, w, h = (float(v) for v in box)
        return crop_face(image, (x - mx / 2, y - my / 2, w + mx, h + my), size)


BOX = CropSpec()
"""The bare MTCNN box: the seed's crop and the reference of the parity checks."""

DEFAULT_CROP = CropSpec(align=True)
"""The crop the export calibrates the model's ``default_threshold`` with and records as its
``default_crop``: the best of ``facenet eval crops`` (highest TAR at FAR 1e-3 over every pair of
the labelled photos; ``artifacts/reports/crops.md``)."""


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 similarity matrix mapping ``source`` points onto ``target`` in least squares.

    Umeyama's closed form (rotation, one scale, translation; no reflection).

    Raises:
        ValueError: fewer than two distinct points.
    """
    import numpy as np

    src = np.asarray(source, np.float64)
    dst = np.asarray(target, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var = float((s ** 2).sum()) / len(src)
    if len(src) < 2 or var <= 1e-12:
        raise ValueError("landmarks do not span a face")
    u, sigma, vt = np.linalg.svd(d.T @ s / len(src))
    flip = np.diag([1.0, float(np.sign(np.linalg.det(u @ vt)) or 1.0)])
    rotation = u @ flip @ vt
    scale = float(np.trace(np.diag(sigma) @ flip)) / var
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_d - scale * rotation @ mu_s
    return matrix


def align_face(image: np.ndarray, box: Sequence[float],
               keypoints: Mapping[str, Sequence[float]] | None,
               margins: tuple[float, float] = (0.0, 0.0), size: int = INPUT_SIZE) -> np.ndarray:
    """Warp the face so its landmarks land on :data:`ALIGN_TEMPLATE` (shrunk by the margin).

    Args:
        image: RGB uint8 ``(H, W, 3)``.
        box: the face's ``(x, y, w, h)`` (scales a pixel margin into a share of the box).
        keypoints: the five landmarks by name (:data:`LANDMARKS`), in image pixels.
        margins: total margin in pixels ``(x, y)`` around the box.
        size: output side in pixels.

    Raises:
        ValueError: a landmark is missing or they do not span a face.
    """
    import numpy as np
    from PIL import Image

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image, got shape {image.shape} {image.dtype}")
    if keypoints is None or any(name not in keypoints for name in LANDMARKS):
        raise ValueError("alignment needs the five MTCNN landmarks")
    points = np.array([keypoints[name] for name in LANDMARKS], np.float64)
    w, h = max(float(box[2]), 1.0), max(float(box[3]), 1.0)
    shrink = np.array([w / (w + margins[0]), h / (h + margins[1])])
    template = ((np.array(ALIGN_TEMPLATE) - 0.5) * shrink + 0.5) * size
    # Pillow's affine transform works in continuous coordinates (pixel i spans [i, i + 1)).
    forward = similarity_transform(points + 0.5, template)
    inverse = np.linalg.inv(np.vstack([forward, [0.0, 0.0, 1.0]]))[:2]
    coefficients = tuple(float(v) for v in inverse.ravel())
    warped = Image.fromarray(image).transform(
        (size, size), Image.Transform.AFFINE, coefficients, resample=Image.Resampling.BILINEAR)
    return np.asarray(warped, dtype=np.uint8)
