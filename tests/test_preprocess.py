"""The shared crop rule and per-image standardization."""

from __future__ import annotations

import numpy as np
import pytest

from toolchain.core.preprocess import clip_box, crop_face, l2_normalize, largest_face, prewhiten


def test_prewhiten_standardizes_each_image_in_float32() -> None:
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, size=(3, 160, 160, 3), dtype=np.uint8)
    out = prewhiten(batch)
    assert out.dtype == np.float32
    assert out.shape == batch.shape
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2, 3)), 1.0, atol=1e-4)
    np.testing.assert_array_equal(prewhiten(batch[1]), out[1])


def test_prewhiten_flat_image_uses_the_std_floor() -> None:
    flat = np.full((160, 160, 3), 7, dtype=np.uint8)
    out = prewhiten(flat)
    assert out.dtype == np.float32
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out, 0.0)


def test_prewhiten_matches_the_formula() -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(160, 160, 3)).astype(np.float64)
    expected = (img - img.mean()) / max(img.std(), 1.0 / np.sqrt(img.size))
    np.testing.assert_allclose(prewhiten(img), expected, rtol=1e-5, atol=1e-5)


def test_prewhiten_rejects_bad_rank() -> None:
    with pytest.raises(ValueError):
        prewhiten(np.zeros((160, 160)))


def test_clip_box_clips_instead_of_abs() -> None:
    assert clip_box((-5, -3, 20, 10), width=100, height=50) == (0, 0, 15, 7)
    assert clip_box((90, 40, 20, 20), width=100, height=50) == (90, 40, 100, 50)
    with pytest.raises(ValueError):
        clip_box((200, 10, 5, 5), width=100, height=50)


def test_crop_face_shape_dtype_and_content() -> None:
    img = np.zeros((100, 200, 3), dtype=np.uint8)
    img[20:60, 50:90] = (255, 0, 0)
    face = crop_face(img, (50, 20, 40, 40))
    assert face.shape == (160, 160, 3)
    assert face.dtype == np.uint8
    assert np.all(face[..., 0] == 255)
    assert np.all(face[..., 1:] == 0)
    with pytest.raises(ValueError):
        crop_face(img[..., 0], (0, 0, 10, 10))


def test_largest_face_picks_biggest_area() -> None:
    assert largest_face([(0, 0, 10, 10), (5, 5, 30, 4), (1, 1, 12, 11)]) == 2
    with pytest.raises(ValueError):
        largest_face([])


def test_l2_normalize_unit_norm() -> None:
    v = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    out = l2_normalize(v)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], [0.6, 0.8], rtol=1e-6)
    assert np.all(np.isfinite(out[1]))
