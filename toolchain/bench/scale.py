"""``facenet bench --scale``: gallery search at 10k, 100k and 1M identities, enrollment rows/s
into each backend, and batch photos/s on one process vs Ray.

The gallery holds the real faces of the 5-celebrity ``train/`` photos (embedded here by the
recognizer, one face per photo, as ``facenet enroll --largest`` would) plus synthetic distractor
identities, one embedding each, as MegaFace adds distractors to a probe set. How hard a gallery is
to search depends on the distractors' intrinsic dimensionality, so each model of
:data:`DISTRACTOR_MODELS` is measured on its own: ``face-like`` lies on a manifold of the
dimensionality measured for FaceNet embeddings, ``gaussian`` fills nearly all 128 dimensions (the
worst case for a graph index). Both crowd the region of the sphere the real faces occupy (random
unit vectors would sit near-orthogonal to everything and make search trivially easy), and the
report gives each model's measured dimensionality and distances next to the real faces'.

Queries, three kinds (:class:`Probes`), as a face search meets them:

- ``real``: every real ``val/`` face; each must still find its own person among the distractors.
- ``enrolled``: another photo of an enrolled distractor identity, as far from it as two real
  photos of one person are apart (each model says how: :attr:`Pool.second_photos`).
- ``new``: a synthetic identity that is not enrolled, drawn from the same model.

For each size and backend: p50/p99 latency of one query (top 3 people) over all probes, and per
kind recall@1 against the exact search (the in-memory exact ranking, the SQLite backend's). The
HNSW rows sweep ``hnsw.ef_search`` (:data:`EF_SEARCHES`). Backends: SQLite exact (the vectors in
memory), pgvector exact (a sequential scan in the database, re-ranked) and pgvector HNSW (the
index's candidates re-ranked exactly). PostgreSQL is a throwaway server
(:mod:`toolchain.bench.pgserver`) given the memory a million vectors need
(:data:`SERVER_SETTINGS`), as a deployment of that size would be.

Batch: ``facenet recognize --json`` against ``facenet batch recognize --ray local --cpus 1`` and
``--cpus 2`` on the same photos (the 5-celebrity photos, :data:`BATCH_ROUNDS` times over), each a
fresh process timed whole (start-up included). On a 2-core machine the point is Ray's overhead and
the scaling from 1 to 2 CPUs, not a speedup over one process that already uses both cores.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from toolchain.bench import machine
from toolchain.core.atomic import write_json, write_text
from toolchain.core.paths import Layout
from toolchain.gallery import Entry, Gallery, open_gallery
from toolchain.gallery.postgres import EF_SEARCH, PostgresGallery
from toolchain.gallery.ranking import pairwise_distances
from toolchain.gallery.vectors import Candidate
from toolchain.runtime.ort_options import core_count

log = logging.getLogger(__name__)

SIZES = (10_000, 100_000, 1_000_000)
"""Identities in the gallery (real people plus distractors)."""
SYNTHETIC_QUERIES = 200
"""Synthetic probes of each kind, ``enrolled`` and ``new`` (the real val faces come on top)."""
EF_SEARCHES = (100, EF_SEARCH, 400)
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
SCAN_QUERIES = 50
"""Queries timed for the pgvector sequential scan (it reads every vector per query)."""
ADD_BATCH = 10_000
"""Entries per ``Gallery.add`` transaction while building."""
INDEXED_ADD_ROWS = 1_000
"""Rows added one batch at a time into a built HNSW index (the incremental enrollment rate)."""
ISOTROPIC = 1.0
"""Gaussian distractors: share of the mean variance added on the diagonal of the fitted
covariance (the five real people alone would make distractors closer to each other than
different real people are)."""
LATENT_DIM = 12
"""Face-like distractors: dimensions of the latent space mapped onto the sphere. FaceNet's
128-d embeddings have an intrinsic dimensionality of 9 to 12 (Gong, Boddeti and Jain, "On the
Intrinsic Dimensionality of Image Representations", CVPR 2019); the upper end is taken (a
higher dimensionality is harder for a graph index)."""
LATENT_FREQUENCY = 0.5
"""Face-like distractors: scale of the map's random frequencies. Low enough that the manifold's
measured dimensionality (:func:`two_nn_dimension`) stays near :data:`LATENT_DIM` from a hundred
to twenty thousand points; higher folds it so much that it looks higher-dimensional."""
ID_SAMPLE = 2_000
"""Distractors over which the report measures each model's intrinsic dimensionality."""
FINGERPRINT = "5" * 64
"""The scale galleries hold embeddings of the real model but are throwaways: a fixed stand-in."""
K = 3
BATCH_ROUNDS = 3
"""The 5-celebrity photos are recognized this many times over in the batch rows, so start-up
weighs less against the steady rate."""


@dataclass(frozen=True)
class SearchRow:
    """Latency and quality of one backend's search at one gallery size."""

    model: str
    """The distractor model (a key of :data:`DISTRACTOR_MODELS`)."""
    backend: str
    size: int
    queries: int
    p50_ms: float
    p99_ms: float
    recall_at_1: dict[str, float]
    """Per probe kind, the share of probes whose top-1 person is the exact search's."""
    found: dict[str, float]
    """Per kind with a truth (``real``, ``enrolled``): the share whose top-1 is their own."""
    ef_search: int | None = None
    """``hnsw.ef_search`` of an HNSW row."""


@dataclass(frozen=True)
class BuildRow:
    """Building one backend's gallery of one size."""

    model: str
    backend: str
    size: int
    rows: int
    """Rows added to grow the gallery to ``size`` identities."""
    seconds: float
    rows_per_s: float
    index_seconds: float | None = None
    """PostgreSQL: building the HNSW index after the load (included in ``seconds``)."""
    indexed_add_rows_per_s: float | None = None
    """PostgreSQL: ``Gallery.add`` into the built index, a batch at a time."""


@dataclass(frozen=True)
class BatchRow:
    """One batch recognition job over the same photos."""

    label: str
    photos: int
    seconds: float
    photos_per_s: float


@dataclass
class ScaleReport:
    """Everything ``bench --scale`` measured."""

    sizes: list[int]
    models: list[str]
    cpu: str
    isa: list[str]
    cores: int
    real_people: int
    real_train_faces: int
    real_val_faces: int
    search: list[SearchRow] = field(default_factory=list)
    build: list[BuildRow] = field(default_factory=list)
    batch: list[BatchRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Probes:
    """The queries of one run, of every kind, with the person each should find (if enrolled)."""

    vectors: np.ndarray
    kinds: list[str]
    truth: list[str | None]
    targets: np.ndarray
    """The pool indices of the ``enrolled`` probes' identities, in their order."""

    def of(self, kind: str) -> np.ndarray:
        """Which probes are of ``kind`` (a boolean mask)."""
        return np.array([k == kind for k in self.kinds])

    def subset(self, indices: np.ndarray) -> Probes:
        """The probes at ``indices`` (their enrolled targets kept in order)."""
        enrolled = np.flatnonzero(self.of("enrolled"))
        return Probes(self.vectors[indices], [self.kinds[i] for i in indices],
                      [self.truth[i] for i in indices],
                      self.targets[np.isin(enrolled, indices)])


@dataclass(frozen=True)
class RealFaces:
    """The real embeddings: train entries (enrolled) and labelled val queries."""

    train: list[Entry]
    val: np.ndarray
    val_names: list[str]

    def pair_distances(self) -> tuple[np.ndarray, np.ndarray]:
        """Distances of every pair of train faces, and whether each pair is one person."""
        vectors = np.stack([e.vector for e in self.train])
        same = np.array([[a.name == b.name for b in self.train] for a in self.train])
        upper = np.triu_indices(len(self.train), 1)
        return pairwise_distances(vectors, vectors)[upper], same[upper]

    @property
    def genuine_median(self) -> float:
        """The median distance between two train faces of one person."""
        distances, same = self.pair_distances()
        return float(np.median(distances[same]))


def real_faces(layout: Layout) -> RealFaces:
    """Embed the largest face of every 5-celebrity photo with the recognizer."""
    from toolchain.core.preprocess import largest_face
    from toolchain.runtime.recognizer import Recognizer

    dataset = layout.dataset_dir
    rec = Recognizer.from_artifacts(layout.root, gallery=None)
    train: list[Entry] = []
    val: list[np.ndarray] = []
    names: list[str] = []
    for split in ("train", "val"):
        photos = sorted(p for p in (dataset / split).glob("*/*") if p.is_file())
        for photo in rec.analyze(photos):
            if not photo.faces or photo.image is None:
                continue
            face = photo.faces[largest_face([f.box for f in photo.faces])]
            if split == "train":
                train.append(Entry(photo.path.parent.name, face.embedding, str(photo.path),
                                   photo.image.sha256, face.box, face.confidence))
            else:
                val.append(face.embedding)
                names.append(photo.path.parent.name)
    return RealFaces(train, np.stack(val), names)


@dataclass(frozen=True)
class Pool:
    """A model's distractor identities, and how to take another photo of some of them."""

    vectors: np.ndarray
    """``(N, D)`` unit vectors, one per identity."""
    second_photos: Callable[[np.ndarray], np.ndarray]
    """``second_photos(indices)``: one more unit vector of each identity at those indices."""


def gaussian_pool(real: RealFaces, count: int, seed: int) -> Pool:
    """``count`` unit vectors from a Gaussian fitted to the real train embeddings, with
    :data:`ISOTROPIC` variance added: high-dimensional, the hardest case for a graph index.
    Second photos move along real same-person differences (:func:`second_photos`)."""
    train = np.stack([e.vector for e in real.train])
    mean = train.mean(axis=0)
    cov = np.cov(train, rowvar=False)
    cov += np.eye(train.shape[1]) * ISOTROPIC * float(np.trace(cov)) / train.shape[1]
    rng = np.random.default_rng(seed)
    out = np.empty((count, train.shape[1]), np.float32)
    for start in range(0, count, 100_000):
        chunk = rng.multivariate_normal(mean, cov, size=min(100_000, count - start))
        out[start:start + len(chunk)] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return Pool(out, lambda indices: second_photos(out[indices], real.train))


@dataclass(frozen=True)
class FaceLikeMap:
    """A smooth random map from the latent space onto the unit sphere: random Fourier features
    ``sqrt(2) sin(z W + phase)`` mixed into the embedding dimensions around a mean."""

    freqs: np.ndarray
    phase: np.ndarray
    mix: np.ndarray
    mean: np.ndarray

    @classmethod
    def random(cls, mean: np.ndarray, seed: int) -> FaceLikeMap:
        """A map of :data:`LATENT_DIM` latent dimensions around ``mean``."""
        dim = len(mean)
        rng = np.random.default_rng(seed)
        return cls(rng.standard_normal((LATENT_DIM, dim)) * LATENT_FREQUENCY,
                   rng.uniform(0.0, 2.0 * np.pi, dim),
                   rng.standard_normal((dim, dim)) / np.sqrt(dim), mean)

    def __call__(self, latent: np.ndarray) -> np.ndarray:
        out = np.empty((len(latent), len(self.mean)), np.float32)
        for start in range(0, len(latent), 100_000):
            z = latent[start:start + 100_000]
            chunk = self.mean + (np.sqrt(2.0) * np.sin(z @ self.freqs + self.phase)) @ self.mix
            out[start:start + len(chunk)] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
        return out


def latent_step(embed: FaceLikeMap, distance: float, seed: int) -> float:
    """The latent step whose random moves carry a point of ``embed`` a median ``distance`` away
    (found by bisection over a sample of points)."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((2_000, LATENT_DIM))
    moves = rng.standard_normal(latent.shape)
    start = embed(latent)
    low, high = 0.0, 8.0
    for _ in range(40):
        step = (low + high) / 2.0
        moved = float(np.median(np.linalg.norm(embed(latent + step * moves) - start, axis=1)))
        low, high = (step, high) if moved < distance else (low, step)
    return (low + high) / 2.0


def face_like_pool(real: RealFaces, count: int, seed: int) -> Pool:
    """``count`` unit vectors on a :data:`LATENT_DIM`-dimensional manifold around the real train
    embeddings' mean (standard normal latent points through a :class:`FaceLikeMap`). A second
    photo is a random latent move that carries an identity as far, in median, as two real photos
    of one person are apart: it stays on the manifold, as the gallery's faces do."""
    embed = FaceLikeMap.random(np.stack([e.vector for e in real.train]).mean(axis=0), seed)
    rng = np.random.default_rng(seed + 1)
    latent = rng.standard_normal((count, LATENT_DIM))
    step = latent_step(embed, real.genuine_median, seed + 2)

    def second(indices: np.ndarray) -> np.ndarray:
        moves = np.random.default_rng(seed + 3).standard_normal((len(indices), LATENT_DIM))
        return embed(latent[indices] + step * moves)

    return Pool(embed(latent), second)


@dataclass(frozen=True)
class DistractorModel:
    """How one kind of synthetic distractor identity is drawn."""

    description: str
    pool: Callable[[RealFaces, int, int], Pool]
    """``pool(real, count, seed)``: ``count`` identities given the real faces."""
    with_real: bool
    """Whether the real faces join the gallery (and their val faces probe it): only where they
    lie in the model's distribution, else they would be an island no real gallery has."""


DISTRACTOR_MODELS = {
    "face-like": DistractorModel(
        f"a {LATENT_DIM}-dimensional manifold (FaceNet's measured intrinsic dimensionality) "
        "around the real faces' mean; the real faces are not on it, so its galleries and probes "
        "are all on the manifold", face_like_pool, with_real=False),
    "gaussian": DistractorModel(
        "a Gaussian fitted to the real faces plus as much isotropic variance (high-dimensional: "
        "the worst case for a graph index), with the real faces", gaussian_pool, with_real=True),
}
"""The distractor models ``bench --scale`` can measure, the face-like one first."""


def two_nn_dimension(vectors: np.ndarray) -> float:
    """The intrinsic dimensionality of a point set by the TWO-NN estimator (Facco et al.,
    Scientific Reports 2017): the count over the sum of ``log(r2 / r1)``, the ratios of each
    point's second to first nearest-neighbour distance (duplicates left out)."""
    distances = pairwise_distances(vectors, vectors).astype(np.float64)
    np.fill_diagonal(distances, np.inf)
    nearest = np.sort(distances, axis=1)[:, :2]
    kept = nearest[:, 0] > 0
    ratios = nearest[kept, 1] / nearest[kept, 0]
    return float(len(ratios) / np.log(ratios).sum())


def second_photos(identities: np.ndarray, real: Sequence[Entry], seed: int = 16) -> np.ndarray:
    """Another "photo" of each of ``identities`` (unit vectors): each turned on the sphere, in the
    direction of the difference between two real photos of one real person, by their distance.

    The turn is in the plane of the identity and that difference, so the probe stays a unit
    vector at exactly the real pair's Euclidean distance from its identity.
    """
    vectors = np.stack([e.vector for e in real]).astype(np.float64)
    pairs = [(i, j) for i, a in enumerate(real) for j, b in enumerate(real)
             if i != j and a.name == b.name]
    rng = np.random.default_rng(seed)
    chosen = np.asarray(pairs)[rng.integers(0, len(pairs), len(identities))]
    step = vectors[chosen[:, 0]] - vectors[chosen[:, 1]]
    base = identities.astype(np.float64)
    across = step - (step * base).sum(1, keepdims=True) * base
    across /= np.linalg.norm(across, axis=1, keepdims=True)
    angle = 2.0 * np.arcsin(np.linalg.norm(step, axis=1) / 2.0)
    return (np.cos(angle)[:, None] * base + np.sin(angle)[:, None] * across).astype(np.float32)


def distractor_name(index: int) -> str:
    """The name of the distractor identity at ``index`` of the pool."""
    return f"distractor {index:07d}"


def distractor_entries(vectors: np.ndarray, first: int) -> list[Entry]:
    """One identity per vector, named and keyed by its number."""
    return [Entry(distractor_name(first + i), vector, "synthetic distractor",
                  f"distractor:{first + i:010d}", (0.0, 0.0, 0.0, 0.0), None)
            for i, vector in enumerate(vectors)]


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
                ef_search: int | None = None) -> SearchRow:
    top = np.array([r[0].name if r else "" for r in results], dtype=object)
    best = np.array([e[0].name if e else "" for e in exact[:len(results)]], dtype=object)
    truth = np.array(probes.truth[:len(results)], dtype=object)
    kinds = np.array(probes.kinds[:len(results)])
    recall = {kind: round(float(np.mean(top[kinds == kind] == best[kinds == kind])), 4)
              for kind in dict.fromkeys(kinds)}
    found = {kind: round(float(np.mean(top[kinds == kind] == truth[kinds == kind])), 4)
             for kind in dict.fromkeys(kinds) if kind != "new"}
    return SearchRow(model, backend, size, len(results), round(float(np.percentile(times, 50)), 3),
                     round(float(np.percentile(times, 99)), 3), recall, found, ef_search)


def _build(model: str, gallery: Gallery, entries: Sequence[Entry], size: int) -> BuildRow:
    """Add ``entries`` (PostgreSQL: without the index, built after) and time it."""
    start = time.perf_counter()
    index = None
    if isinstance(gallery, PostgresGallery):
        gallery.drop_index()
    for first in range(0, len(entries), ADD_BATCH):
        gallery.add(entries[first:first + ADD_BATCH])
    if isinstance(gallery, PostgresGallery):
        built = time.perf_counter()
        gallery.build_index()
        index = round(time.perf_counter() - built, 2)
    seconds = time.perf_counter() - start
    return BuildRow(model, gallery.backend, size, len(entries), round(seconds, 2),
                    round(len(entries) / seconds, 1), index)


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


def make_probes(real: RealFaces, pool: Pool, enrolled: int, with_real: bool) -> Probes:
    """The run's probes: the real val faces (``with_real``), second photos of
    :data:`SYNTHETIC_QUERIES` of the first ``enrolled`` identities of ``pool`` (enrolled at every
    size), and its last :data:`SYNTHETIC_QUERIES` (never enrolled) as new identities."""
    rng = np.random.default_rng(17)
    targets = np.sort(rng.choice(enrolled, SYNTHETIC_QUERIES, replace=False))
    val = real.val if with_real else real.val[:0]
    names = real.val_names if with_real else []
    vectors = np.concatenate([val, pool.second_photos(targets),
                              pool.vectors[-SYNTHETIC_QUERIES:]]).astype(np.float32)
    kinds = ["real"] * len(val) + ["enrolled"] * SYNTHETIC_QUERIES + ["new"] * SYNTHETIC_QUERIES
    truth: list[str | None] = [*names, *map(distractor_name, targets),
                               *[None] * SYNTHETIC_QUERIES]
    return Probes(vectors, kinds, truth, targets)


def scan_subset(probes: Probes) -> np.ndarray:
    """Indices of the probes timed for the sequential scan: the first of each kind, about
    :data:`SCAN_QUERIES` in all."""
    kinds = list(dict.fromkeys(probes.kinds))
    each = -(-SCAN_QUERIES // len(kinds))
    return np.concatenate([np.flatnonzero(probes.of(kind))[:each] for kind in kinds])


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
                   work: Path, url: str, save: Callable[[], None]) -> None:
    """Build both backends up through ``sizes`` with the ``model``'s distractors (PostgreSQL:
    a new gallery at ``url``) and time their searches at each size; ``save`` writes the report
    so far after each size (a million takes a while)."""
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
            report.build.append(_build(model, sqlite, new, size))
            row = _build(model, pg, new, size)
            report.build.append(BuildRow(
                model, row.backend, size, row.rows, row.seconds, row.rows_per_s,
                row.index_seconds, _indexed_add(pg, spare, len(vectors))))
            stored = size
            log.info("scale %s %d: built", model, size)
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


def measure_batch(layout: Layout, report: ScaleReport, work: Path) -> None:
    """Time ``recognize --json`` and ``batch recognize`` on Ray (1 and 2 CPUs), whole processes,
    over the 5-celebrity photos against a gallery of their train faces."""
    dataset = layout.dataset_dir
    gallery = work / "batch.db"
    enrolled = subprocess.run(
        [sys.executable, "-m", "toolchain", "enroll", str(dataset / "train"), "--largest",
         "--gallery", str(gallery), "--artifacts", str(layout.root)],
        capture_output=True, text=True, check=False)
    if not gallery.exists():
        report.notes.append(f"batch: enrolling the train photos failed: "
                            f"{enrolled.stderr.strip()[-300:]}")
        return
    photos = sorted(p.resolve() for p in dataset.rglob("*") if p.is_file()) * BATCH_ROUNDS
    listing = work / "photos.txt"
    listing.write_text("".join(f"{p}\n" for p in photos))
    common = ["--gallery", str(gallery), "--artifacts", str(layout.root)]
    jobs = [("one process (facenet recognize)", ["recognize", *map(str, photos), "--json"]),
            *((f"Ray, {cpus} CPU{'s' if cpus > 1 else ''} (facenet batch recognize)",
               ["batch", "recognize", "--list", str(listing), "--ray", "local", "--cpus",
                str(cpus), "--actors", str(cpus), "--output", str(work / f"ray{cpus}.jsonl")])
              for cpus in (1, 2))]
    for label, args in jobs:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "toolchain", *args, *common],
                              capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        if done.returncode:
            report.notes.append(f"{label} failed (exit {done.returncode}): "
                                f"{_error_line(done.stderr)}")
            continue
        report.batch.append(BatchRow(label, len(photos), round(seconds, 2),
                                     round(len(photos) / seconds, 2)))


def _error_line(stderr: str) -> str:
    """The command's own error line, else the last line of its stderr."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    mine = [line for line in lines if line.startswith("facenet: error")]
    return (mine or lines or ["(nothing on stderr)"])[-1][:300]


def run_scale(layout: Layout, sizes: Sequence[int] = SIZES,
              models: Sequence[str] = tuple(DISTRACTOR_MODELS)) -> ScaleReport:
    """Measure everything and write ``reports/bench_scale.{json,md}``.

    Each distractor model gets its own throwaway server and SQLite file, removed after it, so
    one model's million vectors do not crowd the next one's memory.
    """
    from toolchain.bench.pgserver import start_local_server

    report = ScaleReport(sizes=list(sizes), models=list(models), cpu=machine.cpu_model(),
                         isa=machine.isa(), cores=core_count(), real_people=0,
                         real_train_faces=0, real_val_faces=0)

    def save() -> None:
        write_json(layout.reports_dir / "bench_scale.json", asdict(report))
        write_text(layout.reports_dir / "bench_scale.md", markdown(report))

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        measure_batch(layout, report, Path(tmp))
        save()
        real = real_faces(layout)
        describe_real(real, report, Path(tmp))
        for model in models:
            work = Path(tmp) / model
            work.mkdir()
            server = start_local_server(settings=SERVER_SETTINGS)
            try:
                measure_search(real, model, sizes, report, work, f"{server.url}&gallery=scale",
                               save)
            finally:
                server.stop()
                shutil.rmtree(work)
    return report


def markdown(report: ScaleReport) -> str:
    """The report as markdown tables."""
    lines = [
        "# Gallery search at scale, enrollment, batch recognition",
        "",
        f"CPU: {report.cpu} ({', '.join(report.isa) or 'features unknown'}), "
        f"{report.cores} cores.",
        "",
        f"{report.real_train_faces} real train faces of {report.real_people} people plus "
        "synthetic distractor identities, one embedding each, of each model: "
        + "; ".join(f"{m}: {DISTRACTOR_MODELS[m].description}" for m in report.models)
        + f". Probes: the {report.real_val_faces} real val faces (real; in the models that hold "
        "the real faces), "
        f"{SYNTHETIC_QUERIES} second photos of enrolled distractors (enrolled) and "
        f"{SYNTHETIC_QUERIES} identities not enrolled (new); pgvector exact times about "
        f"{SCAN_QUERIES} of them. Recall@1 is against the exact search; found is the share "
        "whose top-1 person is their own.",
        "",
        "| distractors | identities | backend | ef_search | probes | p50 ms | p99 ms "
        "| recall@1 real | enrolled | new | found real | found enrolled |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def share(values: dict[str, float], kind: str) -> str:
        return f"{values[kind]:.4f}" if kind in values else ""

    lines += [f"| {r.model} | {r.size:,} | {r.backend} | {r.ef_search or ''} | {r.queries} "
              f"| {r.p50_ms:.2f} | {r.p99_ms:.2f} | {share(r.recall_at_1, 'real')} "
              f"| {share(r.recall_at_1, 'enrolled')} | {share(r.recall_at_1, 'new')} "
              f"| {share(r.found, 'real')} | {share(r.found, 'enrolled')} |"
              for r in report.search]
    lines += ["", "| distractors | identities | backend | rows added | seconds | rows/s "
              "| HNSW build s | add into the index, rows/s |",
              "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in report.build:
        index = "" if r.index_seconds is None else f"{r.index_seconds:.1f}"
        indexed = "" if r.indexed_add_rows_per_s is None else f"{r.indexed_add_rows_per_s:,.0f}"
        lines.append(f"| {r.model} | {r.size:,} | {r.backend} | {r.rows:,} | {r.seconds:.1f} "
                     f"| {r.rows_per_s:,.0f} | {index} | {indexed} |")
    lines += ["", "| job | photos | seconds (whole process) | photos/s |",
              "| --- | ---: | ---: | ---: |"]
    lines += [f"| {b.label} | {b.photos} | {b.seconds:.1f} | {b.photos_per_s:.2f} |"
              for b in report.batch]
    lines += ["", *(f"- {note}" for note in report.notes)]
    return "\n".join(lines) + "\n"
