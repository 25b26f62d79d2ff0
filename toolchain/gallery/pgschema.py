"""A PostgreSQL gallery's connection and layout: the URL, the driver, the tables.

What :mod:`toolchain.gallery.postgres` (the gallery itself: writes, reads, search) stands on:

- the URL: ``?gallery=NAME`` picks the schema, the rest reaches libpq as written
  (:func:`split_url`);
- the driver: psycopg, imported only when a PostgreSQL gallery is used (:func:`psycopg_module`),
  with pgvector's binary format registered on each connection so vectors travel bit for bit
  (:func:`register_vector`), and its errors as one line without a secret (:func:`failure`);
- the layout: the tables of a gallery schema (:func:`schema_sql`), created once under an
  advisory lock so concurrent first enrollments agree on one gallery (:func:`create_gallery`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import numpy as np

from toolchain.core.errors import InputError
from toolchain.gallery.base import display_target
from toolchain.gallery.redact import scrub
from toolchain.gallery.schema import SCHEMA_VERSION
from toolchain.gallery.sqlite import now, one_line

if TYPE_CHECKING:
    import psycopg

DEFAULT_SCHEMA = "facenet"
"""The schema of a URL without ``?gallery=``."""
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
"""A gallery name: a lowercase SQL identifier (used as the schema name, never quoted text)."""
CREATE_LOCK = 0x6661_6365_6E65_74
"""The advisory lock key held while a gallery (and the extension) is created."""
CONNECT_TIMEOUT_S = 10
"""Seconds a connection may take to be made."""
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
"""The HNSW index's build parameters (pgvector's defaults)."""


def split_url(url: str) -> tuple[str, str]:
    """The libpq URL (without ``gallery=``) and the gallery's schema name.

    Only the ``gallery=`` parameters are taken out of the query; every other one reaches libpq
    exactly as written. Decoding and encoding the query again would turn ``%20`` into ``+``,
    which libpq does not read as a space (``options=-c%20statement_timeout%3D5000`` became
    ``-c+statement_timeout=5000``, refused by the server).

    Raises:
        InputError: the gallery name is not a lowercase SQL identifier.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InputError(f"gallery {display_target(url)}: not a URL libpq can read ({exc})"
                         ) from exc
    kept, names = [], []
    for field in parts.query.split("&"):
        parsed = parse_qsl(field, keep_blank_values=True)
        if parsed and parsed[0][0] == "gallery":
            names.append(parsed[0][1])
        elif field:
            kept.append(field)
    schema = names[-1] if names else DEFAULT_SCHEMA
    if not SCHEMA_NAME.fullmatch(schema):
        raise InputError(f"gallery {display_target(url)}: gallery name {schema!r} is not a "
                         "lowercase identifier (letters, digits, _; at most 63)")
    return urlunsplit(parts._replace(query="&".join(kept))), schema


def schema_sql(schema: str, dim: int) -> list[str]:
    """The statements creating a gallery's tables in ``schema`` (see the SQLite ``SCHEMA_SQL``)."""
    return [
        f"CREATE SCHEMA IF NOT EXISTS {schema}",
        f"CREATE TABLE {schema}.meta (key text PRIMARY KEY, value text NOT NULL)",
        f"CREATE TABLE {schema}.state (id integer PRIMARY KEY CHECK (id = 1),"
        " revision bigint NOT NULL, embeddings bigint NOT NULL)",
        f"CREATE TABLE {schema}.people (id bigserial PRIMARY KEY, name text NOT NULL UNIQUE,"
        " created text NOT NULL)",
        f"CREATE TABLE {schema}.embeddings ("
        " id bigserial PRIMARY KEY,"
        f" person_id bigint NOT NULL REFERENCES {schema}.people(id) ON DELETE CASCADE,"
        f" vector vector({dim}) NOT NULL,"
        " source text NOT NULL, image_sha256 text NOT NULL,"
        " box_x double precision NOT NULL, box_y double precision NOT NULL,"
        " box_w double precision NOT NULL, box_h double precision NOT NULL,"
        " score double precision, model_fingerprint text NOT NULL, created text NOT NULL,"
        " UNIQUE (image_sha256, box_x, box_y, box_w, box_h))",
        f"CREATE INDEX embeddings_person ON {schema}.embeddings (person_id)",
        f"CREATE INDEX embeddings_hnsw ON {schema}.embeddings USING hnsw (vector vector_l2_ops)"
        f" WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})",
        f"INSERT INTO {schema}.state (id, revision, embeddings) VALUES (1, 0, 0)",
    ]


def failure(url: str, doing: str, exc: Exception) -> InputError:
    """The one-line error of a driver failure on the gallery at ``url``: the URL shown without
    its password, and the driver's message (which can quote the URL or a token of it) scrubbed
    of every secret."""
    return InputError(f"gallery {display_target(url)}: {doing} "
                      f"({scrub(one_line(str(exc)), url)})")


def psycopg_module() -> Any:
    """The psycopg module, or an :class:`InputError` naming the ``postgres`` extra."""
    try:
        import psycopg
    except ImportError as exc:
        raise InputError("a postgresql:// gallery needs psycopg: pip install "
                         "'facenet-toolchain[postgres]'") from exc
    return psycopg


def register_vector(conn: psycopg.Connection[Any]) -> None:
    """Send numpy vectors and read ``vector`` columns in pgvector's binary format.

    Read back as float32 little-endian bytes (what the SQLite backend stores), bit for bit.

    Raises:
        InputError: the database has no ``vector`` type (pgvector not installed).
    """
    from psycopg.adapt import Dumper, Loader
    from psycopg.pq import Format
    from psycopg.types import TypeInfo

    info = TypeInfo.fetch(conn, "vector")
    if info is None:
        raise InputError(f"database {conn.info.dbname}: no pgvector extension (the vector type)")

    class VectorDumper(Dumper):
        format = Format.BINARY
        oid = info.oid

        def dump(self, obj: Any) -> bytes:
            array = np.asarray(obj, dtype=">f4").reshape(-1)
            return len(array).to_bytes(2, "big") + b"\0\0" + array.tobytes()

    class VectorLoader(Loader):
        format = Format.BINARY

        def load(self, data: Any) -> bytes:
            return np.frombuffer(bytes(data), dtype=">f4", offset=4).astype("<f4").tobytes()

    conn.adapters.register_dumper(np.ndarray, VectorDumper)
    conn.adapters.register_loader(info.oid, VectorLoader)


def has_gallery(conn: psycopg.Connection[Any], schema: str) -> bool:
    """Whether ``schema`` holds a gallery, read from ``pg_tables`` with the statement's snapshot
    (``to_regclass`` reads the catalog cache, which may not yet show a table another creator
    just committed while this one waited for the lock)."""
    return conn.execute("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = %s"
                        " AND tablename = 'meta')", (schema,)).fetchone()[0]


def create_gallery(conn: psycopg.Connection[Any], schema: str, fingerprint: str | None, dim: int,
            crop: str) -> None:
    """Create the gallery in ``schema`` unless it exists, in one transaction under
    :data:`CREATE_LOCK` (concurrent creators wait, then find it made).

    Raises:
        ValueError: the gallery is missing and ``fingerprint`` is ``None``.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (CREATE_LOCK,))
        if has_gallery(conn, schema):
            return
        if fingerprint is None:
            raise ValueError("creating a gallery needs the model fingerprint")
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        for statement in schema_sql(schema, dim):
            conn.execute(statement)
        with conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {schema}.meta (key, value) VALUES (%s, %s)",
                [("schema_version", str(SCHEMA_VERSION)), ("model_fingerprint", fingerprint),
                 ("dim", str(dim)), ("crop", crop), ("created", now())])
