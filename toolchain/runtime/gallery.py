"""The face gallery: a SQLite file of enrolled people and their embeddings, bound to one model.

Schema (``SCHEMA_VERSION`` 1):

- ``meta(key, value)``: ``schema_version``, ``model_fingerprint`` (sha256 of the ONNX file whose
  vectors the gallery holds), ``dim``, ``created``, and ``threshold`` / ``threshold_source`` once
  ``facenet evaluate --store-threshold`` calibrated one.
- ``people(id, name UNIQUE, created)``.
- ``embeddings(id, person_id, vector BLOB float32 little-endian, source, image_sha256, box_x,
  box_y, box_w, box_h, score, model_fingerprint, created)`` with ``UNIQUE(image_sha256, box_*)``:
  enrolling the same face of the same photo again is a no-op, whatever name it is enrolled under.

A new gallery appears complete or not at all (see ``Gallery._create``). Writes are one
``BEGIN IMMEDIATE`` transaction each (a whole enroll batch, an import), the journal is WAL and a
busy timeout lets a reader and a writer share the file. Distances are Euclidean
between unit vectors (0 = identical, 2 = opposite).

Matching: by default a person is as close as the NEAREST of their embeddings. Photos of one person
differ in pose, lighting, age and expression, and their embeddings spread out; a query photo
resembles some of them much more than others. The mean of the spread ("centroid") is a blur that
may sit far from every real photo, so one unusual enrollment photo drags it away from the others.
``MatchMode.CENTROID`` is offered for galleries with many clean photos per person, where the mean
averages out noise.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import hashlib
import json
import logging
import math
import os
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.atomic import write_json
from toolchain.errors import InputError, IntegrityError
from toolchain.preprocess import l2_normalize

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
EXPORT_FORMAT = "facenet-toolchain-gallery"
BUSY_TIMEOUT_S = 10.0
BOX_DECIMALS = 2

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE people (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE TABLE embeddings (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    source TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    box_x REAL NOT NULL,
    box_y REAL NOT NULL,
    box_w REAL NOT NULL,
    box_h REAL NOT NULL,
    score REAL,
    model_fingerprint TEXT NOT NULL,
    created TEXT NOT NULL,
    UNIQUE (image_sha256, box_x, box_y, box_w, box_h)
);
CREATE INDEX embeddings_person ON embeddings(person_id);
"""


class MatchMode(str, enum.Enum):
    """How a query is compared with a person's embeddings."""

    NEAREST = "nearest"
    CENTROID = "centroid"


@dataclass(frozen=True)
class Entry:
    """One face embedding to store (or read back) with where it came from."""

    name: str
    vector: np.ndarray = field(repr=False)
    source: str
    image_sha256: str
    box: tuple[float, float, float, float]
    score: float | None = None


@dataclass(frozen=True)
class AddResult:
    """What :meth:`Gallery.add` did."""

    added: list[Entry]
    duplicates: list[tuple[Entry, str]]
    """Entries already in the gallery, each with the name it is enrolled under."""


@dataclass(frozen=True)
class Person:
    """A summary row of ``facenet gallery list``."""

    name: str
    embeddings: int
    photos: int
    created: str


@dataclass(frozen=True)
class Candidate:
    """A gallery person and its distance to a query face."""

    name: str
    distance: float


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _canonical_box(box: Sequence[float]) -> tuple[float, float, float, float]:
    x, y, w, h = (round(float(v), BOX_DECIMALS) for v in box)
    return x, y, w, h


def _blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


class Gallery:
    """An open gallery file. Use :meth:`open`; close it (or use it as a context manager)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, meta: dict[str, str]):
        self.path = path
        self._conn = conn
        self._meta = meta
        self._cache: tuple[list[str], np.ndarray, np.ndarray] | None = None

    @classmethod
    def open(
        cls, path: Path | str, *, fingerprint: str | None = None, dim: int = 128,
        create: bool = False,
    ) -> Gallery:
        """Open the gallery at ``path``.

        Args:
            path: The SQLite file.
            fingerprint: The model the caller embeds with; a gallery made with another is refused.
                ``None`` skips the check (listing, removing, exporting need no model).
            dim: Embedding size recorded when the gallery is created.
            create: Create the gallery if the file does not exist (``fingerprint`` required).

        Raises:
            InputError: missing (and not ``create``), not a SQLite file, not a facenet gallery,
                unreadable, or locked.
            IntegrityError: made with a different model.
        """
        path = Path(path)
        exists = path.exists()
        if not exists and not create:
            raise InputError(
                f"gallery {path} does not exist; enroll faces first (`facenet enroll`)"
            )
        if path.is_dir():
            raise InputError(f"gallery {path} is a directory, not a SQLite file")
        if not exists:
            if fingerprint is None:
                raise ValueError("creating a gallery needs the model fingerprint")
            cls._create(path, fingerprint, dim)
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True,
                                   timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise InputError(f"gallery {path}: cannot open ({exc})") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if "meta" not in cls._tables(conn):
                raise InputError(
                    f"gallery {path}: a SQLite file but not a facenet gallery"
                    if path.stat().st_size else
                    f"gallery {path} is an empty file; remove it or pass another --gallery"
                )
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise InputError(f"gallery {path}: not a readable facenet gallery ({exc})") from exc
        except BaseException:
            conn.close()
            raise
        gallery = cls(path, conn, meta)
        try:
            gallery._check(fingerprint)
        except BaseException:
            conn.close()
            raise
        return gallery

    @staticmethod
    def _tables(conn: sqlite3.Connection) -> set[str]:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    @classmethod
    def _create(cls, path: Path, fingerprint: str, dim: int) -> None:
        """Create a complete gallery at ``path`` unless one appears there first.

        The schema is written into a private file next to ``path``, switched to WAL and closed,
        then hard-linked into place: the link fails if ``path`` exists, so concurrent first
        enrollments agree on one gallery, and nobody ever opens a half-created one. (Creating
        in place would switch a shared file to WAL, a read-then-write upgrade for which SQLite
        returns "database is locked" without waiting.)
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        staging = Path(name)
        try:
            conn = sqlite3.connect(staging, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [
                        ("schema_version", str(SCHEMA_VERSION)),
                        ("model_fingerprint", fingerprint),
                        ("dim", str(dim)),
                        ("created", _now()),
                    ],
                )
                conn.execute("COMMIT")
            finally:
                conn.close()
            with contextlib.suppress(FileExistsError):
                os.link(staging, path)
        except (OSError, sqlite3.Error) as exc:
            raise InputError(f"gallery {path}: cannot create ({exc})") from exc
        finally:
            staging.unlink(missing_ok=True)

    def _check(self, fingerprint: str | None) -> None:
        version = self._meta.get("schema_version")
        if version != str(SCHEMA_VERSION):
            raise InputError(
                f"gallery {self.path}: schema version {version}, this toolchain reads "
                f"{SCHEMA_VERSION}"
            )
        if fingerprint is not None and fingerprint != self.fingerprint:
            raise IntegrityError(
                f"gallery {self.path} holds embeddings of model sha256 {self.fingerprint[:16]}…, "
                f"the loaded model is sha256 {fingerprint[:16]}…; vectors of different models "
                "cannot be compared: enroll again into a new gallery (--gallery PATH)"
            )

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def fingerprint(self) -> str:
        """sha256 of the ONNX model whose embeddings the gallery holds."""
        return self._meta["model_fingerprint"]

    @property
    def dim(self) -> int:
        """Embedding size."""
        return int(self._meta.get("dim", "128"))

    @property
    def created(self) -> str:
        """UTC creation time (ISO 8601)."""
        return self._meta.get("created", "")

    @property
    def threshold(self) -> float | None:
        """The calibrated match threshold stored by ``facenet evaluate --store-threshold``."""
        value = self._meta.get("threshold")
        return float(value) if value is not None else None

    @property
    def threshold_source(self) -> str | None:
        """Where :attr:`threshold` came from."""
        return self._meta.get("threshold_source")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise InputError(f"gallery {self.path}: cannot write ({exc})") from exc
        try:
            yield self._conn
        except sqlite3.Error as exc:
            self._rollback()
            raise InputError(f"gallery {self.path}: cannot write ({exc})") from exc
        except BaseException:
            self._rollback()
            raise
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise InputError(f"gallery {self.path}: cannot write ({exc})") from exc
        finally:
            self._cache = None

    def _rollback(self) -> None:
        """Roll back the open transaction (SQLite may already have ended it on an error)."""
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def _validate(self, entry: Entry) -> np.ndarray:
        vector = np.asarray(entry.vector, dtype=np.float32).reshape(-1)
        if vector.shape != (self.dim,):
            raise InputError(f"{entry.source}: embedding for {entry.name!r} has {vector.size} "
                             f"values; the gallery holds {self.dim}-d vectors")
        if not np.all(np.isfinite(vector)):
            raise InputError(f"{entry.source}: embedding for {entry.name!r} has non-finite values")
        if not entry.name.strip():
            raise InputError(f"{entry.source}: empty person name")
        return vector

    def add(self, entries: Sequence[Entry], fingerprint: str | None = None) -> AddResult:
        """Store ``entries`` in ONE transaction; faces already stored are skipped.

        Args:
            entries: Embeddings to add (vectors are L2-normalized on the way in).
            fingerprint: The model the vectors come from, recorded per row (default: the gallery's).

        Raises:
            InputError: a vector of the wrong size or with non-finite values (nothing is written).
        """
        vectors = l2_normalize(np.stack([self._validate(e) for e in entries])) if entries else []
        added: list[Entry] = []
        duplicates: list[tuple[Entry, str]] = []
        created = _now()
        with self._transaction() as conn:
            for entry, vector in zip(entries, vectors, strict=True):
                name = entry.name.strip()
                conn.execute(
                    "INSERT INTO people (name, created) VALUES (?, ?) ON CONFLICT(name) DO NOTHING",
                    (name, created),
                )
                person_id = conn.execute(
                    "SELECT id FROM people WHERE name = ?", (name,)
                ).fetchone()[0]
                box = _canonical_box(entry.box)
                cursor = conn.execute(
                    "INSERT INTO embeddings (person_id, vector, source, image_sha256, box_x, box_y,"
                    " box_w, box_h, score, model_fingerprint, created)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT(image_sha256, box_x, box_y, box_w, box_h) DO NOTHING",
                    (person_id, _blob(vector), entry.source, entry.image_sha256, *box,
                     entry.score, fingerprint or self.fingerprint, created),
                )
                if cursor.rowcount == 1:
                    added.append(entry)
                else:
                    owner = conn.execute(
                        "SELECT p.name FROM embeddings e JOIN people p ON p.id = e.person_id"
                        " WHERE e.image_sha256 = ? AND e.box_x = ? AND e.box_y = ?"
                        " AND e.box_w = ? AND e.box_h = ?",
                        (entry.image_sha256, *box),
                    ).fetchone()[0]
                    duplicates.append((entry, owner))
            conn.execute("DELETE FROM people WHERE id NOT IN (SELECT person_id FROM embeddings)")
        return AddResult(added=added, duplicates=duplicates)

    def people(self) -> list[Person]:
        """Every enrolled person with counts, by name."""
        rows = self._conn.execute(
            "SELECT p.name, COUNT(e.id), COUNT(DISTINCT e.image_sha256), p.created"
            " FROM people p LEFT JOIN embeddings e ON e.person_id = p.id"
            " GROUP BY p.id ORDER BY p.name"
        ).fetchall()
        return [Person(name=r[0], embeddings=r[1], photos=r[2], created=r[3]) for r in rows]

    def entries(self) -> list[Entry]:
        """Every stored embedding, by person name then insertion order."""
        rows = self._conn.execute(
            "SELECT p.name, e.vector, e.source, e.image_sha256, e.box_x, e.box_y, e.box_w,"
            " e.box_h, e.score FROM embeddings e JOIN people p ON p.id = e.person_id"
            " ORDER BY p.name, e.id"
        ).fetchall()
        return [
            Entry(name=r[0], vector=np.frombuffer(r[1], dtype="<f4").astype(np.float32),
                  source=r[2], image_sha256=r[3], box=(r[4], r[5], r[6], r[7]), score=r[8])
            for r in rows
        ]

    def remove(self, name: str) -> int:
        """Remove a person and all their embeddings; return how many embeddings went.

        Raises:
            InputError: nobody of that name is enrolled.
        """
        with self._transaction() as conn:
            row = conn.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise InputError(f"gallery {self.path}: no person named {name!r}")
            count = conn.execute(
                "DELETE FROM embeddings WHERE person_id = ?", (row[0],)
            ).rowcount
            conn.execute("DELETE FROM people WHERE id = ?", (row[0],))
        return int(count)

    def set_threshold(self, value: float, source: str) -> None:
        """Store a calibrated match threshold (used by recognize when none is given)."""
        if not math.isfinite(value) or value <= 0:
            raise InputError(f"threshold {value} is not a positive number")
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [("threshold", repr(float(value))), ("threshold_source", source)],
            )
        self._meta.update(threshold=repr(float(value)), threshold_source=source)

    def _matrix(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Names, ``(E, D)`` vectors sorted by person, and the start row of each person."""
        if self._cache is None:
            names: list[str] = []
            starts: list[int] = []
            vectors: list[np.ndarray] = []
            for entry in self.entries():
                if not names or names[-1] != entry.name:
                    names.append(entry.name)
                    starts.append(len(vectors))
                vectors.append(entry.vector)
            matrix = np.stack(vectors) if vectors else np.zeros((0, self.dim), np.float32)
            self._cache = (names, matrix, np.asarray(starts, dtype=np.intp))
        return self._cache

    def match(
        self, queries: np.ndarray, k: int = 3, mode: MatchMode = MatchMode.NEAREST
    ) -> list[list[Candidate]]:
        """The ``k`` closest people to each query embedding, closest first.

        Args:
            queries: ``(M, D)`` L2-normalized embeddings.
            k: How many people to return per query.
            mode: Distance to a person's nearest embedding, or to their mean direction.
        """
        names, matrix, starts = self._matrix()
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if not names or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        if mode is MatchMode.CENTROID:
            sums = np.add.reduceat(matrix, starts, axis=0)
            per_person = pairwise_distances(queries, l2_normalize(sums))
        else:
            per_person = np.minimum.reduceat(pairwise_distances(queries, matrix), starts, axis=1)
        order = np.argsort(per_person, axis=1, kind="stable")[:, :k]
        return [
            [Candidate(names[j], float(per_person[i, j])) for j in order[i]]
            for i in range(len(queries))
        ]


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances ``(len(a), len(b))`` between rows of two unit-vector matrices."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(squared, 0.0)).astype(np.float32)


@dataclass(frozen=True)
class ImportData:
    """A parsed, validated import file, not yet written anywhere."""

    entries: list[Entry]
    fingerprint: str | None
    """The model the vectors come from (``None`` for the seed's ``DataBase.json``)."""
    dim: int
    threshold: float | None
    kind: str


def _number_list(value: Any, where: str) -> np.ndarray:
    if not isinstance(value, list) or not value:
        raise InputError(f"{where}: expected a list of numbers")
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in value):
        raise InputError(f"{where}: expected only numbers")
    array = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(array)) or not np.any(array):
        raise InputError(f"{where}: values must be finite and not all zero")
    return array.astype(np.float32)


def _parse_seed(doc: dict[str, Any], path: Path) -> ImportData:
    entries: list[Entry] = []
    for name, value in doc.items():
        where = f"{path}: {name!r}"
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"{path}: empty person name")
        nested = isinstance(value, list) and bool(value) and isinstance(value[0], list)
        rows = value if nested else [value]
        for i, row in enumerate(rows):
            vector = _number_list(row, where)
            digest = hashlib.sha256(_blob(l2_normalize(vector))).hexdigest()
            entries.append(Entry(name=name.strip(), vector=vector,
                                 source=f"{path.name}#{name}[{i}]",
                                 image_sha256=f"vector:{digest}", box=(0.0, 0.0, 0.0, 0.0)))
    if not entries:
        raise InputError(f"{path}: no people in the file")
    dims = {e.vector.size for e in entries}
    if len(dims) != 1:
        raise InputError(f"{path}: vectors of different sizes {sorted(dims)}")
    return ImportData(entries, None, dims.pop(), None, "seed DataBase.json")


def _parse_export(doc: dict[str, Any], path: Path) -> ImportData:
    try:
        if doc.get("schema_version") != SCHEMA_VERSION:
            raise InputError(f"{path}: export schema {doc.get('schema_version')} is not "
                             f"{SCHEMA_VERSION}")
        fingerprint = doc["model_fingerprint"]
        dim = doc["dim"]
        threshold = doc.get("threshold")
        if not isinstance(fingerprint, str) or not isinstance(dim, int) or dim <= 0:
            raise InputError(f"{path}: bad model_fingerprint or dim")
        if threshold is not None and (isinstance(threshold, bool)
                                      or not isinstance(threshold, int | float)):
            raise InputError(f"{path}: bad threshold {threshold!r}")
        entries: list[Entry] = []
        for person in doc["people"]:
            name = person["name"]
            if not isinstance(name, str) or not name.strip():
                raise InputError(f"{path}: empty person name")
            for i, item in enumerate(person["embeddings"]):
                where = f"{path}: {name!r} embedding {i}"
                vector = _number_list(item["vector"], where)
                if vector.size != dim:
                    raise InputError(f"{where}: {vector.size} values, the file says dim {dim}")
                box = item["box"]
                if (not isinstance(box, list) or len(box) != 4
                        or not all(isinstance(v, int | float) for v in box)):
                    raise InputError(f"{where}: box must be [x, y, w, h]")
                score = item.get("score")
                if score is not None and not isinstance(score, int | float):
                    raise InputError(f"{where}: bad score {score!r}")
                sha, source = item["image_sha256"], item["source"]
                if not isinstance(sha, str) or not sha or not isinstance(source, str):
                    raise InputError(f"{where}: bad image_sha256 or source")
                entries.append(Entry(name=name.strip(), vector=vector, source=source,
                                     image_sha256=sha, box=(box[0], box[1], box[2], box[3]),
                                     score=score))
    except (KeyError, TypeError, AttributeError) as exc:
        raise InputError(
            f"{path}: not a valid gallery export ({type(exc).__name__}: {exc})"
        ) from exc
    return ImportData(entries, fingerprint, dim,
                      float(threshold) if threshold is not None else None, "gallery export")


def parse_import(path: Path) -> ImportData:
    """Read and validate a ``facenet gallery export`` file or the seed's ``DataBase.json``.

    Raises:
        InputError: unreadable, not JSON, or not one of the two formats (nothing is imported).
    """
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a JSON object")
    if doc.get("format") == EXPORT_FORMAT:
        return _parse_export(doc, path)
    return _parse_seed(doc, path)


def export_json(gallery: Gallery, path: Path) -> int:
    """Write every embedding of ``gallery`` to ``path`` (atomically); return how many."""
    people: dict[str, list[dict[str, Any]]] = {}
    entries = gallery.entries()
    for entry in entries:
        people.setdefault(entry.name, []).append({
            "vector": [float(v) for v in entry.vector],
            "source": entry.source,
            "image_sha256": entry.image_sha256,
            "box": list(entry.box),
            "score": entry.score,
        })
    write_json(path, {
        "format": EXPORT_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "model_fingerprint": gallery.fingerprint,
        "dim": gallery.dim,
        "threshold": gallery.threshold,
        "people": [{"name": name, "embeddings": items} for name, items in people.items()],
    })
    return len(entries)
