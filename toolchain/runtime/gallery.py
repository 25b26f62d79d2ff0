"""The face gallery: a SQLite file of enrolled people and their embeddings, bound to one model.

Schema (``SCHEMA_VERSION`` 1):

- ``meta(key, value)``: ``schema_version``, ``model_fingerprint`` (sha256 of the ONNX file whose
  vectors the gallery holds), ``dim``, ``created``, and ``threshold`` / ``threshold_source`` once
  ``facenet evaluate --store-threshold`` calibrated one.
- ``people(id, name UNIQUE, created)``.
- ``embeddings(id, person_id, vector BLOB float32 little-endian, source, image_sha256, box_x,
  box_y, box_w, box_h, score, model_fingerprint, created)`` with ``UNIQUE(image_sha256, box_*)``:
  enrolling the same face of the same photo again is a no-op, whatever name it is enrolled under.

Everything read back is checked the way it was checked on the way in: a stored vector that is not
a ``dim``-d unit vector, or a stored threshold that is not a distance in (0, 2], means the file was
edited or damaged (:class:`IntegrityError`); a damaged SQLite file is an :class:`InputError` at
open (``PRAGMA quick_check``) or at whatever read meets the damage.

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
import numbers
import os
import re
import sqlite3
import stat
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.core.atomic import sha256_file, write_json
from toolchain.core.errors import InputError, IntegrityError, MissingArtifactError
from toolchain.core.metrics import pairwise_distances
from toolchain.core.preprocess import l2_normalize

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
EXPORT_FORMAT = "facenet-toolchain-gallery"
BUSY_TIMEOUT_S = 10.0
BOX_DECIMALS = 2
MAX_DISTANCE = 2.0
"""Largest Euclidean distance between unit vectors (opposite directions): thresholds lie in
(0, MAX_DISTANCE]."""
MIN_RAW_NORM = 1e-3
"""Smallest norm of a vector given to the gallery before normalization. FaceNet's raw embeddings
have norms of 8 to 13 and unit ones 1; a vector shorter than this is no face embedding. (A
near-zero vector normalized with a clamped norm stays near zero, at distance 1 from EVERY face:
under the usual thresholds it would be named in every photo.)"""
UNIT_NORM_TOLERANCE = 1e-3
"""How far from 1 the norm of a stored (float32, unit) vector may be: rounding is ~1e-7."""
FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_IMPORT_BYTES = 256 * 2**20
"""Largest import file read (an export of ~100,000 embeddings), so a huge file fails fast."""
_SHA256 = re.compile(r"[0-9a-f]{64}")

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

    @property
    def conflicts(self) -> list[tuple[Entry, str]]:
        """The duplicates asked for under ANOTHER name than the one the face is enrolled under.

        The face keeps its first name (one face, one person); a caller should warn about each.
        """
        return [(entry, owner) for entry, owner in self.duplicates
                if owner != entry.name.strip()]


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


def check_threshold(value: object, where: str = "threshold") -> float:
    """``value`` as a match threshold, or :class:`InputError` saying why it cannot be one.

    A threshold is a Euclidean distance between unit vectors: a real number in (0, 2]. Zero would
    match nothing but the very same vector, anything above 2 matches everyone, NaN nobody.

    Args:
        value: The candidate (a number; booleans and strings are refused).
        where: What the message names (a file and key, or a command-line option).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{where} {value!r} is not a number; a threshold is a distance in "
                         f"(0, {MAX_DISTANCE:g}]")
    threshold = float(value)
    if not 0.0 < threshold <= MAX_DISTANCE:
        raise InputError(f"{where} {threshold!r} is outside (0, {MAX_DISTANCE:g}]: distances "
                         f"between unit vectors run from 0 (identical) to {MAX_DISTANCE:g} "
                         "(opposite)")
    return threshold


def unit_embedding(values: Any, dim: int | None, where: str) -> np.ndarray:
    """``values`` as the float32 unit vector an embedder would output, or :class:`InputError`.

    Refused: a size other than ``dim`` (any size if ``None``), NaN or infinity, values beyond the
    float32 range a gallery stores, and a norm below :data:`MIN_RAW_NORM`. Normalization runs in
    float64 on values that passed, so the result is unit within float32 rounding.
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
    return (array / norm).astype(np.float32)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _sql_error(path: Path, exc: sqlite3.Error, action: str) -> InputError:
    """One line for a failed SQLite call: a damaged file, or one that is busy or unwritable."""
    if type(exc) is sqlite3.DatabaseError:
        return _corrupt(path, str(exc))
    return InputError(f"gallery {path}: cannot {action} ({_one_line(str(exc))})")


def _corrupt(path: Path, detail: str) -> InputError:
    return InputError(
        f"gallery {path}: not a readable facenet gallery, corrupt or not a SQLite file "
        f"({_one_line(detail)}); restore it from a backup or a `facenet gallery export`"
    )


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
            raise _sql_error(path, exc, "open") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if "meta" not in cls._tables(conn):
                raise InputError(
                    f"gallery {path}: a SQLite file but not a facenet gallery"
                    if path.stat().st_size else
                    f"gallery {path} is an empty file; remove it or pass another --gallery"
                )
            problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                raise _corrupt(path, "; ".join(map(str, problems)))
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.Error as exc:
            conn.close()
            raise _sql_error(path, exc, "read") from exc
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
        stored, dim = self._meta.get("model_fingerprint"), self._meta.get("dim")
        if not isinstance(stored, str) or not _SHA256.fullmatch(stored):
            raise InputError(f"gallery {self.path}: not a valid facenet gallery (model "
                             f"fingerprint {stored!r} is not a sha256)")
        if not isinstance(dim, str) or not dim.isdigit() or int(dim) <= 0:
            raise InputError(f"gallery {self.path}: not a valid facenet gallery (embedding "
                             f"size {dim!r})")
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
        return int(self._meta["dim"])

    @property
    def created(self) -> str:
        """UTC creation time (ISO 8601)."""
        return self._meta.get("created", "")

    @property
    def threshold(self) -> float | None:
        """The calibrated match threshold stored by ``facenet evaluate --store-threshold``.

        Raises:
            IntegrityError: the stored value is not a distance in (0, 2] (the file was edited).
        """
        value = self._meta.get("threshold")
        if value is None:
            return None
        try:
            return check_threshold(float(value))
        except (TypeError, ValueError, InputError) as exc:
            raise IntegrityError(
                f"gallery {self.path}: the stored threshold {value!r} is not a distance in "
                f"(0, {MAX_DISTANCE:g}]; the file was edited or damaged: calibrate again with "
                "`facenet evaluate --store-threshold`"
            ) from exc

    @property
    def threshold_source(self) -> str | None:
        """Where :attr:`threshold` came from."""
        return self._meta.get("threshold_source")

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, with SQLite errors as one-line :class:`InputError`."""
        try:
            yield self._conn
        except sqlite3.Error as exc:
            raise _sql_error(self.path, exc, "read") from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _sql_error(self.path, exc, "write") from exc
        try:
            yield self._conn
        except sqlite3.Error as exc:
            self._rollback()
            raise _sql_error(self.path, exc, "write") from exc
        except BaseException:
            self._rollback()
            raise
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise _sql_error(self.path, exc, "write") from exc
        finally:
            self._cache = None

    def _rollback(self) -> None:
        """Roll back the open transaction (SQLite may already have ended it on an error)."""
        with contextlib.suppress(sqlite3.Error):
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")

    def _vectors(self, entries: Sequence[Entry]) -> np.ndarray:
        """The unit vectors of ``entries``, each checked like an embedder's output would be."""
        for entry in entries:
            if not entry.name.strip():
                raise InputError(f"{entry.source}: empty person name")
        return np.stack([
            unit_embedding(e.vector, self.dim, f"{e.source}: embedding for {e.name!r}")
            for e in entries
        ])

    def add(self, entries: Sequence[Entry], fingerprint: str | None = None) -> AddResult:
        """Store ``entries`` in ONE transaction; faces already stored are skipped.

        Args:
            entries: Embeddings to add (raw or unit; normalized on the way in).
            fingerprint: The model the vectors come from, recorded per row (default: the gallery's).

        Raises:
            InputError: a vector of the wrong size, non-finite, beyond float32 or near zero, or an
                empty name (nothing is written).
        """
        if not entries:
            return AddResult(added=[], duplicates=[])
        vectors = self._vectors(entries)
        with self._transaction() as conn:
            return self._insert(conn, entries, vectors, fingerprint or self.fingerprint)

    def import_data(self, data: ImportData) -> AddResult:
        """Add a parsed import file, and its threshold if none is stored, in ONE transaction.

        Raises:
            InputError: vectors of another size than the gallery's, or a bad vector (nothing is
                written).
            IntegrityError: the file's vectors come from another model than the gallery's.
        """
        if data.dim != self.dim:
            raise InputError(f"{data.path}: {data.dim}-d vectors, the gallery {self.path} holds "
                             f"{self.dim}-d ones")
        self._check(data.fingerprint)
        vectors = self._vectors(data.entries)
        source = f"imported from {data.path}"
        with self._transaction() as conn:
            result = self._insert(conn, data.entries, vectors, self.fingerprint)
            stored = conn.execute("SELECT value FROM meta WHERE key = 'threshold'").fetchone()
            adopted = data.threshold if stored is None else None
            if adopted is not None:
                self._write_threshold(conn, adopted, source)
        if adopted is not None:
            self._meta.update(threshold=repr(adopted), threshold_source=source)
        return result

    def _insert(self, conn: sqlite3.Connection, entries: Sequence[Entry], vectors: np.ndarray,
                fingerprint: str) -> AddResult:
        added: list[Entry] = []
        duplicates: list[tuple[Entry, str]] = []
        created = _now()
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
                 entry.score, fingerprint, created),
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
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT p.name, COUNT(e.id), COUNT(DISTINCT e.image_sha256), p.created"
                " FROM people p LEFT JOIN embeddings e ON e.person_id = p.id"
                " GROUP BY p.id ORDER BY p.name"
            ).fetchall()
        return [Person(name=r[0], embeddings=r[1], photos=r[2], created=r[3]) for r in rows]

    def entries(self) -> list[Entry]:
        """Every stored embedding, by person name then insertion order.

        Raises:
            IntegrityError: a stored vector is not a ``dim``-d unit vector (the file was edited).
        """
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT p.name, e.vector, e.source, e.image_sha256, e.box_x, e.box_y, e.box_w,"
                " e.box_h, e.score FROM embeddings e JOIN people p ON p.id = e.person_id"
                " ORDER BY p.name, e.id"
            ).fetchall()
        size = 4 * self.dim
        for r in rows:
            if not isinstance(r[1], bytes) or len(r[1]) != size:
                self._bad_vector(r[0], f"{len(r[1]) if isinstance(r[1], bytes) else 0} bytes")
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").astype(np.float32)
        matrix = matrix.reshape(len(rows), self.dim)
        norms = np.linalg.norm(matrix.astype(np.float64), axis=1)
        bad = ~(np.abs(norms - 1.0) <= UNIT_NORM_TOLERANCE)
        if np.any(bad):
            first = int(np.argmax(bad))
            self._bad_vector(rows[first][0], f"norm {norms[first]:.3g}")
        return [
            Entry(name=r[0], vector=vector, source=r[2], image_sha256=r[3],
                  box=(r[4], r[5], r[6], r[7]), score=r[8])
            for r, vector in zip(rows, matrix, strict=True)
        ]

    def _bad_vector(self, name: str, detail: str) -> None:
        raise IntegrityError(
            f"gallery {self.path}: a stored embedding of {name!r} is not a {self.dim}-d unit "
            f"vector ({detail}); the file was edited or damaged: remove that person "
            "(`facenet gallery remove`) and enroll them again"
        )

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
        """Store a calibrated match threshold (used by recognize when none is given).

        Raises:
            InputError: ``value`` is not a distance in (0, 2] (see :func:`check_threshold`).
        """
        threshold = check_threshold(value)
        with self._transaction() as conn:
            self._write_threshold(conn, threshold, source)
        self._meta.update(threshold=repr(threshold), threshold_source=source)

    @staticmethod
    def _write_threshold(conn: sqlite3.Connection, threshold: float, source: str) -> None:
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [("threshold", repr(threshold)), ("threshold_source", source)],
        )

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
    kind: str


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    """A JSON number that is a finite float (an integer of 400 digits is not)."""
    try:
        return _is_number(value) and math.isfinite(float(value))
    except OverflowError:
        return False


def _number_list(value: Any, where: str, dim: int | None = None) -> np.ndarray:
    if not isinstance(value, list) or not value:
        raise InputError(f"{where}: expected a list of numbers")
    if not all(_is_number(v) for v in value):
        raise InputError(f"{where}: expected only numbers")
    return unit_embedding(value, dim, where)


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
            digest = hashlib.sha256(_blob(vector)).hexdigest()
            entries.append(Entry(name=name.strip(), vector=vector,
                                 source=f"{path.name}#{name}[{i}]",
                                 image_sha256=f"vector:{digest}", box=(0.0, 0.0, 0.0, 0.0)))
    if not entries:
        raise InputError(f"{path}: no people in the file")
    dims = {e.vector.size for e in entries}
    if len(dims) != 1:
        raise InputError(f"{path}: vectors of different sizes {sorted(dims)}")
    return ImportData(path, entries, None, dims.pop(), None, "seed DataBase.json")


def _parse_export(doc: dict[str, Any], path: Path) -> ImportData:
    try:
        if doc.get("schema_version") != SCHEMA_VERSION:
            raise InputError(f"{path}: export schema {doc.get('schema_version')} is not "
                             f"{SCHEMA_VERSION}")
        fingerprint = doc["model_fingerprint"]
        dim = doc["dim"]
        threshold = doc.get("threshold")
        if (not isinstance(fingerprint, str) or not _SHA256.fullmatch(fingerprint)
                or not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0):
            raise InputError(f"{path}: bad model_fingerprint or dim")
        if threshold is not None:
            threshold = check_threshold(threshold, f"{path}: threshold")
        entries: list[Entry] = []
        for person in doc["people"]:
            name = person["name"]
            if not isinstance(name, str) or not name.strip():
                raise InputError(f"{path}: empty person name")
            for i, item in enumerate(person["embeddings"]):
                where = f"{path}: {name!r} embedding {i}"
                vector = item["vector"]
                if isinstance(vector, list) and len(vector) != dim:
                    raise InputError(f"{where}: {len(vector)} values, the file says dim {dim}")
                vector = _number_list(vector, where, dim)
                box = item["box"]
                if not isinstance(box, list) or len(box) != 4 or not all(map(_finite, box)):
                    raise InputError(f"{where}: box must be [x, y, w, h]")
                score = item.get("score")
                if score is not None and not _finite(score):
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
    return ImportData(path, entries, fingerprint, dim, threshold, "gallery export")


def _read_capped(path: Path) -> bytes:
    """The bytes of a regular file of at most :data:`MAX_IMPORT_BYTES`.

    Opened non-blocking and checked after opening: a FIFO, a device (``/dev/zero``) or a
    directory is refused instead of blocking or reading forever.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{path}: not a regular file")
        if info.st_size > MAX_IMPORT_BYTES:
            raise InputError(f"{path}: {info.st_size} bytes, larger than the "
                             f"{MAX_IMPORT_BYTES} an import reads")
        try:
            data = handle.read(MAX_IMPORT_BYTES + 1)
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if len(data) > MAX_IMPORT_BYTES:
        raise InputError(f"{path}: larger than the {MAX_IMPORT_BYTES} bytes an import reads")
    return data


def parse_import(path: Path) -> ImportData:
    """Read and validate a ``facenet gallery export`` file or the seed's ``DataBase.json``.

    The file is read up to :data:`MAX_IMPORT_BYTES`; nesting deeper than the JSON parser's
    recursion limit (~1,000 levels; the formats need 5) is refused, as is every vector an
    embedder could not have made (see :func:`unit_embedding`) and a threshold that is no distance
    (see :func:`check_threshold`).

    Raises:
        InputError: unreadable, too large, not JSON, or not one of the two formats (nothing is
            imported).
    """
    path = Path(path)
    data = _read_capped(path)
    try:
        doc = json.loads(data.decode("utf-8"))
    except RecursionError as exc:
        raise InputError(f"{path}: JSON nested too deeply (a gallery export needs 5 levels, "
                         "a DataBase.json 3)") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not JSON ({_one_line(str(exc))})") from exc
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a JSON object")
    if doc.get("format") == EXPORT_FORMAT:
        return _parse_export(doc, path)
    return _parse_seed(doc, path)


def import_file(file: Path, gallery: Path, model: Path, dim: int) -> tuple[ImportData, AddResult]:
    """``facenet gallery import``: parse ``file`` and add it to ``gallery`` in one transaction.

    A new gallery is bound to the current model (``model``, the FaceNet ONNX file), so an export
    made with ANOTHER model is refused rather than creating a gallery for vectors this toolchain
    does not compute; an existing gallery accepts only exports of its own model. The seed's
    ``DataBase.json`` carries no fingerprint: it is taken as the current model's.

    Args:
        file: A ``facenet gallery export`` file or the seed's ``DataBase.json``.
        gallery: The gallery file (created if missing).
        model: The current FaceNet model (needed only when the gallery is created).
        dim: The current model's embedding size.

    Returns:
        The parsed file and what was added (duplicates and their owners included).

    Raises:
        InputError: a malformed file or vectors of another size (nothing is written).
        IntegrityError: the file's vectors come from another model than the gallery's, or than
            the current model's for a new gallery.
        MissingArtifactError: a new gallery is needed and the model is missing.
    """
    data = parse_import(file)
    fingerprint = data.fingerprint
    if not gallery.exists():
        if data.dim != dim:
            raise InputError(f"{file}: {data.dim}-d vectors, FaceNet makes {dim}-d ones")
        if not model.is_file():
            raise MissingArtifactError(
                f"a new gallery is bound to the model {model}, which is missing; create it "
                "with `nox -s export`")
        current = sha256_file(model)
        if fingerprint is not None and fingerprint != current:
            raise IntegrityError(
                f"{file} holds embeddings of model sha256 {fingerprint[:16]}…, the current "
                f"model {model} is sha256 {current[:16]}…; vectors of different models cannot "
                "be compared: import it where that model is, or enroll the photos again"
            )
        fingerprint = current
    with Gallery.open(gallery, fingerprint=fingerprint, dim=data.dim, create=True) as opened:
        return data, opened.import_data(data)


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
