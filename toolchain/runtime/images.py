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
import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from toolchain.core.contracts import IMAGE_SUFFIXES
from toolchain.core.errors import InputError

ALPHA_BACKGROUND = (255, 255, 255)
"""Transparent pixels are composited onto white before the alpha channel is dropped."""

BYTES_PER_PIXEL_CAP = 4
"""File bytes allowed per pixel of the decompression-bomb limit: an uncompressed 8-bit RGBA
image at the limit fits; no real photo is larger than its pixels stored raw."""

HEADER_ALLOWANCE = 1 << 20
"""Bytes allowed on top of the pixels (headers, EXIF, ICC profiles, thumbnails)."""


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


def check_pixel_count(width: int, height: int, where: str) -> None:
    """Refuse a picture of ``width`` x ``height`` over Pillow's decompression-bomb limit
    (``Image.MAX_IMAGE_PIXELS``, 89.48 M pixels unless changed), before it is decoded.

    The one limit of photos and video frames alike: a video's frames are pictures too, and
    12,000 x 12,000 frames take 432 MB each as RGB (eight of them wait in the decoding queue).

    Raises:
        InputError: over the limit (``where`` names the file or source).
    """
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise InputError(
            f"{where}: {width}x{height} = {width * height:,} pixels exceeds the "
            f"{limit:,}-pixel decompression-bomb limit; refused"
        )


def _check_pixels(image: Image.Image, path: Path) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InputError(f"{path}: image has no pixels ({width}x{height})")
    check_pixel_count(width, height, str(path))


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


def max_file_bytes() -> int | None:
    """The largest photo file read: the pixel limit at :data:`BYTES_PER_PIXEL_CAP` bytes per pixel
    plus :data:`HEADER_ALLOWANCE` (``None`` when Pillow's limit is switched off)."""
    limit = Image.MAX_IMAGE_PIXELS
    return None if limit is None else int(limit) * BYTES_PER_PIXEL_CAP + HEADER_ALLOWANCE


def read_file_bytes(path: Path) -> bytes:
    """The bytes of the regular file at ``path`` (links followed), at most :func:`max_file_bytes`.

    The file is opened with ``O_NONBLOCK`` and checked with ``fstat`` before a byte is read, so a
    FIFO, a device (``/dev/zero`` behind a ``.jpg`` link) or a socket is refused instead of
    blocking forever or reading without end.

    Raises:
        InputError: missing, unreadable, not a regular file, or larger than the cap.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    cap = max_file_bytes()
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"{path}: is a directory, not an image")
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{path}: not a regular file (a FIFO, device or socket); refused")
        if cap is not None and info.st_size > cap:
            raise InputError(f"{path}: {info.st_size:,} bytes is more than the {cap:,}-byte "
                             "limit for a photo (derived from the pixel limit); refused")
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read() if cap is None else file.read(cap + 1)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    finally:
        os.close(fd)
    if cap is not None and len(data) > cap:
        raise InputError(f"{path}: grew past the {cap:,}-byte limit for a photo while being "
                         "read; refused")
    return data


def read_image(path: Path | str) -> LoadedImage:
    """Read (see :func:`read_file_bytes`) and decode the photo at ``path``.

    Raises:
        InputError: the file is missing, unreadable, not a regular file or too large, or
            :func:`decode_bytes` refuses it.
    """
    path = Path(path)
    data = read_file_bytes(path)
    pixels = decode_bytes(data, path)
    return LoadedImage(path=path, pixels=pixels, sha256=hashlib.sha256(data).hexdigest())


def list_images(folder: Path) -> list[Path]:
    """Photos directly inside ``folder`` (by extension, hidden files skipped), sorted by name."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def find_images(folder: Path, exclude: Path | None = None) -> list[Path]:
    """Photos anywhere under ``folder`` (hidden files and folders skipped), sorted by path.

    ``exclude`` is a folder of outputs (``recognize --annotate DIR``): when it lies inside
    ``folder`` its files are not inputs, so a rerun does not read the previous run's pictures.
    """
    root = os.path.realpath(folder)
    skipped = os.path.realpath(exclude) if exclude is not None else None
    if skipped is not None and not skipped.startswith(root + os.sep):
        skipped = None
    found = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder).parts
        if any(part.startswith(".") for part in relative):
            continue
        if skipped is not None and os.path.realpath(path).startswith(skipped + os.sep):
            continue
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            found.append(path)
    return sorted(found)
