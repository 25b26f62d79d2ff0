"""The open gallery: enroll, import, list, remove, read back and match embeddings of one model.

Writes are one ``BEGIN IMMEDIATE`` transaction each (a whole enroll batch, an import); the journal
is WAL and a busy timeout lets a reader and a writer share the file. Everything read back is
checked the way it was checked on the way in: a stored vector that is not a ``dim``-d unit vector,
or a stored threshold that is not a distance in (0, 2], means the file was edited or damaged
(:class:`IntegrityError`).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from toolchain.core.contracts import EMBEDDING_DIM
from toolchain.core.errors import InputError, IntegrityError
from toolchain.runtime.gallery.schema import (
    LEGACY_CROP,
    MAX_DISTANCE,
    SCHEMA_VERSION,
    SHA256_HEX,
    MatchMode,
    check_threshold,
)
from toolchain.runtime.gallery.sqlite import connect, create_file, now, sql_error
from toolchain.runtime.gallery.vectors import (
    UNIT_NORM_TOLERANCE,
    Candidate,
    Entry,
    canonical_box,
    entry_vectors,
    rank_people,
    vector_blob,
)

if TYPE_CHECKING:
    from toolchain.runtime.gallery.import_export import ImportData


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



class Gallery:
    """An open gallery file. Use :meth:`open`; close it (or use it as a context manager)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, meta: dict[str, str]):
        self.path = path
        self._conn = conn
        self._meta = meta
        self._cache: tuple[list[str], np.ndarray, np.ndarray] | None = None

    @classmethod
    def open(
        cls, path: Path | str, *, fingerprint: str | None = None, dim: int = EMBEDDING_DIM,
        create: bool = False, crop: str = LEGACY_CROP,
    ) -> Gallery:
        """Open the gallery at ``path``.

        Args:
            path: The SQLite file.
            fingerprint: The model the caller embeds with; a gallery made with another is refused.
                ``None`` skips the check (listing, removing, exporting need no model).
            dim: Embedding size recorded when the gallery is created.
            create: Create the gallery if the file does not exist (``fingerprint`` required).
            crop: The crop spec text recorded when the gallery is created.

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
            create_file(path, fingerprint, dim, crop)
        conn, meta = connect(path)
        gallery = cls(path, conn, meta)
        try:
            gallery._check(fingerprint)
        except BaseException:
            conn.close()
            raise
        return gallery


    def _check(self, fingerprint: str | None) -> None:
        version = self._meta.get("schema_version")
        if version != str(SCHEMA_VERSION):
            raise InputError(
                f"gallery {self.path}: schema version {version}, this toolchain reads "
                f"{SCHEMA_VERSION}"
            )
        stored, dim = self._meta.get("model_fingerprint"), self._meta.get("dim")
        if not isinstance(stored, str) or not SHA256_HEX.fullmatch(stored):
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
    def crop(self) -> str:
        """The crop spec text its faces were embedded with (:data:`LEGACY_CROP` if unrecorded)."""
        return self._meta.get("crop", LEGACY_CROP)

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
            raise sql_error(self.path, exc, "read") from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise sql_error(self.path, exc, "write") from exc
        try:
            yield self._conn
        except sqlite3.Error as exc:
            self._rollback()
            raise sql_error(self.path, exc, "write") from exc
        except BaseException:
            self._rollback()
            raise
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise sql_error(self.path, exc, "write") from exc
        finally:
            self._cache = None

    def _rollback(self) -> None:
        """Roll back the open transaction (SQLite may already have ended it on an error)."""
        with contextlib.suppress(sqlite3.Error):
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")

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
        vectors = entry_vectors(entries, self.dim)
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
        if data.crop != self.crop:
            raise IntegrityError(
                f"{data.path}: faces embedded with crop {data.crop!r}, the gallery {self.path} "
                f"holds crop {self.crop!r}; vectors of different crops are not comparable"
            )
        vectors = entry_vectors(data.entries, self.dim)
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
        created = now()
        for entry, vector in zip(entries, vectors, strict=True):
            name = entry.name.strip()
            conn.execute(
                "INSERT INTO people (name, created) VALUES (?, ?) ON CONFLICT(name) DO NOTHING",
                (name, created),
            )
            person_id = conn.execute(
                "SELECT id FROM people WHERE name = ?", (name,)
            ).fetchone()[0]
            box = canonical_box(entry.box)
            cursor = conn.execute(
                "INSERT INTO embeddings (person_id, vector, source, image_sha256, box_x, box_y,"
                " box_w, box_h, score, model_fingerprint, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(image_sha256, box_x, box_y, box_w, box_h) DO NOTHING",
                (person_id, vector_blob(vector), entry.source, entry.image_sha256, *box,
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
        return rank_people(names, matrix, starts, queries, k, mode)
