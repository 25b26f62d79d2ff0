"""What the bench reads: the benchmarked formats, the artifacts, the dataset and real photos."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from toolchain.convert.formats import FORMATS, FormatSpec
from toolchain.core.contracts import IMAGE_SUFFIXES, REFERENCE_INDEX, REFERENCE_NPZ
from toolchain.core.errors import MissingArtifactError
from toolchain.core.paths import Layout

LARGE_SOURCE = "obama-1080p.jpg"
"""The shared photo the bench's 24 MP photo is upscaled from (the first photo if absent)."""


def bench_formats() -> list[FormatSpec]:
    """Every format with a bench label, grouped by runtime (in table order of first appearance)."""
    benched = [spec for spec in FORMATS.values() if spec.bench_label is not None]
    runtimes = list(dict.fromkeys(spec.runner for spec in benched))
    return sorted(benched, key=lambda spec: runtimes.index(spec.runner))


def bench_label(fmt: str) -> str:
    """The bench row label of format ``fmt`` (``onnx`` -> ``ort-fp32``).

    Raises:
        KeyError: ``fmt`` is not benchmarked.
    """
    label = FORMATS[fmt].bench_label
    if label is None:
        raise KeyError(f"format {fmt} has no bench label")
    return label


def model_files() -> list[str]:
    """Every model the bench loads, relative to ``artifacts/models`` (formats, then MTCNN)."""
    return [name for spec in (*bench_formats(), FORMATS["mtcnn"]) for name in spec.files]


def required_artifacts(layout: Layout) -> dict[str, list[Path]]:
    """What the bench reads, by the nox session that makes it."""
    return {
        "nox -s fetch": [layout.dataset_dir],
        "nox -s recover": [layout.reference_dir / REFERENCE_NPZ,
                           layout.reference_dir / REFERENCE_INDEX],
        "nox -s export": [layout.models_dir / name for name in model_files()],
    }


def check_artifacts(layout: Layout) -> None:
    """Raise :class:`MissingArtifactError` naming the nox session of the first missing group."""
    for session, paths in required_artifacts(layout).items():
        missing = [p for p in paths if not p.exists()]
        if missing:
            names = ", ".join(str(p) for p in missing)
            raise MissingArtifactError(f"the bench needs {names}; run `{session}` to create it")


def dataset_photos(layout: Layout) -> list[tuple[str, str, Path]]:
    """``(split, person, path)`` of every dataset photo, sorted.

    Raises:
        MissingArtifactError: there is none.
    """
    out = []
    for split in ("train", "val"):
        for path in sorted((layout.dataset_dir / split).glob("*/*")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                out.append((split, path.parent.name, path))
    if not out:
        raise MissingArtifactError(f"no photos under {layout.dataset_dir}; run `nox -s fetch`")
    return out


def real_photos(folder: Path) -> tuple[list[Path], list[tuple[str, Path]]] | None:
    """``(query photos, (person, photo) to enroll)`` of a shared examples folder, or ``None``."""
    from toolchain.runtime.images import find_images, list_images

    if not (folder / "photos").is_dir() or not (folder / "people").is_dir():
        return None
    people = [(p.parent.name, p) for p in find_images(folder / "people")]
    photos = list_images(folder / "photos")
    return (photos, people) if photos and people else None


def spread(items: Sequence[Path], count: int | None) -> list[Path]:
    """``count`` items spread evenly over ``items`` (all of them for ``None``)."""
    if count is None or count >= len(items):
        return list(items)
    idx = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in idx]


def megapixels(paths: Sequence[Path]) -> dict[str, float]:
    """Smallest, median and largest size of the photos, in megapixels."""
    from PIL import Image

    sizes = []
    for path in paths:
        with Image.open(path) as image:
            sizes.append(image.size[0] * image.size[1] / 1e6)
    return {"min": round(min(sizes), 2), "median": round(float(np.median(sizes)), 2),
            "max": round(max(sizes), 2)}
