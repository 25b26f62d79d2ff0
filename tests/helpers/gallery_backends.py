"""Reaching under a gallery on either backend: edit stored rows by hand, check the store is sound.

The tests that edit a gallery behind its back (a hand-edited vector or threshold) and the
concurrency tests that check the store after SIGKILL run on both backends through these.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from helpers.corpus_gallery import edit_meta as sqlite_edit_meta
from helpers.corpus_gallery import edit_vector as sqlite_edit_vector
from toolchain.gallery import is_postgres_url
from toolchain.gallery.pgschema import split_url


@contextmanager
def pg_connection(url: str) -> Iterator[tuple[Any, str]]:
    """An autocommit psycopg connection to the gallery's database, and its schema."""
    import psycopg

    conninfo, schema = split_url(url)
    conn = psycopg.connect(conninfo, autocommit=True)
    try:
        yield conn, schema
    finally:
        conn.close()


def edit_meta(target: Path | str, key: str, value: str) -> None:
    """Set ``meta[key]`` by hand."""
    if not is_postgres_url(target):
        sqlite_edit_meta(Path(target), key, value)
        return
    with pg_connection(str(target)) as (conn, schema):
        conn.execute(f"INSERT INTO {schema}.meta (key, value) VALUES (%s, %s)"
                     " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))


def edit_vector(target: Path | str, name: str, vector: Any) -> None:
    """Replace the stored vector(s) of ``name`` by hand (raw bytes: as SQLite's BLOB, or as
    one value per byte for a PostgreSQL ``vector``, which refuses them)."""
    if not is_postgres_url(target):
        sqlite_edit_vector(Path(target), name, vector)
        return
    values = list(vector) if isinstance(vector, bytes) else np.asarray(vector, np.float32)
    text = "[" + ",".join(repr(float(v)) for v in values) + "]"
    with pg_connection(str(target)) as (conn, schema):
        conn.execute(f"UPDATE {schema}.embeddings SET vector = %s::vector WHERE person_id ="
                     f" (SELECT id FROM {schema}.people WHERE name = %s)", (text, name))


def sound(target: Path | str) -> list[str]:
    """``["ok"]`` when the store is consistent, else what is wrong.

    SQLite: ``PRAGMA integrity_check``. PostgreSQL: every embedding has its person, no person
    is left without embeddings, and the ``state`` count is the real count.
    """
    if not is_postgres_url(target):
        import sqlite3

        conn = sqlite3.connect(target)
        try:
            return [row[0] for row in conn.execute("PRAGMA integrity_check")]
        finally:
            conn.close()
    problems: list[str] = []
    with pg_connection(str(target)) as (conn, s):
        orphans = conn.execute(f"SELECT count(*) FROM {s}.embeddings e WHERE NOT EXISTS"
                               f" (SELECT 1 FROM {s}.people p WHERE p.id = e.person_id)"
                               ).fetchone()[0]
        empty = conn.execute(f"SELECT count(*) FROM {s}.people p WHERE NOT EXISTS"
                             f" (SELECT 1 FROM {s}.embeddings e WHERE e.person_id = p.id)"
                             ).fetchone()[0]
        counted = conn.execute(f"SELECT count(*) FROM {s}.embeddings").fetchone()[0]
        state = conn.execute(f"SELECT embeddings FROM {s}.state").fetchone()[0]
    if orphans:
        problems.append(f"{orphans} embeddings without a person")
    if empty:
        problems.append(f"{empty} people without embeddings")
    if counted != state:
        problems.append(f"state counts {state} embeddings, the table holds {counted}")
    return problems or ["ok"]
