"""``facenet gallery migrate`` on real enrollments: SQLite -> PostgreSQL -> SQLite carries every
embedding bit for bit, the ``created`` timestamps of people and embeddings, and each person's
embedding order; a copy of a copy is the same rows again.

The faces are the six people of ``../shared/data/face_recognition_examples/people``, enrolled
with the exported models; the PostgreSQL gallery is on the session's embedded server.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.real import artifacts_root, shared_data

from toolchain.core.preprocess import l2_normalize
from toolchain.gallery import Entry, open_gallery
from toolchain.gallery.migrate import migrate
from toolchain.gallery.vectors import entry_vectors, unit_embedding
from toolchain.runtime.recognizer import Recognizer

pytestmark = [pytest.mark.real]


def test_normalizing_a_stored_vector_again_changes_no_bit() -> None:
    """Every write normalizes what it is given (:func:`unit_embedding`), a copy too: a stored
    vector must come out as it went in. The recognizer's embeddings are normalized in float32
    (:func:`l2_normalize`) before the gallery normalizes them in float64; before, 35 of these
    5,000 stored vectors moved by one ulp when normalized again (a float64 norm within 2**-24 of
    1, and dividing by it rounds some components the other way), so a migration of real
    enrollments refused its own copy."""
    rng = np.random.default_rng(26)
    raw = (rng.normal(size=(5000, 128)) * 10).astype(np.float32)
    stored = [unit_embedding(row, 128, "embedding") for row in l2_normalize(raw)]
    moved = [i for i, vector in enumerate(stored)
             if unit_embedding(vector, 128, "stored").tobytes() != vector.tobytes()]
    assert moved == []
    assert all(abs(np.linalg.norm(v.astype(np.float64)) - 1) <= 2 ** -23 for v in stored)


def test_a_bulk_write_normalizes_as_one_write_does() -> None:
    """A bulk write checks and normalizes all rows at once (:func:`entry_vectors`): the same bits
    as :func:`unit_embedding` row by row, its fixed point included (stored vectors come out as
    they went in, raw ones are divided by their norm). Before, the bulk path divided every row,
    so migrating real enrollments to PostgreSQL moved some by one ulp and was refused."""
    rng = np.random.default_rng(27)
    raw = (rng.normal(size=(3000, 128)) * 10).astype(np.float32)
    stored = np.stack([unit_embedding(row, 128, "embedding") for row in l2_normalize(raw)])
    rows = np.concatenate([stored, raw])
    entries = [Entry("someone", row, f"{i}.jpg", f"{i:064d}", (0.0, 0.0, 1.0, 1.0), None)
               for i, row in enumerate(rows)]
    one_by_one = np.stack([unit_embedding(row, 128, "row") for row in rows])
    assert entry_vectors(entries, 128).tobytes() == one_by_one.tobytes()
    assert entry_vectors(entries[:3000], 128).tobytes() == stored.tobytes()


def timeline(target: Path | str) -> tuple[list[tuple[str, str]], list[tuple[Any, ...]]]:
    """The people with their ``created``, and every embedding (person, source, box, created,
    vector bytes) in the gallery's own order: by person, then as stored."""
    with open_gallery(target) as gallery:
        people = [(p.name, p.created) for p in gallery.people()]
        entries = [(e.name, e.source, e.image_sha256, e.box, e.created, e.vector.tobytes())
                   for e in gallery.entries()]
    return people, entries


def test_sqlite_to_postgresql_and_back_carries_created_and_order(
        tmp_path: Path, postgres_url: str) -> None:
    """Before: the copy of real enrollments was refused (a vector changed by one ulp); with
    that fixed, every ``created`` became the migration's time and PostgreSQL stored each
    person's embeddings in key order instead of theirs."""
    source = tmp_path / "source.db"
    people = shared_data("people")
    photos = [(folder.name, photo) for folder in sorted(people.iterdir()) if folder.is_dir()
              for photo in sorted(folder.iterdir(), reverse=True)]
    with Recognizer.from_artifacts(artifacts_root(), source) as rec:
        outcomes = rec.enroll_many(photos)
    assert sum(o.ok for o in outcomes) >= 10, [o.message for o in outcomes if not o.ok]
    # Times an earlier enrollment would have, distinct per row, to be carried over.
    with sqlite3.connect(source) as conn:
        conn.execute("UPDATE people SET created = printf('2024-01-%02dT08:00:00Z', id)")
        conn.execute("UPDATE embeddings SET created = printf('2024-02-%02dT09:%02d:00Z',"
                     " person_id, id)")
    conn.close()
    want = timeline(source)
    assert len({created for _, _, _, _, created, _ in want[1]}) == len(want[1])
    shas = [sha for name, _, sha, _, _, _ in want[1] if name == want[1][0][0]]
    back = tmp_path / "back.db"
    first = migrate(source, postgres_url)
    assert first.added == len(want[1])
    assert timeline(postgres_url) == want
    second = migrate(postgres_url, back)
    assert second.added == len(want[1]) and second.checksum == first.checksum
    assert timeline(back) == want
    assert shas == [sha for name, _, sha, _, _, _ in timeline(back)[1] if name == want[1][0][0]]
