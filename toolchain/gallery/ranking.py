"""Ranking enrolled people by distance: the gallery's search, exact to the last bit.

Every comparison of embeddings in the package is a Euclidean distance between L2-normalized
vectors (0 for the same direction, 2 for opposite ones), computed by :func:`pairwise_distances`.

A gallery ranks its people with :func:`nearest_groups`: a float32 screen over every stored row
(one BLAS product on the matrix as stored), then the exact float64 distances of only the people
the screen cannot rule out, computed by :func:`fixed_order_distances` (whose values do not depend
on which other rows are computed with them, unlike a BLAS product's), so the result equals the
exact ranking over every row bit for bit. Only numpy is imported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances ``(len(a), len(b))`` between rows of two unit-vector matrices.

    Computed in float64 as ``|a|^2 + |b|^2 - 2 a.b`` (no ``(M, N, D)`` difference array, so a
    large gallery costs one matrix product) and returned as float32, the embeddings' precision.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(squared, 0.0)).astype(np.float32)


FLOAT32_ROUNDOFF = 2.0 ** -24
"""Unit roundoff of float32 (round to nearest)."""
FLOAT64_ROUNDOFF = 2.0 ** -53
"""Unit roundoff of float64."""
SCREEN_ELEMENTS = 1 << 24
"""Largest ``queries x rows`` float32 block :func:`nearest_groups` screens at once (64 MB)."""
SELECT_BLOCK = 1024
"""Values per block when :func:`nearest_groups` looks for the ``k``-th smallest screened one."""
SCREEN_SQUARED_NORM_MAX = 1e30
"""Largest squared norm of a query or row the float32 screen takes: far from float32's overflow
(3.4e38), which its bound assumes; beyond it a query is computed exactly over every row."""
EXACT_ROWS = 1 << 12
"""Rows :func:`fixed_order_distances` converts to float64 at once (4 MB of 128-d vectors)."""


def fixed_order_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`pairwise_distances`' formula with every value independent of the other rows.

    The same float64 ``|a|^2 + |b|^2 - 2 a.b``, returned as float32, but each dot product is
    numpy's pairwise sum of its products (exact in float64 for float32 inputs) along the row,
    instead of a BLAS matrix product. BLAS sums a dot product in an order that depends on the
    matrices' shapes and on the row's place in them (kernel tiles, threads), so the same query
    and row can differ in the last float64 bit from one call to another, which reaches the
    float32 result for near-zero distances. Here a subset of the rows gets exactly the values
    the whole matrix would, which is what lets :func:`nearest_groups` compute only a few rows.
    """
    a = np.asarray(a, dtype=np.float64)
    dots = np.empty((len(a), len(b)))
    b_squared = np.empty(len(b))
    for start in range(0, len(b), EXACT_ROWS):
        rows = np.ascontiguousarray(b[start:start + EXACT_ROWS], dtype=np.float64)
        b_squared[start:start + len(rows)] = (rows * rows).sum(1)
        for i, query in enumerate(a):
            dots[i, start:start + len(rows)] = (rows * query).sum(1)
    squared = (a * a).sum(1)[:, None] + b_squared[None, :] - 2.0 * dots
    return np.sqrt(np.maximum(squared, 0.0)).astype(np.float32)


def _gamma(n: int, roundoff: float) -> float:
    """Higham's gamma_n = n u / (1 - n u): the relative error bound of n roundings."""
    return n * roundoff / (1.0 - n * roundoff)


@dataclass(frozen=True)
class RowScreen:
    """A float32 matrix prepared for :func:`nearest_groups`: computed once per matrix, not per
    query (a gallery keeps it with its vectors and drops both when they change).

    Only ``E`` float32 squared norms are kept besides the matrix, never a float64 copy of it.
    """

    matrix: np.ndarray
    """``(E, D)`` float32 rows, C-contiguous."""
    squared_norms: np.ndarray
    """``(E,)`` float32 ``sum(x * x)`` of each row, as the screen uses them."""
    max_norm: float
    """An upper bound on the largest row's true norm."""

    @classmethod
    def of(cls, matrix: np.ndarray) -> RowScreen:
        """The screen of ``matrix`` (``(E, D)``, any float dtype; kept as float32)."""
        rows = np.ascontiguousarray(matrix, dtype=np.float32)
        squared = np.einsum("ij,ij->i", rows, rows)
        largest = float(squared.max()) if len(squared) else 0.0
        # The float32 sums are within gamma_D of the true squared norms (see nearest_groups).
        bound = math.sqrt(largest / (1.0 - _gamma(rows.shape[1], FLOAT32_ROUNDOFF)))
        return cls(rows, squared, bound * (1.0 + 1e-12))


def screen_bound(dim: int, query_norm: float, max_norm: float) -> float:
    """How far a float32 screened value can be from the true one (see :func:`nearest_groups`).

    ``gamma_(D+1) (X^2 + 2 Q X)``, where ``Q`` is the query's norm and ``X`` the largest row
    norm, plus ``8 (D + 1) 2^-126`` for values below float32's normal range (each product, sum
    and the difference off by at most ``2^-126`` when flushed to zero, less when gradual).
    """
    x, q = max_norm, query_norm
    return _gamma(dim + 1, FLOAT32_ROUNDOFF) * (x * x + 2.0 * q * x) + 8 * (dim + 1) * 2.0 ** -126


def nearest_groups(queries: np.ndarray, screen: RowScreen, starts: np.ndarray, k: int
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``k`` groups of rows closest to each query, as the exact computation ranks them.

    A group's distance is that of its closest row by :func:`fixed_order_distances`; groups are
    ordered by (distance, group index), as a stable sort of every group's distance would order
    them. The result is that computation's, bit for bit, without computing it for every row:

    1. Screen: ``t = n - 2 g`` per row in float32, ``g`` the dot products by one BLAS product of
       the float32 matrix as stored, ``n`` the cached squared norms; ``t`` is the squared
       distance minus the query's own squared norm. Per group the smallest ``t``, and per query
       ``tau``, the ``k``-th smallest of those (in linear time: :func:`_kth_smallest`).
    2. The bound: for float32 vectors ``q`` and ``x`` of dimension ``D``, with ``|q| = Q`` and
       ``|x| <= X``, a dot product summed in ANY order (with or without fused multiply-add, so
       whatever BLAS does) is within ``gamma_D sum|q_i x_i| <= gamma_D Q X`` of the true one,
       ``gamma_D = D u / (1 - D u)``, ``u = 2^-24`` (Higham, *Accuracy and Stability of
       Numerical Algorithms*, 3.1; Cauchy-Schwarz); likewise ``n`` is within ``gamma_D X^2``;
       doubling is exact and the subtraction adds at most ``u (1 + gamma_D)(X^2 + 2 Q X)``. So
       every screened ``t`` is within ``B = gamma_(D+1)(X^2 + 2 Q X)`` (:func:`screen_bound`)
       of the true ``T = |x|^2 - 2 q.x``, and a group's minimum within ``B`` of its true one.
       For unit vectors and ``D = 128``, ``B`` is about ``2.3e-5`` in squared distance.
    3. Who can be in the top ``k`` (:func:`_cuts`): the ``k`` groups of smallest screened value
       have true ``T <= tau + B``, so float64 squared distances
       ``S <= |q|^2 + tau + B + delta`` (``delta``: the float64 rounding of the exact formula,
       under ``gamma_(2D)`` of ``(Q + X)^2``, doubled to cover the few roundings of this
       arithmetic); distances are a non-decreasing function of ``S``, so ``k`` groups are
       within ``d*``, the exact formula's float32 distance at that bound, and every group of
       the top ``k`` is within ``d*``. A group within ``d*`` has a row with
       ``S < next_float32(d*)^2`` (else its square root rounds past ``d*``), so a screened
       value ``t < next(d*)^2 - |q|^2 + delta + B``. Every group under that cut is kept:
       ties at the ``k``-th distance are all kept, so the lower index wins as in the full sort.
    4. Which rows can be a kept group's closest: the same cut from the group's own smallest
       screened value instead of ``tau``. Only those rows are computed exactly; each group's
       minimum over them is its exact distance, and the groups are sorted by (distance, index).

    With unit vectors the kept groups are those within about ``2 B`` of ``tau``: the ``k``
    nearest and the rare ones closer to them than float32 can tell. A query that is not finite,
    or so large (or with rows so large) that the float32 screen could overflow, is computed
    exactly over every row.

    Args:
        queries: ``(M, D)`` vectors.
        screen: The rows (:meth:`RowScreen.of`).
        starts: The first row of each group, increasing from 0.
        k: How many groups to return per query (``< 1``: none).

    Returns:
        Per query, the group indices and their float32 distances, closest first.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    starts = np.asarray(starts, dtype=np.intp)
    rows = len(screen.matrix)
    if k < 1 or len(starts) == 0:
        return [(np.zeros(0, np.intp), np.zeros(0, np.float32)) for _ in queries]
    one_row_each = rows == len(starts)
    chunk = max(1, SCREEN_ELEMENTS // max(rows, 1))
    results: list[tuple[np.ndarray, np.ndarray]] = []
    for begin in range(0, len(queries), chunk):
        block = queries[begin:begin + chunk]
        screened = block @ screen.matrix.T
        screened *= np.float32(-2.0)
        screened += screen.squared_norms
        per_group = screened if one_row_each else np.minimum.reduceat(screened, starts, axis=1)
        results.extend(_rank_one(query, screen, starts, row_values, group_values, k)
                       for query, row_values, group_values in zip(block, screened, per_group,
                                                                  strict=True))
    return results


def _rank_one(query: np.ndarray, screen: RowScreen, starts: np.ndarray, row_values: np.ndarray,
              group_values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One query of :func:`nearest_groups`, from its screened values per row and per group."""
    groups = len(starts)
    query64 = query.astype(np.float64)
    own = float((query64 * query64).sum())
    if not (own <= SCREEN_SQUARED_NORM_MAX and screen.max_norm ** 2 <= SCREEN_SQUARED_NORM_MAX):
        everyone = np.arange(groups)
        return _exact_groups(query, screen.matrix, everyone,
                             _group_rows(starts, everyone, len(screen.matrix)), k)
    if k < groups:
        tau = np.float32(_kth_smallest(group_values, k))
        kept = np.flatnonzero(group_values <= _cuts(own, tau, len(query), screen.max_norm))
    else:
        kept = np.arange(groups)
    rows, sizes = _group_rows(starts, kept, len(screen.matrix))
    if len(rows) > len(kept):
        smallest = group_values[kept]
        cuts = np.maximum(_cuts(own, smallest, len(query), screen.max_norm), smallest)
        closest = row_values[rows] <= np.repeat(cuts, sizes)
        sizes = np.bincount(np.repeat(np.arange(len(kept)), sizes)[closest],
                            minlength=len(kept))
        rows = rows[closest]
    return _exact_groups(query, screen.matrix, kept, (rows, sizes), k)


def _group_rows(starts: np.ndarray, groups: np.ndarray, total: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Every row of ``groups`` (ascending) in order, and how many each group has."""
    following = groups + 1
    ends = np.where(following < len(starts), starts[np.minimum(following, len(starts) - 1)],
                    total)
    sizes = ends - starts[groups]
    offsets = np.cumsum(sizes) - sizes
    return np.arange(int(sizes.sum())) + np.repeat(starts[groups] - offsets, sizes), sizes


def _kth_smallest(values: np.ndarray, k: int) -> float:
    """The ``k``-th smallest of ``values`` (NaN last), as ``np.partition`` finds it, without
    partitioning them all: the ``k``-th smallest of the minima of blocks of
    :data:`SELECT_BLOCK` values bounds it from above (``k`` blocks hold a value at most that),
    and only the few values under that bound are partitioned."""
    if len(values) > k * SELECT_BLOCK:
        block_minima = np.minimum.reduceat(values, np.arange(0, len(values), SELECT_BLOCK))
        few = values[values <= np.partition(block_minima, k - 1)[k - 1]]
        if len(few) >= k:
            return float(np.partition(few, k - 1)[k - 1])
    return float(np.partition(values, k - 1)[k - 1])


def _cuts(own: float, screened: np.ndarray | np.float32, dim: int, max_norm: float
          ) -> np.ndarray:
    """Per screened value ``t`` (the ``k``-th smallest group's, or a group's smallest), the
    largest screened value of a row that can be as close as a row screened at ``t`` (steps 3
    and 4 of :func:`nearest_groups`), rounded up to float32.

    Args:
        own: The query's squared norm, summed in float64 as the exact formula does.
        screened: The screened values.
        dim: The vectors' dimension.
        max_norm: The bound on the largest row norm (:attr:`RowScreen.max_norm`).
    """
    query_norm = math.sqrt(own) * (1.0 + 1e-12)
    bound = screen_bound(dim, query_norm, max_norm)
    delta = 2.0 * _gamma(2 * dim, FLOAT64_ROUNDOFF) * (query_norm + max_norm) ** 2
    upper = own + np.asarray(screened, dtype=np.float64) + bound + delta
    farthest = np.sqrt(np.maximum(upper, 0.0)).astype(np.float32)
    beyond = np.nextafter(farthest, np.float32(np.inf)).astype(np.float64)
    cut = beyond * beyond - own + bound + 2.0 * delta
    rounded = cut.astype(np.float32)
    return np.where(rounded >= cut, rounded, np.nextafter(rounded, np.float32(np.inf)))


def _exact_groups(query: np.ndarray, matrix: np.ndarray, groups: np.ndarray,
                  rows: tuple[np.ndarray, np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` closest of ``groups`` (ascending indices) by exact distance, then index, from
    ``rows``: the rows that can be each group's closest, in order, and how many per group."""
    indices, sizes = rows
    distances = fixed_order_distances(query[None], matrix[indices])[0]
    per_group = np.minimum.reduceat(distances, np.cumsum(sizes) - sizes)
    order = np.argsort(per_group, kind="stable")[:k]
    return groups[order], per_group[order]
