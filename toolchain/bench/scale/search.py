"""Gallery search and enrollment at scale: SQLite exact, pgvector exact and pgvector HNSW.

For each size and backend: p50/p99 latency of one query (top 3 people) over all probes, and per
kind recall@1 against the exact search (the in-memory exact ranking, the SQLite backend's). The
HNSW rows sweep ``hnsw.ef_search`` (:data:`EF_SEARCHES`). Backends: SQLite exact (the vectors in
memory), pgvector exact (a sequential scan in the database, re-ranked) and pgvector HNSW (the
index's candidates re-ranked exactly). Each backend is built up through the sizes, its rows/s
timed (PostgreSQL: the HNSW index built after the load, then ``Gallery.add`` into the built
index; the load rate before the index build, the index's and the table's size and the load
averages recorded). ``builds`` above 1 searches more independent HNSW builds of the largest
gallery (:func:`_rebuild`), as the goal is a recall every build reaches, not the luckiest one's.
PostgreSQL is a throwaway server (:mod:`toolchain.bench.pgserver`) given the memory a
million vectors need (:data:`SERVER_SETTINGS`), as a deployment of that size would be.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.bench.scale.distractors import (
    DISTRACTOR_MODELS,
    RealFaces,
    distractor_entries,
    two_nn_dimension,
)
from toolchain.bench.scale.probes import SYNTHETIC_QUERIES, Probes, make_probes, scan_subset
from toolchain.bench.scale.report import BuildRow, ScaleReport, SearchRow
from toolchain.gallery import Entry, Gallery, open_gallery
from toolchain.gallery.postgres import EF_SEARCH, PostgresGallery, split_url
from toolchain.gallery.ranking import pairwise_distances
from toolchain.gallery.vectors import Candidate

log = logging.getLogger(__name__)

EF_SEARCHES = tuple(sorted({100, EF_SEARCH, 300, 400}))
"""``hnsw.ef_search`` values the HNSW rows sweep (the gallery's default among them)."""
SERVER_SETTINGS = {
    "shared_buffers": "3GB",
    "effective_cache_size": "8GB",
    "maintenance_work_mem": "4GB",
    "max_parallel_maintenance_workers": "1",
}
"""The benchmark's server, sized for a million vectors: the table and the HNSW index (about
1.4 GB together) fit in shared buffers, the index's graph is built in memory (pgvector's
documented advice; past ``maintenance_work_mem`` the build slows down many times), and the build
runs on the leader plus one parallel worker (2 cores)."""
ADD_BATCH = 10_000
"""Entries per ``Gallery.add`` transaction while building."""
INDEXED_ADD_ROWS = 1_000
"""Rows added one batch at a time into a built HNSW index (the incremental enrollment rate)."""
ID_SAMPLE = 2_000
"""Distractors over which the report measures each model's intrinsic dimensionality."""
FINGERPRINT = "5" * 64
"""The scale galleries hold embeddings of the real model but are throwaways: a fixed stand-in."""
K = 3
"""People each timed query ranks (``k`` of ``Gallery.match``, as ``facenet recognize``)."""


def _timed(search: Callable[[np.ndarray], list[Candidate]], queries: np.ndarray
           ) -> tuple[list[list[Candidate]], np.ndarray]:
    results, times = [], []
    search(queries[0])
    for query in queries:
        start = time.perf_counter()
        results.append(search(query))
        times.append((time.perf_counter() - start) * 1000)
    return results, np.asarray(times)


def _search_row(model: str, backend: str, size: int, results: Sequence[Sequence[Candidate]],
                times: np.ndarray, exact: Sequence[Sequence[Candidate]], probes: Probes,
                ef_search: int | None = None, build: int = 1) -> SearchRow:
    top = np.array([r[0].name if r else "" for r in results], dtype=object)
    best = np.array([e[0].name if e else "" for e in exact[:len(results)]], dtype=object)
    truth = np.array(probes.truth[:len(results)], dtype=object)
    kinds = np.array(probes.kinds[:len(results)])
    recall = {kind: round(float(np.mean(top[kinds == kind] == best[kinds == kind])), 4)
              for kind in dict.fromkeys(kinds)}
    found = {kind: round(float(np.mean(top[kinds == kind] == truth[kinds == kind])), 4)
             for kind in dict.fromkeys(kinds) if kind != "new"}
    return SearchRow(model, backend, size, len(results), round(float(np.percentile(times, 50)), 3),
                     round(float(np.percentile(times, 99)), 3), recall, found, ef_search, build,
                     os.getloadavg())


def _build(model: str, gallery: Gallery, entries: Sequence[Entry], size: int,
           url: str = "", build: int = 1) -> BuildRow:
    """Add ``entries`` (PostgreSQL, at ``url``: without the index, built after) and time it."""
    start = time.perf_counter()
    index = sizes = None
    if isinstance(gallery, PostgresGallery):
        gallery.drop_index()
    for first in range(0, len(entries), ADD_BATCH):
        gallery.add(entries[first:first + ADD_BATCH])
    built = time.perf_counter()
    if isinstance(gallery, PostgresGallery):
        gallery.build_index()
        index = round(time.perf_counter() - built, 2)
        sizes = _relation_mb(url, gallery.schema)
    seconds = time.perf_counter() - start
    return BuildRow(model, gallery.backend, size, len(entries), round(seconds, 2),
                    round(len(entries) / seconds, 1), index,
                    insert_rows_per_s=round(len(entries) / (built - start), 1), build=build,
                    index_mb=sizes and sizes[0], table_mb=sizes and sizes[1],
                    load=os.getloadavg())


def _connection(url: str) -> Any:
    """A psycopg autocommit connection to the database of the gallery at ``url``."""
    import psycopg

    return psycopg.connect(split_url(url)[0], autocommit=True)


def _relation_mb(url: str, schema: str) -> tuple[float, float]:
    """The MB of the gallery's HNSW index and of its embeddings table (with its TOAST)."""
    with _connection(url) as conn:
        index, table = conn.execute(
            "SELECT pg_relation_size(%s::regclass), pg_table_size(%s::regclass)",
            (f"{schema}.embeddings_hnsw", f"{schema}.embeddings")).fetchone()
    return round(index / 2**20, 1), round(table / 2**20, 1)


def _indexed_add(gallery: PostgresGallery, vectors: np.ndarray, first: int) -> float:
    """Rows/s of ``Gallery.add`` into the built index, :data:`INDEXED_ADD_ROWS` in batches of 100
    (an enrollment's size), the rows removed again after."""
    entries = distractor_entries(vectors, first)
    start = time.perf_counter()
    for batch in range(0, len(entries), 100):
        gallery.add(entries[batch:batch + 100])
    rate = len(entries) / (time.perf_counter() - start)
    for entry in entries:
        gallery.remove(entry.name)
    return round(rate, 1)


def describe_real(real: RealFaces, report: ScaleReport, work: Path) -> None:
    """Record the real faces' distances, intrinsic dimensionality and identification alone."""
    report.real_people = len({e.name for e in real.train})
    report.real_train_faces, report.real_val_faces = len(real.train), len(real.val)
    train = np.stack([e.vector for e in real.train])
    distances, same = real.pair_distances()
    genuine = float(np.median(distances[same]))
    impostor = float(np.median(distances[~same]))
    dimension = two_nn_dimension(np.concatenate([train, real.val]))
    report.notes.append(f"real faces: median distance between different people {impostor:.3f}, "
                        f"between two photos of one person {genuine:.3f} (an enrolled probe is "
                        f"that far from its distractor); intrinsic dimensionality (TWO-NN) "
                        f"{dimension:.1f} over the {len(train) + len(real.val)} faces")
    with open_gallery(work / "real.db", fingerprint=FINGERPRINT, create=True) as alone:
        alone.add(real.train)
        found = np.mean([c[0].name == n for c, n in zip(alone.match(real.val, k=1),
                                                          real.val_names, strict=True)])
    report.notes.append(f"real val faces whose nearest person is their own with no "
                        f"distractors: {found:.4f} ({len(real.val)} faces)")


def measure_search(real: RealFaces, model: str, sizes: Sequence[int], report: ScaleReport,
                   work: Path, url: str, save: Callable[[], None], builds: int = 1,
                   order_seed: int = 0) -> None:
    """Build both backends up through ``sizes`` with the ``model``'s distractors (PostgreSQL:
    a new gallery at ``url``) and time their searches at each size; ``save`` writes the report
    so far after each build and each size's searches (a million takes a while). At the largest
    size, ``builds - 1`` more independent HNSW builds are searched (:func:`_rebuild`).
    ``order_seed`` other than 0 loads each size's new rows in an order permuted by it (another
    run's build is then independent of this one's in its insertion order too, not only in
    pgvector's random levels)."""
    spec = DISTRACTOR_MODELS[model]
    offset = report.real_people if spec.with_real else 0
    pool = spec.pool(real, max(sizes) - offset + SYNTHETIC_QUERIES, 14)
    probes = make_probes(real, pool, min(sizes) - offset, spec.with_real)
    vectors = pool.vectors
    half = min(len(vectors) // 2, 5_000)
    fake = float(np.median(pairwise_distances(vectors[:half], vectors[half:2 * half])))
    dimension = two_nn_dimension(vectors[:ID_SAMPLE])
    moved = float(np.median(np.linalg.norm(
        probes.vectors[probes.of("enrolled")] - vectors[probes.targets], axis=1)))
    report.notes.append(f"{model} distractors: median distance between two {fake:.3f}, between "
                        f"one and its second photo {moved:.3f}; intrinsic dimensionality "
                        f"(TWO-NN) {dimension:.1f} over {min(ID_SAMPLE, len(vectors))}")
    with open_gallery(work / "scale.db", fingerprint=FINGERPRINT, create=True) as sqlite, \
            open_gallery(url, fingerprint=FINGERPRINT, create=True) as pg:
        assert isinstance(pg, PostgresGallery)
        stored = 0
        spare = spec.pool(real, INDEXED_ADD_ROWS, 15).vectors
        scanned = scan_subset(probes)
        for size in sizes:
            first = max(0, stored - offset)
            new = (real.train if stored == 0 and spec.with_real else []) + distractor_entries(
                vectors[first:size - offset], first)
            if order_seed:
                new = [new[i] for i in np.random.default_rng(order_seed).permutation(len(new))]
            report.build.append(_build(model, sqlite, new, size))
            row = _build(model, pg, new, size, url)
            report.build.append(replace(row, indexed_add_rows_per_s=_indexed_add(
                pg, spare, len(vectors))))
            stored = size
            log.info("scale %s %d: built", model, size)
            save()
            exact, times = _timed(lambda q: sqlite.match(q[None], k=K)[0], probes.vectors)
            report.search.append(_search_row(model, "sqlite exact", size, exact, times, exact,
                                             probes))
            pg.search = "scan"
            subset = probes.subset(scanned)
            results, times = _timed(lambda q: pg.match(q[None], k=K)[0], subset.vectors)
            report.search.append(_search_row(model, "pgvector exact", size, results, times,
                                             [exact[i] for i in scanned], subset))
            pg.search = "index"
            for ef_search in EF_SEARCHES:
                pg.set_ef_search(ef_search)
                results, times = _timed(lambda q: pg.match(q[None], k=K)[0], probes.vectors)
                report.search.append(_search_row(model, "pgvector HNSW", size, results, times,
                                                 exact, probes, ef_search))
            pg.set_ef_search(EF_SEARCH)
            pg.search = "auto"
            log.info("scale %s %d: searched", model, size)
            save()
        everything = (real.train if spec.with_real else []) + distractor_entries(
            vectors[:max(sizes) - offset], 0)
    for build in range(2, builds + 1):
        url = _rebuild(model, everything, max(sizes), exact, probes, report, url, build, save)
        save()


def _rebuild(model: str, entries: list[Entry], size: int, exact: Sequence[Sequence[Candidate]],
             probes: Probes, report: ScaleReport, url: str, build: int,
             save: Callable[[], None]) -> str:
    """Another independent build of the largest gallery: the previous PostgreSQL gallery at
    ``url`` dropped, the same ``entries`` loaded into a new one in another order (a permutation
    seeded by ``build``), its HNSW index built (pgvector draws each node's levels at random on
    every build) and searched at every :data:`EF_SEARCHES` against the same exact results.
    Returns the new gallery's URL."""
    schema = split_url(url)[1]
    with _connection(url) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
    url = f"{url}&gallery={schema.rsplit('_b', 1)[0]}_b{build}"
    order = np.random.default_rng(build).permutation(len(entries))
    with open_gallery(url, fingerprint=FINGERPRINT, create=True) as pg:
        assert isinstance(pg, PostgresGallery)
        report.build.append(_build(model, pg, [entries[i] for i in order], size, url, build))
        log.info("scale %s %d: build %d built", model, size, build)
        save()
        pg.search = "index"
        for ef_search in EF_SEARCHES:
            pg.set_ef_search(ef_search)
            results, times = _timed(lambda q: pg.match(q[None], k=K)[0], probes.vectors)
            report.search.append(_search_row(model, "pgvector HNSW", size, results, times,
                                             exact, probes, ef_search, build))
    return url
