"""The ORIGINAL graph's ground truth written by ``nox -s recover``: crops, embeddings, labels."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from toolchain.core.contracts import REFERENCE_INDEX, REFERENCE_INDEX_FORMAT, REFERENCE_NPZ
from toolchain.core.errors import IntegrityError, MissingArtifactError
from toolchain.core.paths import Layout


@dataclass(frozen=True)
class Reference:
    """The original graph's ground truth: crops, raw embeddings and who is who.

    Attributes:
        crops: ``(N, 160, 160, 3)`` uint8 face crops.
        embeddings: ``(N, 128)`` float32 raw embeddings of the original graph.
        splits: ``train`` or ``val`` per row.
        persons: person per row.
        paths: photo path per row.
        no_face: photos without a detected face (no row).
    """

    crops: np.ndarray
    embeddings: np.ndarray
    splits: tuple[str, ...]
    persons: tuple[str, ...]
    paths: tuple[str, ...]
    no_face: tuple[str, ...] = ()


def load_reference(layout: Layout) -> Reference:
    """Read ``reference/reference.npz`` and ``reference/index.json``.

    Raises:
        MissingArtifactError: they do not exist (``nox -s recover`` makes them).
        IntegrityError: they are unreadable or disagree with each other.
    """
    npz_path = layout.reference_dir / REFERENCE_NPZ
    index_path = layout.reference_dir / REFERENCE_INDEX
    missing = [str(p) for p in (npz_path, index_path) if not p.is_file()]
    if missing:
        raise MissingArtifactError(
            f"reference {', '.join(missing)} missing; run `nox -s recover` to create it"
        )
    try:
        with np.load(npz_path, allow_pickle=False) as npz:
            crops, embeddings = np.asarray(npz["crops"]), np.asarray(npz["embeddings"])
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError) as exc:
        raise IntegrityError(f"reference in {layout.reference_dir} is unreadable: {exc}") from exc
    if index.get("format") != REFERENCE_INDEX_FORMAT:
        raise IntegrityError(f"{index_path}: format {index.get('format')!r} is not supported")
    rows = sorted((p for p in index["photos"] if p["status"] == "ok"), key=lambda p: p["row"])
    if [p["row"] for p in rows] != list(range(len(crops))) or len(embeddings) != len(crops):
        raise IntegrityError(
            f"{index_path}: rows do not match reference.npz "
            f"({len(rows)} ok photos, {len(crops)} crops, {len(embeddings)} embeddings)"
        )
    return Reference(
        crops=crops,
        embeddings=embeddings,
        splits=tuple(p["split"] for p in rows),
        persons=tuple(p["person"] for p in rows),
        paths=tuple(p["path"] for p in rows),
        no_face=tuple(p["path"] for p in index["photos"] if p["status"] != "ok"),
    )
