"""Gallery ranking: the float32 screen plus exact re-rank gives the full exact ranking bit for bit.

The reference everywhere is the straightforward computation: every row's float64 distance
(:func:`fixed_order_distances`, the formula of :func:`pairwise_distances`), each person's
minimum (``np.minimum.reduceat``), a stable ``argsort`` of every person. Galleries are random
unit vectors with people of varying row counts, exact duplicate rows (ties), rows within 1e-7
of each other (near-ties), queries equal to stored rows, and ``k`` up to beyond the number of
people.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolchain.core.preprocess import l2_normalize
from toolchain.gallery.ranking import (
    SELECT_BLOCK,
    RowScreen,
    fixed_order_distances,
    nearest_groups,
    pairwise_distances,
    screen_bound,
)
from toolchain.gallery.schema import MatchMode
from toolchain.gallery.vectors import PeopleVectors, rank_people

DIM = 128


def unit_rows(rng: np.random.Generator, count: int, dim: int = DIM) -> np.ndarray:
    """``count`` random float32 unit vectors."""
    return l2_normalize(rng.standard_normal((count, dim)).astype(np.float32))


def reference(queries: np.ndarray, matrix: np.ndarray, starts: np.ndarray, k: int
              ) -> list[tuple[list[int], bytes]]:
    """Per query, the ``k`` nearest groups and the bytes of their float32 distances, computed
    over every row."""
    per_group = np.minimum.reduceat(fixed_order_distances(queries, matrix), starts, axis=1)
    order = np.argsort(per_group, axis=1, kind="stable")[:, :max(k, 0)]
    return [(row.tolist(), per_group[i, row].tobytes()) for i, row in enumerate(order)]


def screened(queries: np.ndarray, matrix: np.ndarray, starts: np.ndarray, k: int
             ) -> list[tuple[list[int], bytes]]:
    return [(groups.tolist(), distances.astype(np.float32).tobytes())
            for groups, distances in nearest_groups(queries, RowScreen.of(matrix), starts, k)]


def gallery_case(seed: int, people: int, most_rows: int) -> tuple[np.ndarray, np.ndarray,
                                                                    np.ndarray]:
    """A random gallery (matrix, starts) with duplicates and near-ties, and queries that
    include stored rows, near copies of them, and random directions."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, most_rows + 1, people)
    matrix = unit_rows(rng, int(sizes.sum()))
    rows = len(matrix)
    copies = rng.choice(rows, rows // 4)
    matrix[copies] = matrix[rng.choice(rows, len(copies))]
    nudged = rng.choice(rows, rows // 8)
    matrix[nudged] = l2_normalize(matrix[rng.choice(rows, len(nudged))]
                                  + 1e-7 * unit_rows(rng, len(nudged)))
    queries = np.concatenate([
        matrix[rng.choice(rows, 4)],
        l2_normalize(matrix[rng.choice(rows, 2)] + 1e-7 * unit_rows(rng, 2)),
        unit_rows(rng, 3),
    ])
    return matrix, np.r_[0, np.cumsum(sizes)[:-1]], queries


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), people=st.integers(1, 60), most_rows=st.integers(1, 5),
       k=st.integers(1, 70))
def test_screened_ranking_is_the_full_ranking(seed: int, people: int, most_rows: int,
                                              k: int) -> None:
    matrix, starts, queries = gallery_case(seed, people, most_rows)
    assert screened(queries, matrix, starts, k) == reference(queries, matrix, starts, k)


@pytest.mark.parametrize(("people", "most_rows", "k"), [
    (5 * SELECT_BLOCK, 1, 3),   # one row each, as a large gallery of distinct people
    (3 * SELECT_BLOCK, 4, 2),   # several rows each
    (4 * SELECT_BLOCK, 1, 4),   # exactly k blocks: every value partitioned
    (3, 3000, 3),               # few people with many rows: every person, few rows each
    (40, 300, 5),
])
def test_large_galleries_rank_like_the_full_computation(people: int, most_rows: int,
                                                        k: int) -> None:
    """Enough people for the blockwise k-th smallest (and several query blocks)."""
    matrix, starts, queries = gallery_case(people, people, most_rows)
    assert screened(queries, matrix, starts, k) == reference(queries, matrix, starts, k)


def test_ties_keep_the_lower_person_first() -> None:
    """Many people at the same or nearly the same distance from the query (rows at one angle
    to it, some exact copies): the order is (float32 distance, person index), as a stable sort
    of every person gives, and the people beyond the k-th are cut the same way."""
    rng = np.random.default_rng(3)
    query = np.zeros(DIM, np.float32)
    query[0] = 1.0
    sideways = rng.standard_normal((400, DIM))
    sideways[:, 0] = 0.0
    sideways /= np.linalg.norm(sideways, axis=1, keepdims=True)
    angle = 0.6
    matrix = (math.cos(angle) * query + math.sin(angle) * sideways).astype(np.float32)
    matrix[::7] = matrix[3]
    starts = np.arange(400)
    distances = fixed_order_distances(query[None], matrix)[0]
    assert len(np.unique(distances)) < 20
    for k in (1, 5, 37, 399, 400, 401):
        assert screened(query[None], matrix, starts, k) == reference(query[None], matrix,
                                                                    starts, k)


def test_single_row_gallery_and_nothing_asked() -> None:
    rng = np.random.default_rng(4)
    matrix = unit_rows(rng, 1)
    queries = np.concatenate([matrix, unit_rows(rng, 2)])
    starts = np.zeros(1, np.intp)
    for k in (1, 3):
        assert screened(queries, matrix, starts, k) == reference(queries, matrix, starts, k)
    assert screened(queries, matrix, starts, 0) == [([], b"")] * 3
    result = screened(queries, matrix, starts, 1)
    assert result[0] == ([0], np.float32(0.0).tobytes())


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_a_query_not_finite_or_too_large_for_float32_is_ranked_exactly() -> None:
    rng = np.random.default_rng(5)
    matrix = unit_rows(rng, 50)
    starts = np.arange(0, 50, 2)
    queries = unit_rows(rng, 2)
    queries[0, 3] = np.nan
    queries[1, 0] = np.inf
    assert screened(queries, matrix, starts, 4) == reference(queries, matrix, starts, 4)
    huge = unit_rows(rng, 2) * np.float32(1e20)
    assert screened(huge, matrix, starts, 4) == reference(huge, matrix, starts, 4)


def test_fixed_order_distances_do_not_depend_on_the_other_rows() -> None:
    """The same query and row give the same bits whatever else is computed with them (the BLAS
    product does not: its summation order follows the shapes), and the values are the BLAS
    formula's up to its rounding."""
    rng = np.random.default_rng(6)
    matrix = unit_rows(rng, 3001)
    queries = np.concatenate([matrix[[0, 1500, 3000]], unit_rows(rng, 4)])
    full = fixed_order_distances(queries, matrix)
    for size in (1, 2, 3, 5, 6, 7, 10, 11, 33, 1000):
        rows = np.sort(rng.choice(len(matrix), size, replace=False))
        assert np.array_equal(fixed_order_distances(queries, matrix[rows]), full[:, rows])
        for i in (0, 4):
            assert np.array_equal(fixed_order_distances(queries[i:i + 1], matrix[rows]),
                                  full[i:i + 1, rows])
    np.testing.assert_allclose(full, pairwise_distances(queries, matrix), rtol=0, atol=1e-6)
    assert full[0, 0] == full[1, 1500] == full[2, 3000] == 0.0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), spread=st.sampled_from([1.0, 1e-3, 30.0]))
def test_screen_bound_holds(seed: int, spread: float) -> None:
    """The float32 screened value ``n - 2 g`` is within :func:`screen_bound` of the true
    ``|x|^2 - 2 q.x`` (computed exactly in rational arithmetic), also for vectors with
    components of very different sizes."""
    from fractions import Fraction

    rng = np.random.default_rng(seed)
    raw = rng.standard_normal((32, DIM)) * spread ** rng.uniform(-1.0, 1.0, (32, DIM))
    matrix = l2_normalize(raw.astype(np.float32))
    query = matrix[0] if seed % 2 else unit_rows(rng, 1)[0]
    screen = RowScreen.of(matrix[1:])
    values = screen.squared_norms - np.float32(2.0) * (query[None] @ screen.matrix.T)[0]
    bound = screen_bound(DIM, float(np.linalg.norm(query.astype(np.float64))) * (1 + 1e-12),
                         screen.max_norm)
    q = [Fraction(float(v)) for v in query]
    for row, value in zip(screen.matrix, values, strict=True):
        x = [Fraction(float(v)) for v in row]
        true = sum(v * v for v in x) - 2 * sum(a * b for a, b in zip(q, x, strict=True))
        assert abs(Fraction(float(value)) - true) <= Fraction(bound)
    assert bound < 3e-5


@pytest.mark.parametrize("mode", list(MatchMode))
def test_people_are_ranked_like_the_full_computation(mode: MatchMode) -> None:
    """Both match modes through :class:`PeopleVectors` (kept and reused, as a gallery keeps
    them) and :func:`rank_people` (used once) give the reference ranking, names and float32
    distances; and the BLAS formula's ranking up to its rounding."""
    matrix, starts, queries = gallery_case(11, 300, 4)
    names = [f"person {i:03d}" for i in range(len(starts))]
    if mode is MatchMode.CENTROID:
        vectors = l2_normalize(np.add.reduceat(matrix, starts, axis=0))
        groups = np.arange(len(starts))
    else:
        vectors, groups = matrix, starts
    people = PeopleVectors(names, matrix, starts)
    for k in (1, 3, 300, 301):
        want = [[(names[j], distances) for j, distances in zip(
            order, np.frombuffer(raw, np.float32).tolist(), strict=True)]
            for order, raw in reference(queries, vectors, groups, k)]
        for ranked in (people.rank(queries, k, mode),
                       rank_people(names, matrix, starts, queries, k, mode)):
            assert [[(c.name, c.distance) for c in row] for row in ranked] == want
    blas = pairwise_distances(queries[6:], vectors)
    per_person = np.minimum.reduceat(blas, groups, axis=1)
    order = np.argsort(per_person, axis=1, kind="stable")[:, :5]
    for row, got in zip(order, people.rank(queries[6:], 5, mode), strict=True):
        assert [c.name for c in got] == [names[j] for j in row]
