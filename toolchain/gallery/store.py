"""The SQLite gallery backend: one file holding the embeddings of one model.

The semantics (model binding, checks, matching) are those of
:class:`~toolchain.gallery.base.Gallery`; this backend stores them in one file. Writes are
one ``BEGIN IMMEDIATE`` transaction each (a whole enroll batch, an import); the journal is WAL and
a busy timeout lets a reader and a writer share the file. ``PRAGMA data_version`` is the
revision: it changes when another connection commits.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from toolchain.core.errors import InputError
from toolchain.gallery.base import AddResult, Gallery, GalleryTarget, Person, StoredRow
from toolchain.gallery.names import person_name
from toolchain.gallery.sqlite import connect, create_file, now, sql_error
from toolchain.gallery.vectors import Entry, canonical_box, vector_blob


class SqliteGallery(Gallery):
    """An open SQLite gallery file (open it with
    :func:`~toolchain.gallery.inventory.open_gallery`)."""

    path: Path

    def __init__(self, path: Path, conn: sqlite3.Connection, meta: dict[str, str]):
        super().__init__(path, meta)
        self._conn = conn
        self._writes = 0

    @classmethod
    def _open(cls, target: GalleryTarget, *, fingerprint: str | None, dim: int, create: bool,
              crop: str) -> SqliteGallery:
        path = Path(target)
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
        return cls(path, conn, meta)

    @classmethod
    def exists(cls, target: GalleryTarget) -> bool:
        return Path(target).exists()

    @classmethod
    def _backend_name(cls) -> str:
        return "sqlite"

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

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
            self._writes += 1

    def _rollback(self) -> None:
        """Roll back the open transaction (SQLite may already have ended it on an error)."""
        with contextlib.suppress(sqlite3.Error):
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")

    def revision(self) -> object:
        """``PRAGMA data_version`` (other connections' commits) and this connection's writes."""
        with self._reading() as conn:
            return conn.execute("PRAGMA data_version").fetchone()[0], self._writes

    def _write(self, entries: Sequence[Entry], vectors: np.ndarray, fingerprint: str,
               threshold: tuple[float, str] | None, people_created: Mapping[str, str]
               ) -> tuple[AddResult, bool]:
        with self._transaction() as conn:
            result = self._insert(conn, entries, vectors, fingerprint, people_created)
            adopted = False
            if threshold is not None and conn.execute(
                    "SELECT value FROM meta WHERE key = 'threshold'").fetchone() is None:
                self._write_threshold(conn, *threshold)
                adopted = True
        return result, adopted

    def _insert(self, conn: sqlite3.Connection, entries: Sequence[Entry], vectors: np.ndarray,
                fingerprint: str, people_created: Mapping[str, str]) -> AddResult:
        added: list[Entry] = []
        duplicates: list[tuple[Entry, str]] = []
        written = now()
        for entry, vector in zip(entries, vectors, strict=True):
            name = person_name(entry.name)
            created = entry.created or written
            conn.execute(
                "INSERT INTO people (name, created) VALUES (?, ?) ON CONFLICT(name) DO NOTHING",
                (name, people_created.get(name, created)),
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

    def count(self) -> int:
        """How many embeddings are stored."""
        with self._reading() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])

    def _rows(self) -> list[StoredRow]:
        with self._reading() as conn:
            rows: list[StoredRow] = conn.execute(
                "SELECT p.name, e.vector, e.source, e.image_sha256, e.box_x, e.box_y, e.box_w,"
                " e.box_h, e.score, e.created FROM embeddings e JOIN people p ON p.id = e.person_id"
                " ORDER BY p.name, e.id"
            ).fetchall()
        return rows

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

    def _store_threshold(self, threshold: float, source: str) -> None:
        with self._transaction() as conn:
            self._write_threshold(conn, threshold, source)

    @staticmethod
    def _write_threshold(conn: sqlite3.Connection, threshold: float, source: str) -> None:
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [("threshold", repr(threshold)), ("threshold_source", source)],
        )
