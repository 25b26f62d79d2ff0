"""The read-only check of galleries (SQLite ``*.db`` files): user data that ``SHA256SUMS`` does not
list, checked for SQLite integrity, the facenet schema, finite unit vectors and the model
fingerprint against the current ``models/facenet.onnx``, without changing the file."""

from __future__ import annotations

import contextlib
import math
import re
import sqlite3
import struct
from pathlib import Path, PurePosixPath

from toolchain.core.contracts import ONNX_FILE
from toolchain.core.crop import CropSpec
from toolchain.core.integrity.fingerprint import model_fingerprint
from toolchain.core.integrity.sums import (
    GALLERY_SUFFIXES,
    PINNED_DIRS,
    Hashes,
    not_regular,
    walk_files,
)
from toolchain.core.paths import Layout

GALLERY_SCHEMA_VERSION = "1"
"""The gallery schema :func:`check_gallery_file` knows (``toolchain.gallery``'s)."""

GALLERY_COLUMNS = {
    "meta": frozenset({"key", "value"}),
    "people": frozenset({"id", "name", "created"}),
    "embeddings": frozenset({"id", "person_id", "vector", "source", "image_sha256", "box_x",
                             "box_y", "box_w", "box_h", "score", "model_fingerprint",
                             "created"}),
}
"""Every table of a facenet gallery and its columns (a test keeps it equal to the real schema)."""

UNIT_NORM_TOLERANCE = 1e-3
"""Stored vectors are L2-normalized float32: their norm is 1 within float32 rounding."""

MAX_THRESHOLD = 2.0
"""Largest distance between unit vectors: a stored threshold lies in (0, 2]."""

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_SHOWN = 3


def _gallery_schema_problems(conn: sqlite3.Connection) -> list[str]:
    problems = []
    for table, wanted in GALLERY_COLUMNS.items():
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if not have:
            problems.append(f"no {table} table")
        elif have != wanted:
            missing, extra = sorted(wanted - have), sorted(have - wanted)
            problems.append(f"table {table} has columns missing {missing} / unexpected {extra}")
    return problems


def _meta_problems(meta: dict[str, str]) -> list[str]:
    problems = []
    if meta.get("schema_version") != GALLERY_SCHEMA_VERSION:
        problems.append(f"schema version {meta.get('schema_version')!r}, this toolchain reads "
                        f"{GALLERY_SCHEMA_VERSION}")
    if not _SHA256_HEX.fullmatch(str(meta.get("model_fingerprint"))):
        problems.append(f"model fingerprint {meta.get('model_fingerprint')!r} is not a sha256")
    if not str(meta.get("dim", "")).isdigit() or int(meta["dim"]) <= 0:
        problems.append(f"embedding size {meta.get('dim')!r} is not a positive integer")
    if "threshold" in meta:
        try:
            threshold = float(meta["threshold"])
        except ValueError:
            threshold = math.nan
        if not 0.0 < threshold <= MAX_THRESHOLD:
            problems.append(f"stored threshold {meta['threshold']!r} is not a distance in "
                            f"(0, {MAX_THRESHOLD:g}]")
    if "crop" in meta:
        try:
            CropSpec.parse(meta["crop"])
        except ValueError:
            problems.append(f"stored crop {meta['crop']!r} is not a crop spec")
    return problems


def _vector_problem(blob: object, dim: int) -> str | None:
    if not isinstance(blob, bytes) or len(blob) != 4 * dim:
        size = len(blob) if isinstance(blob, bytes) else type(blob).__name__
        return f"a vector of {size} bytes, not {dim} float32"
    values = struct.unpack(f"<{dim}f", blob)
    if not all(math.isfinite(v) for v in values):
        return "non-finite values"
    norm = math.sqrt(math.fsum(v * v for v in values))
    if abs(norm - 1.0) > UNIT_NORM_TOLERANCE:
        return f"norm {norm:.6g}, not a unit vector"
    return None


def _rows_problems(conn: sqlite3.Connection, meta: dict[str, str]) -> list[str]:
    dim = int(meta["dim"])
    fingerprint = meta["model_fingerprint"]
    bad: list[str] = []
    others = 0
    rows = conn.execute("SELECT e.id, p.name, e.vector, e.model_fingerprint FROM embeddings e "
                        "LEFT JOIN people p ON p.id = e.person_id ORDER BY e.id")
    for row_id, name, blob, row_fingerprint in rows:
        others += row_fingerprint != fingerprint
        if (why := _vector_problem(blob, dim)) is not None:
            bad.append(f"embedding {row_id} ({name!r}): {why}")
    problems = []
    if bad:
        shown = "; ".join(bad[:_SHOWN]) + (f"; and {len(bad) - _SHOWN} more" if
                                           len(bad) > _SHOWN else "")
        problems.append(f"{len(bad)} stored vector(s) are not what the embedder makes "
                        f"({shown})")
    if others:
        problems.append(f"{others} embedding(s) recorded with another model than the "
                        "gallery's")
    orphans = conn.execute("PRAGMA foreign_key_check(embeddings)").fetchall()
    if orphans:
        problems.append(f"{len(orphans)} embedding(s) belong to no person")
    return problems


def check_gallery_file(path: Path, model_sha256: str | None = None) -> list[str]:
    """Check a gallery file without changing it; one problem line per finding.

    Opened read-only (SQLite ``mode=ro``; a WAL gallery may get empty ``-wal`` / ``-shm``
    siblings, as for any reader): SQLite's ``PRAGMA integrity_check``, every table and column of
    the schema, the meta values (schema version, model fingerprint, embedding size, a stored
    threshold in (0, 2], a stored crop spec), every embedding a finite unit vector of that size
    recorded with the gallery's model and belonging to a person, and (given ``model_sha256``, the
    current ``facenet.onnx``) the gallery's model fingerprint.
    """
    path = Path(path)
    if (kind := not_regular(path)) is not None:
        return [f"{path}: {kind}"]
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, isolation_level=None)) as conn:
            verdict = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            if verdict != ["ok"]:
                return [f"{path}: SQLite integrity_check says {'; '.join(verdict[:5])}"]
            problems = _gallery_schema_problems(conn)
            if problems:
                return [f"{path}: not a facenet gallery ({'; '.join(problems)})"]
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            problems = _meta_problems(meta)
            if not problems:
                problems = _rows_problems(conn, meta)
    except sqlite3.DatabaseError as exc:
        return [f"{path}: not a readable facenet gallery ({exc})"]
    expected = meta.get("model_fingerprint")
    if model_sha256 is not None and expected != model_sha256:
        problems.append(f"made with model sha256 {str(expected)[:16]}…, the current "
                        f"{ONNX_FILE} is {model_sha256[:16]}… (its weights' sha256, "
                        "toolchain.core.integrity.fingerprint); enroll again into a new gallery")
    return [f"{path}: {problem}" for problem in problems]


def galleries(layout: Layout) -> list[Path]:
    """Every gallery (``*.db``) of the artifacts tree, outside hidden files and ``source/``."""
    return [path for rel, path in walk_files(layout.root)
            if rel.endswith(GALLERY_SUFFIXES[0])
            and not any(part.startswith(".") for part in PurePosixPath(rel).parts)
            and PurePosixPath(rel).parts[0] not in PINNED_DIRS]


def _current_model_sha256(layout: Layout, hashes: Hashes) -> str | None:
    model = layout.models_dir / ONNX_FILE
    return model_fingerprint(model, hashes(model)) if not_regular(model) is None else None


def check_gallery(layout: Layout, hashes: Hashes | None = None) -> tuple[int, list[str]]:
    """Every gallery of the artifacts tree (:func:`check_gallery_file`, against the current
    ``models/facenet.onnx`` if there is one)."""
    hashes = hashes or Hashes()
    model_sha256 = _current_model_sha256(layout, hashes)
    good = 0
    problems: list[str] = []
    for gallery in galleries(layout):
        found = check_gallery_file(gallery, model_sha256)
        problems.extend(found)
        good += not found
    return good, problems
