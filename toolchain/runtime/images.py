"""Decode any photo a user hands the runtime into one RGB uint8 array, or fail with one clear line.

Every image goes through :func:`read_image`: Pillow decodes it, the size is checked against
Pillow's decompression-bomb limit before any pixel is decoded, EXIF orientation is applied, and
the pixels are converted to 8-bit RGB whatever the mode (grayscale, palette, alpha, CMYK, 16-bit,
first frame of an animation). Channels are ALWAYS RGB, at enrollment and at recognition alike:
the seed enrolled from BGR ``cv2.imread`` arrays and recognized RGB ones, so its gallery vectors
and its queries never came from the same pixels.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from toolchain.errors import InputError

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
"""Extensions taken as photos when a folder is scanned (a file named explicitly is always tried)."""

ALPHA_BACKGROUND = (255, 255, 255)
"""Transparent pixels are composited onto white before the alpha channel is dropped."""


@dataclass(frozen=True)
class LoadedImage:
    """One decoded photo."""

    path: Path
    pixels: np.ndarray = field(repr=False)
    """``(H, W, 3)`` uint8 RGB, EXIF orientation applied."""
    sha256: str
    """sha256 of the file's bytes (the gallery's key for "this photo was already enrolled")."""

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])


def _check_pixels(image: Image.Image, path: Path) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InputError(f"{path}: image has no pixels ({width}x{height})")
    if limit is not None and width * height > limit:
        raise InputError(
            f"{path}: {width}x{height} = {width * height:,} pixels exceeds the "
            f"{limit:,}-pixel decompression-bomb limit; refused"
        )


def _high_bit_depth_to_uint8(image: Image.Image) -> Image.Image:
    """Scale a 16/32-bit integer or float single-channel image to 8-bit ``L``."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode != "F":
        values = values / 257.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))


def to_rgb(image: Image.Image) -> np.ndarray:
    """Convert a decoded Pillow image of any mode to a contiguous ``(H, W, 3)`` uint8 RGB array.

    Raises:
        ValueError: Pillow has no conversion from the image's mode to RGB.
    """
    if image.mode.startswith("I") or image.mode == "F":
        image = _high_bit_depth_to_uint8(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("LA", "PA", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGBA", image.size, (*ALPHA_BACKGROUND, 255))
        image = Image.alpha_composite(background, image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def decode_bytes(data: bytes, path: Path) -> np.ndarray:
    """Decode image bytes (read from ``path``, which names the file in errors) to RGB uint8.

    Raises:
        InputError: empty, not an image, truncated or corrupt, over the pixel limit, or of a mode
            that has no RGB conversion.
    """
    if not data:
        raise InputError(f"{path}: empty file, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                _check_pixels(opened, path)
                opened.seek(0)
                opened.load()
                upright = ImageOps.exif_transpose(opened)
                try:
                    return to_rgb(upright)
                except ValueError as exc:
                    raise InputError(
                        f"{path}: cannot convert {upright.mode} pixels to RGB ({exc})"
                    ) from exc
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"{path}: refused as a decompression bomb ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise InputError(f"{path}: not an image Pillow can read") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: corrupt or truncated image ({exc})") from exc
    except Exception as exc:
        raise InputError(f"{path}: cannot decode ({type(exc).__name__}: {exc})") from exc


def read_image(path: Path | str) -> LoadedImage:
    """Read and decode the photo at ``path``.

    Raises:
        InputError: the file is missing or unreadable, or :func:`decode_bytes` refuses it.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError as exc:
        raise InputError(f"{path}: is a directory, not an image") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    pixels = decode_bytes(data, path)
    return LoadedImage(path=path, pixels=pixels, sha256=hashlib.sha256(data).hexdigest())


def list_images(folder: Path) -> list[Path]:
    """Photos directly inside ``folder`` (by extension, hidden files skipped), sorted by name."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def find_images(folder: Path) -> list[Path]:
    """Photos anywhere under ``folder`` (hidden files and folders skipped), sorted by path."""
    found = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder).parts
        if any(part.startswith(".") for part in relative):
            continue
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            found.append(path)
    return sorted(found)
