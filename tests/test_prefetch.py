"""Photos decoded ahead (:mod:`toolchain.runtime.prefetch`): the same pixels and errors as reading
them one by one, in order."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toolchain.runtime import prefetch
from toolchain.runtime.images import read_image
from toolchain.runtime.prefetch import read_ahead


def photos(folder: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_same_pixels_and_errors_in_order(tmp_path: Path) -> None:
    paths = photos(tmp_path, 5)
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    paths.insert(2, tmp_path / "bad.jpg")
    paths.append(tmp_path / "missing.jpg")
    got = list(read_ahead(paths))
    assert [p for p, _, _ in got] == paths
    for path, image, error in got:
        if path.name in ("bad.jpg", "missing.jpg"):
            assert image is None and error is not None and str(path) in error
        else:
            assert error is None and image is not None
            want = read_image(path)
            assert image.sha256 == want.sha256
            np.testing.assert_array_equal(image.pixels, want.pixels)


def test_decodes_ahead_in_another_thread_and_stops_early(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    paths = photos(tmp_path, 6)
    decoded: list[tuple[str, str]] = []
    real = prefetch.read_image

    def recording(path: Path) -> object:
        decoded.append((Path(path).name, threading.current_thread().name))
        return real(path)

    monkeypatch.setattr(prefetch, "read_image", recording)
    it = read_ahead(paths)
    first = next(it)
    assert first[0] == paths[0]
    it.close()
    assert all(name.startswith("decode") for _, name in decoded)
    assert len(decoded) <= 1 + prefetch.AHEAD + 1, "decoded far ahead of the caller"
