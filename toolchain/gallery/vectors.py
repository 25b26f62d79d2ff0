"""Embeddings as a gallery takes and gives them: entries, checked unit vectors, ranking people.

Every vector is checked the way an embedder's output would be (:func:`unit_embedding`) on the way
in, and read back as a unit vector; distances are Euclidean between unit vectors (0 = identical,
2 = opposite). Ranking (:class:`PeopleVectors`) screens every row in float32 and computes exactly
only the people the screen cannot rule out (:func:`toolchain.gallery.ranking.nearest_groups`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from toolchain.core.boxes import rounded
from toolchain.core.errors import InputError
from toolchain.core.preprocess import l2_normalize
from toolchain.gallery.names import person_name
from toolchain.gallery.ranking import RowScreen, nearest_groups
from toolchain.gallery.schema import LEGACY_CROP, MatchMode

BOX_DECIMALS = 2
"""Face boxes are stored rounded to this many decimals (the same face of a photo, same box)."""
MIN_RAW_NORM = 1e-3
"""Smallest norm of a vector given to the gallery before normalization. FaceNet's raw embeddings
have norms of 8 to 13 and unit ones 1; a vector shorter than this is no face embedding. (A
near-zero vector normalized with a clamped norm stays near zero, at distance 1 from EVERY face:
under the usual thresholds it would be named in every photo.)"""
UNIT_NORM_TOLERANCE = 1e-3
"""How far from 1 the norm of a stored (float32, unit) vector may be: rounding is ~1e-7."""
UNIT_FIXED_POINT = 2.0 ** -22
"""A float32 vector whose norm is this close to 1 is taken as the unit vector it is, bit for bit,
so normalizing a stored vector again (a migrated copy) changes nothing. Normalizing in float64
and rounding to float32 leaves the norm within 2**-24 of 1 (each component rounded by at most a
relative 2**-24); the recognizer's float32 normalization within 2**-23 (up to 1.92 * 2**-24 over
5,000 random 128-d vectors, ``tests/test_gallery_migrate_real.py``). Dividing such a vector by
its norm again moved some components by one ulp (35 of those 5,000), so a migration refused its
own copy. The distances this leaves aside (below 1e-6) are far below any that matters."""
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Entry:
    """One face embedding to store (or read back) with where it came from."""

    name: str
    vector: np.ndarray = field(repr=False)
    source: str
    image_sha256: str
    box: tuple[float, float, float, float]
    score: float | None = None
    created: str | None = None
    """When it was stored (ISO 8601 UTC, read back from a gallery). Given to
    :meth:`~toolchain.gallery.base.Gallery.add`, it is kept (a migrated copy keeps its time);
    ``None`` stores the time of the write."""



@dataclass(frozen=True)
class Candidate:
    """A gallery person and its distance to a query face."""

    name: str
    distance: float

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "distance"}``, the distance rounded as every JSON document rounds it."""
        return {"name": self.name, "distance": rounded(self.distance)}


def canonical_box(box: Sequence[float]) -> tuple[float, float, float, float]:
    """``box`` as stored: four floats rounded to :data:`BOX_DECIMALS`."""
    x, y, w, h = (round(float(v), BOX_DECIMALS) for v in box)
    return x, y, w, h


def vector_blob(vector: np.ndarray) -> bytes:
    """``vector`` as the stored BLOB: float32, little-endian."""
    return np.asarray(vector, dtype="<f4").tobytes()



def unit_embedding(values: Any, dim: int | None, where: str) -> np.ndarray:
    """``values`` as the float32 unit vector an embedder would output, or :class:`InputError`.

    Refused: a size other than ``dim`` (any size if ``None``), NaN or infinity, values beyond the
    float32 range a gallery stores, and a norm below :data:`MIN_RAW_NORM`. Normalization runs in
    float64 on values that passed, so the result is unit within float32 rounding; a float32 vector
    already unit within :data:`UNIT_FIXED_POINT` comes back unchanged, so normalizing twice is
    normalizing once (a copied gallery holds the same bits).
    """
    try:
        array = np.asarray(values, dtype=np.float64).reshape(-1)
    except OverflowError as exc:
        raise InputError(f"{where}: a value is beyond the float32 range of embeddings ({exc})"
                         ) from exc
    if dim is not None and array.shape != (dim,):
        raise InputError(f"{where}: {array.size} values; the gallery holds {dim}-d vectors")
    if not array.size:
        raise InputError(f"{where}: no values")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{where}: non-finite values (NaN or infinity)")
    peak = float(np.max(np.abs(array)))
    if peak > FLOAT32_MAX:
        raise InputError(f"{where}: values up to {peak:.3g} are beyond the float32 range of "
                         f"embeddings (|value| <= {FLOAT32_MAX:.3g})")
    norm = float(np.linalg.norm(array))
    if norm < MIN_RAW_NORM:
        raise InputError(f"{where}: norm {norm:.3g} is below {MIN_RAW_NORM:g}, not a face "
                         "embedding (a near-zero vector is equally close to every face)")
    return _normalized(array[None, :], np.array([norm]))[0]


def _normalized(matrix: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """The float64 rows of ``matrix`` divided by their ``norms``, as float32; a row that already
    is a float32 unit vector within :data:`UNIT_FIXED_POINT` comes back unchanged (normalizing
    is a fixed point)."""
    single = matrix.astype(np.float32)
    unit = (matrix / norms[:, None]).astype(np.float32)
    fixed = (np.abs(norms - 1.0) <= UNIT_FIXED_POINT) & np.all(single == matrix, axis=1)
    unit[fixed] = single[fixed]
    return unit


def entry_vectors(entries: Sequence[Entry], dim: int) -> np.ndarray:
    """The ``(len(entries), dim)`` unit vectors of ``entries``, each checked like an embedder's
    output would be (:func:`unit_embedding`), or :class:`InputError` for the first bad one (a
    :class:`~toolchain.gallery.names.NameRefused` for a name the rule refuses).

    All rows are checked and normalized at once (a bulk load of a million rows would otherwise
    spend most of its time here), bit for bit as :func:`unit_embedding` does one; only when a row
    fails are they taken one by one, so the error names the first bad entry.
    """
    for name in {entry.name for entry in entries}:
        person_name(name)
    try:
        matrix = np.array([e.vector for e in entries], dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        matrix = np.empty((0, 0))
    if matrix.shape == (len(entries), dim) and len(entries) and np.all(np.isfinite(matrix)) \
            and float(np.max(np.abs(matrix))) <= FLOAT32_MAX:
        norms = np.sqrt([row.dot(row) for row in matrix])
        if np.all(norms >= MIN_RAW_NORM):
            return _normalized(matrix, np.asarray(norms))
    return np.stack([
        unit_embedding(e.vector, dim, f"{e.source}: embedding for {e.name!r}")
        for e in entries
    ])


class PeopleVectors:
    """A gallery's vectors as matching reads them, with what ranking computes once for them.

    The float32 screen of the rows (:class:`~toolchain.gallery.ranking.RowScreen`: their squared
    norms, 4 bytes a row) is made at the first nearest-mode match, the people's mean directions
    (one float32 row per person, so up to the matrix's size again) at the first centroid-mode
    match; both live as long as this object, which a gallery replaces when another writer
    commits. No float64 copy of the matrix is kept.

    Args:
        names: The people, in the order of their rows.
        matrix: ``(E, D)`` float32 unit vectors grouped by person.
        starts: The first row of each person in ``matrix``.
    """

    def __init__(self, names: Sequence[str], matrix: np.ndarray, starts: np.ndarray):
        self.names = list(names)
        self.matrix = matrix
        self.starts = np.asarray(starts, dtype=np.intp)

    @cached_property
    def _rows(self) -> RowScreen:
        return RowScreen.of(self.matrix)

    @cached_property
    def _centroids(self) -> RowScreen:
        return RowScreen.of(l2_normalize(np.add.reduceat(self.matrix, self.starts, axis=0)))

    def rank(self, queries: np.ndarray, k: int, mode: MatchMode) -> list[list[Candidate]]:
        """The ``k`` closest people to each query, closest first (ties: the earlier person).

        A person's distance is to their nearest embedding, or to their mean direction; either
        is the exact float64 distance (:func:`~toolchain.gallery.ranking.fixed_order_distances`)
        as float32, the same as if every row were computed.

        Args:
            queries: ``(M, D)`` unit vectors.
            k: How many people to return per query.
            mode: Distance to a person's nearest embedding, or to their mean direction.
        """
        if mode is MatchMode.CENTROID:
            ranked = nearest_groups(queries, self._centroids, np.arange(len(self.names)), k)
        else:
            ranked = nearest_groups(queries, self._rows, self.starts, k)
        return [[Candidate(self.names[j], float(d)) for j, d in zip(people, distances,
                                                                    strict=True)]
                for people, distances in ranked]


def rank_people(names: Sequence[str], matrix: np.ndarray, starts: np.ndarray, queries: np.ndarray,
                k: int, mode: MatchMode) -> list[list[Candidate]]:
    """The ``k`` closest people to each query, closest first (:meth:`PeopleVectors.rank` on
    vectors used once).

    Args:
        names: The people, in the order of their rows.
        matrix: ``(E, D)`` unit vectors grouped by person.
        starts: The first row of each person in ``matrix``.
        queries: ``(M, D)`` unit vectors.
        k: How many people to return per query.
        mode: Distance to a person's nearest embedding, or to their mean direction.
    """
    return PeopleVectors(names, matrix, starts).rank(queries, k, mode)


ImportKind = Literal["gallery export", "seed DataBase.json"]
"""The two files ``facenet gallery import`` reads (printed after the import)."""


@dataclass(frozen=True)
class ImportData:
    """A parsed, validated import file, not yet written anywhere."""

    path: Path
    entries: list[Entry]
    """Vectors already checked and L2-normalized (see :func:`unit_embedding`)."""
    fingerprint: str | None
    """The model the vectors come from (``None`` for the seed's ``DataBase.json``)."""
    dim: int
    threshold: float | None
    kind: ImportKind
    crop: str = LEGACY_CROP
    """The crop spec text of the faces (exports record it; older ones and the seed's: box)."""
