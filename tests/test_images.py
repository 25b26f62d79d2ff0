"""Photo decoding: every mode becomes RGB uint8, every broken file one clear InputError."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toolchain.core.errors import InputError
from toolchain.runtime.images import (
    BYTES_PER_PIXEL_CAP,
    HEADER_ALLOWANCE,
    decode_bytes,
    find_images,
    list_images,
    max_file_bytes,
    read_image,
)


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _gradient(width: int = 64, height: int = 48) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    rgb = np.concatenate([np.broadcast_to(x, (height, width, 1)),
                          np.broadcast_to(y, (height, width, 1)),
                          np.full((height, width, 1), 90, np.float32)], axis=2)
    return Image.fromarray(rgb.astype(np.uint8))


def _decode(data: bytes, name: str = "photo") -> np.ndarray:
    out = decode_bytes(data, Path(name))
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert out.flags["C_CONTIGUOUS"]
    return out


def test_rgb_channel_order_is_kept() -> None:
    image = Image.new("RGB", (10, 10), (250, 10, 20))
    for fmt in ("PNG", "BMP", "TIFF"):
        np.testing.assert_array_equal(_decode(_encode(image, fmt))[0, 0], [250, 10, 20])
    red = _decode(_encode(image, "JPEG", quality=95))[5, 5]
    assert red[0] > 200 and red[2] < 60


@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK", "YCbCr", "LA", "RGBA"])
def test_modes_convert_to_rgb(mode: str) -> None:
    source = _gradient().convert(mode)
    fmt = "JPEG" if mode in ("CMYK", "YCbCr") else "PNG"
    out = _decode(_encode(source, fmt))
    assert out.shape == (48, 64, 3)
    if mode in ("L", "1", "LA"):
        np.testing.assert_array_equal(out[..., 0], out[..., 1])
        np.testing.assert_array_equal(out[..., 1], out[..., 2])


def test_grayscale_keeps_its_levels() -> None:
    levels = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))
    out = _decode(_encode(Image.fromarray(levels), "PNG"))
    np.testing.assert_array_equal(out[..., 0], levels)


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    data = _encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = _decode(data)
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 128, 255])


def test_float_image_is_clipped_to_8_bits() -> None:
    values = np.array([[-5.0, 12.4, 300.0]], dtype=np.float32)
    out = _decode(_encode(Image.fromarray(values), "TIFF"))
    np.testing.assert_array_equal(out[0, :, 0], [0, 12, 255])


def test_transparency_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (4, 4), (200, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    out = _decode(_encode(rgba, "PNG"))
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[1, 1], [200, 0, 0])


def test_palette_with_transparency() -> None:
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    image.putpixel((0, 0), 0)
    out = _decode(_encode(image, "PNG", transparency=0))
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[2, 2], [10, 200, 30])


def test_animated_gif_gives_the_first_frame() -> None:
    first = Image.new("RGB", (16, 16), (255, 0, 0))
    second = Image.new("RGB", (16, 16), (0, 0, 255))
    data = _encode(first, "GIF", save_all=True, append_images=[second], duration=100)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    out = _decode(data)
    assert out[8, 8, 0] > 200 and out[8, 8, 2] < 50


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (40, 20), (0, 255, 0))
    image.paste((255, 0, 0), (0, 0, 10, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = _decode(_encode(image, "JPEG", exif=exif, quality=95))
    assert out.shape == (40, 20, 3)
    assert out[2, 10, 0] > 200 and out[2, 10, 1] < 80


def test_read_image_hashes_the_file_bytes(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    _gradient().save(path)
    loaded = read_image(path)
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.size == (64, 48)
    assert loaded.path == path


def test_mode_without_rgb_conversion_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(image: Image.Image) -> np.ndarray:
        raise ValueError(f"conversion from {image.mode} to RGB not supported")

    monkeypatch.setattr("toolchain.runtime.images.to_rgb", refuse)
    with pytest.raises(InputError, match=r"odd\.png: cannot convert RGB pixels to RGB"):
        decode_bytes(_encode(_gradient(), "PNG"), Path("odd.png"))


@pytest.mark.parametrize(
    ("name", "data", "phrase"),
    [
        ("empty.jpg", b"", "empty file"),
        ("notes.jpg", b"these are notes, not a photo\n" * 20, "not an image"),
        ("html.png", b"<html><body>404</body></html>", "not an image"),
    ],
)
def test_non_images_are_refused_naming_the_file(tmp_path: Path, name: str, data: bytes,
                                                phrase: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputError) as info:
        read_image(path)
    assert str(path) in str(info.value) and phrase in str(info.value)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_are_refused(tmp_path: Path, fmt: str) -> None:
    data = _encode(_gradient(200, 150), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputError) as info:
        read_image(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("limit_factor", [0.9, 0.4])
def test_decompression_bombs_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         limit_factor: float) -> None:
    """Over the limit (Pillow warns) and over twice the limit (Pillow raises): both refused."""
    path = tmp_path / "bomb.png"
    Image.new("L", (100, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", int(100 * 100 * limit_factor))
    with pytest.raises(InputError) as info:
        read_image(path)
    assert "decompression" in str(info.value) and str(path) in str(info.value)


def test_a_real_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    """A 2-byte-per-row PNG header declaring 30000x30000 pixels is refused from its header."""
    path = tmp_path / "huge.png"
    Image.new("1", (30000, 30000)).save(path, optimize=True)
    assert path.stat().st_size < 2_000_000
    with pytest.raises(InputError, match="decompression"):
        read_image(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        read_image(tmp_path / "nope.jpg")
    with pytest.raises(InputError, match="directory"):
        read_image(tmp_path)


def test_folder_listing_skips_hidden_and_non_photos(tmp_path: Path) -> None:
    for name in ("b.JPG", "a.png", ".hidden.jpg", "notes.txt", "sub/c.jpeg", ".git/d.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.JPG"]
    assert [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)] == [
        "a.png", "b.JPG", "sub/c.jpeg"]


def test_special_files_are_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO named like a photo would block a plain read forever; /dev/zero would never end."""
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.jpg"
    zero.symlink_to("/dev/zero")
    for path in (fifo, zero):
        with pytest.raises(InputError, match="not a regular file"):
            read_image(path)


def test_files_larger_than_the_pixel_limit_allows_are_not_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert max_file_bytes() == 1000 * BYTES_PER_PIXEL_CAP + HEADER_ALLOWANCE
    big = tmp_path / "big.png"
    with big.open("wb") as file:
        file.truncate(max_file_bytes() + 1)
    with pytest.raises(InputError, match="limit for a photo"):
        read_image(big)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert max_file_bytes() is None
