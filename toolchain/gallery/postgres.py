"""The PostgreSQL + pgvector gallery backend: one gallery shared by many recognizers.

A gallery is a schema of a database (``?gallery=NAME`` in the URL, default ``facenet``) holding
the same tables as the SQLite file, with the vectors in a pgvector ``vector(dim)`` column and an
HNSW index over them (Euclidean, ``vector_l2_ops``). Semantics are
:class:`~toolchain.gallery.base.Gallery`'s; what differs is storage and search:

- Writes are one transaction each, retried whole on a deadlock or a serialization failure
  between concurrent writers (the idempotent key, photo sha256 plus face box, makes a retry
  safe). Rows travel by one binary COPY into a temporary table per transaction and are inserted
  from it in key order, so concurrent batches take their locks in one order.
- A ``state`` row holds a revision and the embedding count, bumped by every write: an open
  gallery re-reads its vectors only when another writer committed.
- Matching: up to :data:`EXACT_SCAN_MAX` embeddings the vectors are read once and ranked in memory
  exactly like the SQLite backend (same numbers). Above it, the HNSW index returns the
  :data:`INDEX_CANDIDATES` nearest embeddings per query and the people they belong to are
  re-ranked exactly over ALL their embeddings; ``centroid`` matching always ranks exactly.

The vectors travel in pgvector's binary format (big-endian float32), so what is read back is
bit-identical to what was written.

Creating the ``vector`` extension needs a role allowed to (a superuser, or the database owner
where the extension is trusted); a gallery is created under an advisory lock, so concurrent first
enrollments agree on one gallery. The URL, the driver and the tables are
:mod:`toolchain.gallery.pgschema`'s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from toolchain.core.errors import InputError
from toolchain.gallery.base import (
    AddResult,
    Gallery,
    GalleryTarget,
    Person,
    StoredRow,
    display_target,
)
from toolchain.gallery.names import person_name
from toolchain.gallery.pgschema import (
    CONNECT_TIMEOUT_S,
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    create_gallery,
    failure,
    has_gallery,
    psycopg_module,
    register_vector,
    split_url,
)
from toolchain.gallery.schema import MatchMode
from toolchain.gallery.sqlite import now
from toolchain.gallery.vectors import Candidate, Entry, canonical_box, rank_people

if TYPE_CHECKING:
    import psycopg

EXACT_SCAN_MAX = 20_000
"""Largest gallery (embeddings) matched by an exact in-memory scan; larger ones use the index."""
INDEX_CANDIDATES = 100
"""Embeddings the HNSW index returns per query before the exact re-rank of their people."""
EF_SEARCH = 200
"""``hnsw.ef_search``: the index's candidate list while searching (at least the candidates)."""
EF_SEARCH_MAX = 1000
"""pgvector's upper limit of ``hnsw.ef_search``."""
BULK_BATCH = 10_000
"""Entries per transaction of :meth:`PostgresGallery.bulk_add`."""
WRITE_ATTEMPTS = 5
"""A write transaction is tried this many times when concurrent writers deadlock."""

Search = Literal["auto", "memory", "scan", "index"]
"""How :meth:`PostgresGallery.match` finds nearest faces: by size (``auto``), in memory, by an
exact scan in the database, or through the HNSW index (the last two re-rank exactly)."""


class PostgresGallery(Gallery):
    """An open PostgreSQL gallery (open it with :meth:`Gallery.open`)."""

    path: str

    def __init__(self, url: str, schema: str, conn: psycopg.Connection[Any],
                 meta: dict[str, str]):
        super().__init__(display_target(url), meta)
        self.schema = schema
        self._url = url
        self.search: Search = "auto"
        self._conn = conn
        self._state: tuple[int, int] | None = None

    @classmethod
    def _backend_name(cls) -> str:
        return "postgresql"

    @classmethod
    def _connect(cls, url: str) -> tuple[psycopg.Connection[Any], str]:
        """An autocommit connection to the URL's database, and the gallery's schema.

        Raises:
            InputError: psycopg missing, a bad URL, or a server that cannot be reached.
        """
        psycopg = psycopg_module()
        conninfo, schema = split_url(url)
        try:
            conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except (psycopg.Error, ValueError) as exc:
            raise failure(url, "cannot connect", exc) from exc
        return conn, schema

    @classmethod
    def exists(cls, target: GalleryTarget) -> bool:
        """Whether the URL's database holds the gallery.

        Raises:
            InputError: the server cannot be reached or read.
        """
        conn, schema = cls._connect(str(target))
        try:
            return has_gallery(conn, schema)
        except psycopg_module().Error as exc:
            raise failure(str(target), "cannot read", exc) from exc
        finally:
            conn.close()

    @classmethod
    def _open(cls, target: GalleryTarget, *, fingerprint: str | None, dim: int, create: bool,
              crop: str) -> PostgresGallery:
        url = str(target)
        psycopg = psycopg_module()
        conn, schema = cls._connect(url)
        try:
            if not has_gallery(conn, schema):
                if create:
                    create_gallery(conn, schema, fingerprint, dim, crop)
                else:
                    raise InputError(f"gallery {display_target(url)} does not exist; enroll "
                                     "faces first (`facenet enroll`)")
            register_vector(conn)
            meta = dict(conn.execute(f"SELECT key, value FROM {schema}.meta").fetchall())
            conn.execute(f"SET hnsw.ef_search = {EF_SEARCH}")
        except psycopg.Error as exc:
            conn.close()
            raise failure(url, "cannot open", exc) from exc
        except BaseException:
            conn.close()
            raise
        return cls(url, schema, conn, meta)

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[psycopg.Connection[Any]]:
        """The connection, with database errors as one-line :class:`InputError`."""
        psycopg = psycopg_module()
        try:
            yield self._conn
        except psycopg.Error as exc:
            raise failure(self._url, "cannot read", exc) from exc

    def _transact(self, work: Any) -> Any:
        """``work(conn)`` in one transaction that also bumps the revision; retried whole on a
        deadlock, a serialization failure or a person removed under it by another writer."""
        psycopg = psycopg_module()
        retry = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure,
                 psycopg.errors.ForeignKeyViolation)
        for attempt in range(WRITE_ATTEMPTS):
            try:
                with self._conn.transaction():
                    result, added = work(self._conn)
                    self._conn.execute(
                        f"UPDATE {self.schema}.state SET revision = revision + 1,"
                        " embeddings = embeddings + %s WHERE id = 1", (added,))
                return result
            except retry as exc:
                if attempt + 1 == WRITE_ATTEMPTS:
                    raise failure(self._url, "cannot write", exc) from exc
            except psycopg.Error as exc:
                raise failure(self._url, "cannot write", exc) from exc
        raise AssertionError("unreachable")

    def state(self) -> tuple[int, int]:
        """The revision (bumped by every write of any writer) and the embedding count."""
        with self._reading() as conn:
            row = conn.execute(
                f"SELECT revision, embeddings FROM {self.schema}.state WHERE id = 1").fetchone()
        return int(row[0]), int(row[1])

    def revision(self) -> object:
        """The ``state`` revision: bumped by every committed write."""
        return self.state()[0]

    def count(self) -> int:
        """How many embeddings are stored."""
        return self.state()[1]

    def _write(self, entries: Sequence[Entry], vectors: np.ndarray, fingerprint: str,
               threshold: tuple[float, str] | None, people_created: Mapping[str, str]
               ) -> tuple[AddResult, bool]:
        def work(conn: psycopg.Connection[Any]) -> tuple[tuple[AddResult, bool], int]:
            result = self._insert(conn, entries, vectors, fingerprint, people_created)
            adopted = False
            if threshold is not None:
                adopted = conn.execute(
                    f"INSERT INTO {self.schema}.meta (key, value) VALUES ('threshold', %s)"
                    " ON CONFLICT (key) DO NOTHING RETURNING key", (repr(threshold[0]),)
                ).fetchone() is not None
                if adopted:
                    self._write_meta(conn, {"threshold_source": threshold[1]})
            return (result, adopted), len(result.added)

        result: tuple[AddResult, bool] = self._transact(work)
        return result

    def _insert(self, conn: psycopg.Connection[Any], entries: Sequence[Entry],
                vectors: np.ndarray, fingerprint: str, people_created: Mapping[str, str]
                ) -> AddResult:
        if not entries:
            return AddResult(added=[], duplicates=[])
        s = self.schema
        written = now()
        canonical = {name: person_name(name) for name in {entry.name for entry in entries}}
        born: dict[str, str] = {}  # a new person: as given, else the time of their first face
        for entry in entries:
            name = canonical[entry.name]
            born.setdefault(name, people_created.get(name, entry.created or written))
        names = sorted(born)
        conn.execute(f"INSERT INTO {s}.people (name, created) SELECT n, c"
                     " FROM unnest(%b::text[], %b::text[]) AS t(n, c) ORDER BY n"
                     " ON CONFLICT (name) DO NOTHING", (names, [born[n] for n in names]))
        ids = dict(conn.execute(f"SELECT name, id FROM {s}.people WHERE name = ANY(%b)",
                                (names,)).fetchall())
        keys = [(entry.image_sha256, *canonical_box(entry.box)) for entry in entries]
        first: dict[tuple[Any, ...], int] = {}
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        # Rows are inserted in key order (one lock order between concurrent writers) with ids
        # drawn in the order given, so each person's embeddings read back in that order.
        row_ids = [row[0] for row in conn.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) AS id FROM generate_series(1, %s)"
            " ORDER BY id", (f"{s}.embeddings", len(first))).fetchall()]
        row_id = dict(zip(first.values(), row_ids, strict=True))
        fields = ("id, person_id, vector, source, image_sha256, box_x, box_y, box_w, box_h,"
                  " score, model_fingerprint, created")
        conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS stage_{s} (id bigint, person_id bigint,"
                     f" vector vector({self.dim}), source text, image_sha256 text,"
                     " box_x float8, box_y float8, box_w float8, box_h float8, score float8,"
                     " model_fingerprint text, created text) ON COMMIT DELETE ROWS")
        from psycopg.adapt import PyFormat

        vector_oid = conn.adapters.get_dumper(np.ndarray, PyFormat.BINARY).oid
        with conn.cursor() as cursor:
            with cursor.copy(f"COPY stage_{s} ({fields}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "int8", vector_oid, "text", "text", "float8", "float8",
                                "float8", "float8", "float8", "text", "text"])
                for key, i in first.items():
                    copy.write_row((row_id[i], ids[canonical[entries[i].name]], vectors[i],
                                    entries[i].source, *key, entries[i].score, fingerprint,
                                    entries[i].created or written))
            inserted = {tuple(row) for row in cursor.execute(
                f"INSERT INTO {s}.embeddings ({fields}) SELECT {fields} FROM stage_{s}"
                " ORDER BY image_sha256, box_x, box_y, box_w, box_h"
                " ON CONFLICT (image_sha256, box_x, box_y, box_w, box_h) DO NOTHING"
                " RETURNING image_sha256, box_x, box_y, box_w, box_h").fetchall()}
        owners: dict[tuple[Any, ...], str] = {}
        if len(inserted) < len(keys):
            wanted = sorted(set(keys))
            columns = list(zip(*wanted, strict=True))
            owners = {
                tuple(row[:5]): row[5] for row in conn.execute(
                    f"SELECT e.image_sha256, e.box_x, e.box_y, e.box_w, e.box_h, p.name"
                    f" FROM {s}.embeddings e JOIN {s}.people p ON p.id = e.person_id"
                    " JOIN unnest(%s::text[], %s::float8[], %s::float8[], %s::float8[],"
                    " %s::float8[]) AS k(sha, x, y, w, h) ON e.image_sha256 = k.sha"
                    " AND e.box_x = k.x AND e.box_y = k.y AND e.box_w = k.w AND e.box_h = k.h",
                    [list(column) for column in columns]).fetchall()
            }
        added: list[Entry] = []
        duplicates: list[tuple[Entry, str]] = []
        for i, (entry, key) in enumerate(zip(entries, keys, strict=True)):
            if first[key] == i and key in inserted:
                added.append(entry)
            else:
                duplicates.append((entry, owners[key]))
        conn.execute(f"DELETE FROM {s}.people p WHERE p.name = ANY(%b) AND NOT EXISTS"
                     f" (SELECT 1 FROM {s}.embeddings e WHERE e.person_id = p.id)", (names,))
        return AddResult(added=added, duplicates=duplicates)

    def bulk_add(self, entries: Sequence[Entry], batch: int = BULK_BATCH, *,
                 people_created: Mapping[str, str] | None = None) -> int:
        """Add many entries fast: the HNSW index is dropped while they load, then built again.

        Maintaining the index row by row costs ~100 times the insert itself at a million rows;
        one build at the end is much cheaper. Each batch is its own idempotent transaction (as
        :meth:`add`, times too), so an interrupted load is finished by running it again;
        meanwhile, and until the index is back, searches scan exactly (correct, slower).

        Returns:
            How many entries were added (the rest were already there).

        Raises:
            InputError: a bad vector or name (see :meth:`add`), or the database fails.
        """
        self.drop_index()
        added = sum(len(self.add(entries[start:start + batch],
                                 people_created=people_created).added)
                    for start in range(0, len(entries), batch))
        self.build_index()
        return added

    def set_ef_search(self, ef_search: int) -> None:
        """Set ``hnsw.ef_search`` for this connection's index searches (recall against latency;
        at least :data:`INDEX_CANDIDATES`, or the index returns fewer candidates).

        Raises:
            InputError: below :data:`INDEX_CANDIDATES`, or above pgvector's limit of 1000.
        """
        if not INDEX_CANDIDATES <= ef_search <= EF_SEARCH_MAX:
            raise InputError(f"ef_search {ef_search}: must be {INDEX_CANDIDATES} to "
                             f"{EF_SEARCH_MAX}")
        self._ddl(f"SET hnsw.ef_search = {int(ef_search)}")

    def drop_index(self) -> None:
        """Drop the HNSW index (searches scan exactly until :meth:`build_index`)."""
        self._ddl(f"DROP INDEX IF EXISTS {self.schema}.embeddings_hnsw")

    def build_index(self) -> None:
        """Build the HNSW index over every stored vector, unless it is there."""
        self._ddl(f"CREATE INDEX IF NOT EXISTS embeddings_hnsw ON {self.schema}.embeddings"
                  f" USING hnsw (vector vector_l2_ops)"
                  f" WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})")

    def _ddl(self, statement: str) -> None:
        psycopg = psycopg_module()
        try:
            self._conn.execute(statement)
        except psycopg.Error as exc:
            raise failure(self._url, "cannot write", exc) from exc

    def _write_meta(self, conn: psycopg.Connection[Any], values: dict[str, str]) -> None:
        for key, value in values.items():
            conn.execute(f"INSERT INTO {self.schema}.meta (key, value) VALUES (%s, %s)"
                         " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def people(self) -> list[Person]:
        """Every enrolled person with counts, by name (code point order, as in SQLite)."""
        s = self.schema
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT p.name, COUNT(e.id), COUNT(DISTINCT e.image_sha256), p.created"
                f" FROM {s}.people p LEFT JOIN {s}.embeddings e ON e.person_id = p.id"
                ' GROUP BY p.id ORDER BY p.name COLLATE "C"'
            ).fetchall()
        return [Person(name=r[0], embeddings=int(r[1]), photos=int(r[2]), created=r[3])
                for r in rows]

    def _rows(self, people: Sequence[int] | None = None) -> list[StoredRow]:
        s = self.schema
        where = "" if people is None else " WHERE e.person_id = ANY(%s)"
        with self._reading() as conn:
            cursor = conn.cursor(binary=True)
            cursor.execute(
                "SELECT p.name, e.vector, e.source, e.image_sha256, e.box_x, e.box_y, e.box_w,"
                f" e.box_h, e.score, e.created FROM {s}.embeddings e JOIN {s}.people p"
                f' ON p.id = e.person_id{where} ORDER BY p.name COLLATE "C", e.id',
                None if people is None else (list(people),))
            rows: list[StoredRow] = cursor.fetchall()
        return rows

    def remove(self, name: str) -> int:
        """Remove a person and all their embeddings; return how many embeddings went.

        Raises:
            InputError: nobody of that name is enrolled.
        """
        s = self.schema

        def work(conn: psycopg.Connection[Any]) -> tuple[int, int]:
            row = conn.execute(f"SELECT id FROM {s}.people WHERE name = %s FOR UPDATE",
                               (name,)).fetchone()
            if row is None:
                raise InputError(f"gallery {self.path}: no person named {name!r}")
            count = conn.execute(f"DELETE FROM {s}.embeddings WHERE person_id = %s",
                                 (row[0],)).rowcount
            conn.execute(f"DELETE FROM {s}.people WHERE id = %s", (row[0],))
            return count, -count

        removed: int = self._transact(work)
        return removed

    def _store_threshold(self, threshold: float, source: str) -> None:
        def work(conn: psycopg.Connection[Any]) -> tuple[None, int]:
            self._write_meta(conn, {"threshold": repr(threshold), "threshold_source": source})
            return None, 0

        self._transact(work)

    def match(
        self, queries: np.ndarray, k: int = 3, mode: MatchMode = MatchMode.NEAREST
    ) -> list[list[Candidate]]:
        """The ``k`` closest people to each query embedding, closest first.

        Exact in memory for small galleries and for ``centroid``; else the nearest
        :data:`INDEX_CANDIDATES` embeddings from the HNSW index (or an exact scan, with
        :attr:`search` ``scan``), their people re-ranked exactly over all their embeddings.
        """
        search = self.search
        if search == "auto":
            search = "memory" if self.count() <= EXACT_SCAN_MAX else "index"
        if search == "memory" or mode is MatchMode.CENTROID:
            return super().match(queries, k, mode)
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.dim)
        return [self._search_one(query, k, exact=search == "scan") for query in queries]

    def _search_one(self, query: np.ndarray, k: int, exact: bool) -> list[Candidate]:
        """One statement: the nearest embeddings (index or scan), then every row of their people.

        The candidates are ``MATERIALIZED`` so the planner runs the ``ORDER BY ... LIMIT`` on its
        own (through the index) instead of folding it into the join.
        """
        s = self.schema
        limit = max(INDEX_CANDIDATES, 4 * k)
        with self._reading() as conn, (conn.transaction() if exact
                                       else contextlib.nullcontext()):
            if exact:
                conn.execute("SET LOCAL enable_indexscan = off")
            cursor = conn.cursor(binary=True)
            cursor.execute(
                f"WITH hit AS MATERIALIZED (SELECT person_id FROM {s}.embeddings"
                " ORDER BY vector <-> %b LIMIT %s)"
                " SELECT p.name, e.vector, e.source, e.image_sha256, e.box_x, e.box_y, e.box_w,"
                f" e.box_h, e.score, e.created FROM {s}.embeddings e"
                f" JOIN {s}.people p ON p.id = e.person_id"
                " WHERE e.person_id IN (SELECT person_id FROM hit)"
                ' ORDER BY p.name COLLATE "C", e.id', (query, limit))
            rows: list[StoredRow] = cursor.fetchall()
        if not rows:
            return []
        entries = self._checked_entries(rows)
        names: list[str] = []
        starts: list[int] = []
        for row, entry in enumerate(entries):
            if not names or names[-1] != entry.name:
                names.append(entry.name)
                starts.append(row)
        matrix = np.stack([entry.vector for entry in entries])
        return rank_people(names, matrix, np.asarray(starts, dtype=np.intp), query[None], k,
                           MatchMode.NEAREST)[0]
