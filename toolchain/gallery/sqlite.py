"""The gallery's SQLite file: created complete or not at all, opened and checked, errors as lines.

A new gallery appears complete or not at all (:func:`create_file`); a damaged file is one
:class:`InputError` line at open (``PRAGMA quick_check``) or at whatever read meets the damage
(:func:`sql_error`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
import tempfile
from pathlib import Path

from toolchain.core.errors import InputError
from toolchain.gallery.schema import LEGACY_CROP, SCHEMA_SQL, SCHEMA_VERSION

BUSY_TIMEOUT_S = 10.0
"""How long a connection waits for another writer before "database is locked"."""


def now() -> str:
    """The current UTC time, ISO 8601 to the second (``created`` columns)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")



def one_line(text: str) -> str:
    """``text`` with every run of whitespace, newlines included, as one space."""
    return " ".join(str(text).split())


def sql_error(path: Path, exc: sqlite3.Error, action: str) -> InputError:
    """One line for a failed SQLite call: a damaged file, or one that is busy or unwritable."""
    if type(exc) is sqlite3.DatabaseError:
        return corrupt(path, str(exc))
    return InputError(f"gallery {path}: cannot {action} ({one_line(str(exc))})")


def corrupt(path: Path, detail: str) -> InputError:
    """The one line for a gallery file SQLite cannot read."""
    return InputError(
        f"gallery {path}: not a readable facenet gallery, corrupt or not a SQLite file "
        f"({one_line(detail)}); restore it from a backup or a `facenet gallery export`"
    )


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def create_file(path: Path, fingerprint: str, dim: int, crop: str = LEGACY_CROP) -> None:
    """Create a complete gallery at ``path`` unless one appears there first.

    ``crop`` is the text of the crop spec its faces are embedded with
    (:class:`toolchain.core.crop.CropSpec`).

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
            for statement in SCHEMA_SQL.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("model_fingerprint", fingerprint),
                    ("dim", str(dim)),
                    ("crop", crop),
                    ("created", now()),
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


def connect(path: Path) -> tuple[sqlite3.Connection, dict[str, str]]:
    """Open an existing gallery file read-write, check it is a sound gallery, read its ``meta``.

    The connection waits up to :data:`BUSY_TIMEOUT_S` for a writer, runs in autocommit mode
    (transactions are explicit), in WAL mode, with foreign keys on.

    Raises:
        InputError: not a SQLite file, not a facenet gallery, damaged, unreadable or locked.
    """
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True,
                               timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as exc:
        raise sql_error(path, exc, "open") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if "meta" not in _tables(conn):
            raise InputError(
                f"gallery {path}: a SQLite file but not a facenet gallery"
                if path.stat().st_size else
                f"gallery {path} is an empty file; remove it or pass another --gallery"
            )
        problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise corrupt(path, "; ".join(map(str, problems)))
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.Error as exc:
        conn.close()
        raise sql_error(path, exc, "read") from exc
    except BaseException:
        conn.close()
        raise
    return conn, meta
