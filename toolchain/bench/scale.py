"""``facenet bench --scale``: gallery search at 10k, 100k and 1M identities, enrollment rows/s
into each backend, and batch photos/s on one process vs Ray.

The gallery holds the real faces of the 5-celebrity ``train/`` photos (embedded here by the
recognizer, one face per photo, as ``facenet enroll --largest`` would) plus synthetic distractor
identities, one embedding each, as MegaFace adds distractors to a probe set. The distractors are
drawn from a Gaussian fitted to the real embeddings (their mean and covariance, plus a little
isotropic variance so the covariance is full-rank) and normalized: they crowd the same region of
the sphere as real faces, where random unit vectors would sit near-orthogonal to everything and
make search trivially easy.

Queries: every real ``val/`` face (each must still find its own person among the distractors)
plus synthetic queries from the same Gaussian. For each size and backend: p50/p99 latency of one
query (top 3 people), and recall@1 against the exact search (the in-memory exact ranking, which
is the SQLite backend's). Backends: SQLite exact (the vectors in memory), pgvector exact (a
sequential scan in the database, re-ranked) and pgvector HNSW (the index's candidates re-ranked
exactly). PostgreSQL is a throwaway server (:mod:`toolchain.runtime.gallery.local_server`).

Batch: ``facenet recognize --json`` against ``facenet batch recognize --ray local --cpus 1`` and
``--cpus 2`` on the same photos (the 5-celebrity photos, :data:`BATCH_ROUNDS` times over), each a
fresh process timed whole (start-up included). On a 2-core machine the point is Ray's overhead and
the scaling from 1 to 2 CPUs, not a speedup over one process that already uses both cores.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from toolchain.core.atomic import write_json, write_text
from toolchain.core.metrics import pairwise_distances
from toolchain.core.paths import Layout
from toolchain.runtime.gallery import Entry, Gallery
from toolchain.runtime.gallery.postgres import PostgresGallery
from toolchain.runtime.gallery.vectors import Candidate

log = logging.getLogger(__name__)

SIZES = (10_000, 100_000, 1_000_000)
"""Identities in the gallery (real people plus distractors)."""
SYNTHETIC_QUERIES = 200
"""Synthetic queries per size (the real val faces come on top)."""
SCAN_QUERIES = 50
"""Queries timed for the pgvector sequential scan (it reads every vector per query)."""
ADD_BATCH = 10_000
"""Entries per ``Gallery.add`` transaction while building."""
INDEXED_ADD_ROWS = 1_000
"""Rows added one batch at a time into a built HNSW index (the incremental enrollment rate)."""
ISOTROPIC = 1.0
"""Share of the mean variance added on the diagonal of the fitted covariance: the five real
people alone would make distractors closer to each other than different real people are (the
report gives both medians)."""
FINGERPRINT = "5" * 64
"""The scale galleries hold embeddings of the real model but are throwaways: a fixed stand-in."""
K = 3
BATCH_ROUNDS = 3
"""The 5-celebrity photos are recognized this many times over in the batch rows, so start-up
weighs less against the steady rate."""


@dataclass(frozen=True)
class SearchRow:
    """Latency and quality of one backend's search at one gallery size."""

    backend: str
    size: int
    queries: int
    p50_ms: float
    p99_ms: float
    recall_at_1: float
    """Share of queries whose top-1 person is the exact search's."""
    real_found: float
    """Share of the real val faces whose top-1 person is their own."""


@dataclass(frozen=True)
class BuildRow:
    """Building one backend's gallery of one size."""

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
    real_people: int
    real_train_faces: int
    real_val_faces: int
    search: list[SearchRow] = field(default_factory=list)
    build: list[BuildRow] = field(default_factory=list)
    batch: list[BatchRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RealFaces:
    """The real embeddings: train entries (enrolled) and labelled val queries."""

    train: list[Entry]
    val: np.ndarray
    val_names: list[str]


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


def distractors(real: np.ndarray, count: int, seed: int = 14) -> np.ndarray:
    """``count`` unit vectors from a Gaussian fitted to the ``real`` unit embeddings."""
    mean = real.mean(axis=0)
    cov = np.cov(real, rowvar=False)
    cov += np.eye(real.shape[1]) * ISOTROPIC * float(np.trace(cov)) / real.shape[1]
    rng = np.random.default_rng(seed)
    out = np.empty((count, real.shape[1]), np.float32)
    for start in range(0, count, 100_000):
        chunk = rng.multivariate_normal(mean, cov, size=min(100_000, count - start))
        out[start:start + len(chunk)] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out


def distractor_entries(vectors: np.ndarray, first: int) -> list[Entry]:
    """One identity per vector, named and keyed by its number."""
    return [Entry(f"distractor {first + i:07d}", vector, "synthetic distractor",
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


def _search_row(backend: str, size: int, results: Sequence[Sequence[Candidate]],
                times: np.ndarray, exact: Sequence[Sequence[Candidate]],
                names: Sequence[str]) -> SearchRow:
    top = [r[0].name if r else None for r in results]
    recall = float(np.mean([t == (e[0].name if e else None)
                            for t, e in zip(top, exact, strict=False)]))
    found = float(np.mean([t == n for t, n in zip(top, names, strict=False)]))
    return SearchRow(backend, size, len(results), round(float(np.percentile(times, 50)), 3),
                     round(float(np.percentile(times, 99)), 3), round(recall, 4),
                     round(found, 4))


def _build(gallery: Gallery, entries: Sequence[Entry], size: int) -> BuildRow:
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
    return BuildRow(gallery.backend, size, len(entries), round(seconds, 2),
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


def measure_search(layout: Layout, sizes: Sequence[int], report: ScaleReport, work: Path,
                   save: Callable[[], None]) -> None:
    """Build both backends up through ``sizes`` and time their searches at each size;
    ``save`` writes the report so far after each size (a million takes a while)."""
    from toolchain.runtime.gallery.local_server import start_local_server

    real = real_faces(layout)
    report.real_people = len({e.name for e in real.train})
    report.real_train_faces, report.real_val_faces = len(real.train), len(real.val)
    train = np.stack([e.vector for e in real.train])
    pool = distractors(train, max(sizes) - report.real_people + SYNTHETIC_QUERIES)
    synthetic = pool[-SYNTHETIC_QUERIES:]
    queries = np.concatenate([real.val, synthetic]).astype(np.float32)
    names = real.val_names
    same = np.array([[a.name == b.name for b in real.train] for a in real.train])
    real_pairs = pairwise_distances(train, train)[np.triu_indices(len(train), 1)]
    impostor = float(np.median(real_pairs[~same[np.triu_indices(len(train), 1)]]))
    half = min(len(pool) // 2, 5_000)
    fake = float(np.median(pairwise_distances(pool[:half], pool[half:2 * half])))
    report.notes.append(f"median distance between faces of different real people "
                        f"{impostor:.3f}, between distractors {fake:.3f}")
    with Gallery.open(work / "real.db", fingerprint=FINGERPRINT, create=True) as alone:
        alone.add(real.train)
        found = np.mean([c[0].name == n for c, n in zip(alone.match(real.val, k=1), names,
                                                          strict=True)])
    report.notes.append(f"real val faces whose nearest person is their own with no "
                        f"distractors: {found:.4f} ({len(names)} faces)")
    server = start_local_server()
    try:
        sqlite = Gallery.open(work / "scale.db", fingerprint=FINGERPRINT, create=True)
        pg = Gallery.open(f"{server.url}&gallery=scale", fingerprint=FINGERPRINT, create=True)
        assert isinstance(pg, PostgresGallery)
        stored = 0
        spare = distractors(train, INDEXED_ADD_ROWS, seed=15)
        for size in sizes:
            first = max(0, stored - report.real_people)
            new = (real.train if stored == 0 else []) + distractor_entries(
                pool[first:size - report.real_people], first)
            report.build.append(_build(sqlite, new, size))
            row = _build(pg, new, size)
            report.build.append(BuildRow(
                row.backend, size, row.rows, row.seconds, row.rows_per_s, row.index_seconds,
                _indexed_add(pg, spare, len(pool))))
            stored = size
            log.info("scale %d: built", size)
            exact, times = _timed(lambda q: sqlite.match(q[None], k=K)[0], queries)
            report.search.append(_search_row("sqlite exact", size, exact, times, exact, names))
            for search, label, count in (("scan", "pgvector exact", SCAN_QUERIES),
                                         ("index", "pgvector HNSW", len(queries))):
                pg.search = search  # type: ignore[assignment]
                results, times = _timed(lambda q: pg.match(q[None], k=K)[0], queries[:count])
                report.search.append(_search_row(label, size, results, times, exact[:count],
                                                 names))
            pg.search = "auto"
            log.info("scale %d: searched", size)
            save()
        sqlite.close()
        pg.close()
    finally:
        server.stop()


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
    photos = sorted(p for p in dataset.rglob("*") if p.is_file()) * BATCH_ROUNDS
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
            report.notes.append(f"{label} failed: {done.stderr.strip()[-300:]}")
            continue
        report.batch.append(BatchRow(label, len(photos), round(seconds, 2),
                                     round(len(photos) / seconds, 2)))


def run_scale(layout: Layout, sizes: Sequence[int] = SIZES) -> ScaleReport:
    """Measure everything and write ``reports/bench_scale.{json,md}``."""
    report = ScaleReport(sizes=list(sizes), real_people=0, real_train_faces=0, real_val_faces=0)

    def save() -> None:
        write_json(layout.reports_dir / "bench_scale.json", asdict(report))
        write_text(layout.reports_dir / "bench_scale.md", markdown(report))

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        measure_batch(layout, report, Path(tmp))
        save()
        measure_search(layout, sizes, report, Path(tmp), save)
    return report


def markdown(report: ScaleReport) -> str:
    """The report as markdown tables."""
    lines = [
        "# Gallery search at scale, enrollment, batch recognition",
        "",
        f"{report.real_train_faces} real train faces of {report.real_people} people plus "
        "synthetic distractor identities (one embedding each, drawn from a Gaussian fitted to "
        f"the real embeddings); queries: the {report.real_val_faces} real val faces and "
        f"{SYNTHETIC_QUERIES} synthetic ones (pgvector exact: the first {SCAN_QUERIES}).",
        "",
        "| identities | backend | queries | p50 ms | p99 ms | recall@1 vs exact "
        "| real val faces found |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {r.size:,} | {r.backend} | {r.queries} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
              f"| {r.recall_at_1:.4f} | {r.real_found:.4f} |" for r in report.search]
    lines += ["", "| identities | backend | rows added | seconds | rows/s | HNSW build s "
              "| add into the index, rows/s |", "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in report.build:
        index = "" if r.index_seconds is None else f"{r.index_seconds:.1f}"
        indexed = "" if r.indexed_add_rows_per_s is None else f"{r.indexed_add_rows_per_s:,.0f}"
        lines.append(f"| {r.size:,} | {r.backend} | {r.rows:,} | {r.seconds:.1f} "
                     f"| {r.rows_per_s:,.0f} | {index} | {indexed} |")
    lines += ["", "| job | photos | seconds (whole process) | photos/s |",
              "| --- | ---: | ---: | ---: |"]
    lines += [f"| {b.label} | {b.photos} | {b.seconds:.1f} | {b.photos_per_s:.2f} |"
              for b in report.batch]
    lines += ["", *(f"- {note}" for note in report.notes)]
    return "\n".join(lines) + "\n"
